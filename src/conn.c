/* conn: a connection to Redis and the deadlines of its I/O; see conn.h.
 * The only file that includes OpenSSL, and with store_redis.c the only one
 * that includes hiredis (for its reply parser and command formatter).
 *
 * Every descriptor is non-blocking: a read or write that would block waits
 * in poll(2) for what is left of the exchange's deadline, so a link that
 * trickles cannot stretch it. TLS runs through OpenSSL's socket BIO on the
 * same descriptor; it may hold decrypted bytes the socket no longer shows
 * (SSL_has_pending), so no poll happens before SSL_read has had its try.
 * OpenSSL writes with write(2), which raises SIGPIPE on a closed socket:
 * main() ignores SIGPIPE before any store opens. */
#include "conn.h"
#include "tls_api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct conn_tls {
	SSL_CTX *ctx;
	char *server_name; /* NULL: the URL's host */
	bool insecure;
};

/* what one read or write attempt that did nothing is waiting for */
enum { IO_WANT_READ = -2, IO_WANT_WRITE = -3 };

static const char read_timeout[] = "no whole reply within --redis-timeout (and the time its size "
				   "allows)";
static const char write_timeout[] = "cannot send a command: not sent within --redis-timeout (and "
				    "the time its size allows)";

static void failf(struct conn *c, enum conn_error err, const char *fmt, ...) ATTR_PRINTF(3, 4);

static void failf(struct conn *c, enum conn_error err, const char *fmt, ...)
{
	va_list ap;

	if (c->err)
		return; /* the first cause is the one to tell */
	c->err = err;
	va_start(ap, fmt);
	vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
	va_end(ap);
}

void conn_fail(struct conn *c, enum conn_error err, const char *why)
{
	failf(c, err, "%s", why);
}

/* wait until fd is ready for events or the deadline (0: none) passes;
 * 1 ready, 0 timed out, -1 with errno */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};

	for (;;) {
		int64_t left = deadline ? deadline - monotonic_ms() : -1;
		if (deadline && left <= 0)
			return 0;
		int n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

static struct conn *conn_new(int fd)
{
	/* not calloc: zeroing the 64 KiB input buffer would cost a hit a
	 * quarter of its instructions */
	struct conn *c = xmalloc(sizeof(*c));

	c->fd = fd;
	c->err = CONN_OK;
	c->errstr[0] = '\0';
	c->ssl = NULL;
	c->cert_requested = c->got_data = c->sent = false;
	c->out = (struct buf){0};
	c->reader = redisReaderCreate();
	if (!c->reader) {
		log_error("out of memory");
		exit(125);
	}
	resp_reader_init(&c->in, conn_pull, c);
	return c;
}

struct conn *conn_of_fd(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags >= 0)
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	return conn_new(fd);
}

/* --- TLS errors ---------------------------------------------------------------------- */

/* alerts a server sends about our client certificate (RFC 8446 6.2) */
static bool is_certificate_alert(int alert)
{
	switch (alert) {
	case SSL_AD_HANDSHAKE_FAILURE: /* TLS 1.2: no certificate where one is required */
	case SSL_AD_BAD_CERTIFICATE:
	case SSL_AD_UNSUPPORTED_CERTIFICATE:
	case SSL_AD_CERTIFICATE_REVOKED:
	case SSL_AD_CERTIFICATE_EXPIRED:
	case SSL_AD_CERTIFICATE_UNKNOWN:
	case SSL_AD_UNKNOWN_CA:
	case SSL_AD_ACCESS_DENIED:
	case SSL_AD_CERTIFICATE_REQUIRED:
		return true;
	}
	return false;
}

/* Record why a TLS operation (what: "cannot read a reply", ...) failed with
 * SSL_get_error() code sslerr, from OpenSSL's error queue. A server that
 * requires a client certificate tells so with an alert: during the
 * handshake with TLS 1.2, but with TLS 1.3 only after the client has
 * finished it, so the alert (or, when a reset beat it, a closed connection)
 * meets the first read or write; both are told as the missing certificate. */
static void tls_failed(struct conn *c, int sslerr, const char *what)
{
	unsigned long code, first = 0;
	int alert = -1, sys = errno;

	while ((code = ERR_get_error()) != 0) {
		if (!first)
			first = code;
		int reason = ERR_GET_REASON(code);
		if (ERR_GET_LIB(code) == ERR_LIB_SSL && reason > SSL_AD_REASON_OFFSET &&
		    reason < SSL_AD_REASON_OFFSET + 256)
			alert = reason - SSL_AD_REASON_OFFSET;
	}
	bool eof = sslerr == SSL_ERROR_ZERO_RETURN ||
		   (sslerr == SSL_ERROR_SYSCALL && !first && sys == 0) ||
		   (first && ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
	bool reset = sslerr == SSL_ERROR_SYSCALL && !first && sys != 0;
	/* a close with no alert counts only when we had no certificate to send */
	if (alert == SSL_AD_CERTIFICATE_REQUIRED ||
	    (c->cert_requested && !c->got_data &&
	     (is_certificate_alert(alert) ||
	      (alert < 0 && (eof || reset) && !SSL_get_certificate(c->ssl))))) {
		failf(c, CONN_ERR_TLS,
		      "%s: the server turned our TLS connection away (client certificate "
		      "required: give one it trusts with --tls-cert and --tls-key)",
		      what);
	} else if (eof) {
		failf(c, CONN_ERR_EOF, "%s: the server closed the connection", what);
	} else if (reset) {
		failf(c, CONN_ERR_IO, "%s: %s", what, strerror(sys));
	} else if (first && ERR_GET_REASON(first) == SSL_R_WRONG_VERSION_NUMBER) {
		failf(c, CONN_ERR_TLS,
		      "%s: the server does not speak TLS (wrong version number: is this "
		      "port the server's tls-port?)",
		      what);
	} else {
		const char *why = first ? ERR_reason_error_string(first) : NULL;
		failf(c, CONN_ERR_TLS, "%s: TLS error: %s", what, why ? why : "unknown");
	}
}

/* after a failed handshake: the verification's verdict on the server's
 * certificate, or tls_failed()'s cause */
static void handshake_failed(struct conn *c, int sslerr, const char *name)
{
	static const char what[] = "TLS handshake failed";
	long v = SSL_get_verify_result(c->ssl);

	/* with --tls-insecure the chain is still checked, and its verdict
	 * (no CA was loaded: "unknown CA") kept, but it failed nothing */
	if (SSL_get_verify_mode(c->ssl) == SSL_VERIFY_NONE)
		v = X509_V_OK;
	switch (v) {
	case X509_V_OK:
		tls_failed(c, sslerr, what);
		return;
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_UNTRUSTED:
		failf(c, CONN_ERR_TLS,
		      "%s: the server's certificate is not signed by a CA we trust "
		      "(unknown CA: give the server's CA with --tls-ca-file or --tls-ca-dir)",
		      what);
		break;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		failf(c, CONN_ERR_TLS,
		      "%s: the server's certificate is not for %s (name mismatch: "
		      "--tls-server-name NAME verifies a name it has)",
		      what, name);
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		failf(c, CONN_ERR_TLS,
		      "%s: the server's certificate has expired (certificate expired: "
		      "renew it, or check this host's clock)",
		      what);
		break;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		failf(c, CONN_ERR_TLS,
		      "%s: the server's certificate is not yet valid (check this host's "
		      "clock)",
		      what);
		break;
	default:
		failf(c, CONN_ERR_TLS, "%s: the server's certificate does not verify: %s", what,
		      X509_verify_cert_error_string(v));
		break;
	}
	ERR_clear_error();
}

/* --- reads and writes ------------------------------------------------------------------ */

/* one read attempt: > 0 bytes, 0 the end of the stream, -1 failed (err
 * set), or IO_WANT_* */
static ssize_t io_read(struct conn *c, void *p, size_t n)
{
	if (c->ssl) {
		ERR_clear_error();
		errno = 0;
		int r = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
		if (r > 0)
			return r;
		int e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return e == SSL_ERROR_WANT_READ ? IO_WANT_READ : IO_WANT_WRITE;
		tls_failed(c, e, "cannot read a reply");
		return -1;
	}
	ssize_t r = recv(c->fd, p, n, MSG_DONTWAIT);
	if (r < 0 && errno == ENOTSOCK) /* a pipe (tests) */
		r = read(c->fd, p, n);
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return IO_WANT_READ;
	failf(c, CONN_ERR_IO, "cannot read a reply: %s", strerror(errno));
	return -1;
}

/* one write attempt: > 0 bytes, -1 failed (err set), or IO_WANT_* */
static ssize_t io_write(struct conn *c, const void *p, size_t n)
{
	if (c->ssl) {
		ERR_clear_error();
		errno = 0;
		int r = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
		if (r > 0)
			return r;
		int e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return e == SSL_ERROR_WANT_READ ? IO_WANT_READ : IO_WANT_WRITE;
		tls_failed(c, e, "cannot send a command");
		return -1;
	}
	ssize_t r = send(c->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (r < 0 && errno == ENOTSOCK)
		r = write(c->fd, p, n);
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return IO_WANT_WRITE;
	failf(c, CONN_ERR_IO, "cannot send a command: %s", strerror(errno));
	return -1;
}

/* what wait_fd's answer ready means for c: 0 ready, or -1 with c's error
 * set (timed_out when the deadline passed) */
static int settle_wait(struct conn *c, int ready, const char *timed_out)
{
	if (ready == 0)
		failf(c, CONN_ERR_TIMEOUT, "%s", timed_out);
	else if (ready < 0)
		failf(c, CONN_ERR_IO, "poll: %s", strerror(errno));
	return ready == 1 ? 0 : -1;
}

ssize_t conn_read(struct conn *c, void *p, size_t n, int64_t deadline)
{
	if (c->err)
		return -1;
	/* Right after a request its reply is not there yet: wait for it, not
	 * try a read that would only say so (a system call a hit saves; TLS
	 * may hold bytes read before, so it reads first). */
	int ready = c->sent && !c->ssl ? wait_fd(c->fd, POLLIN, deadline) : 1;
	c->sent = false;
	for (;;) {
		if (settle_wait(c, ready, read_timeout) < 0)
			return -1;
		ssize_t r = io_read(c, p, n);
		if (r > 0) {
			c->got_data = true;
			return r;
		}
		if (r == 0) {
			failf(c, CONN_ERR_EOF, "the server closed the connection");
			return -1;
		}
		if (r == -1)
			return -1;
		ready = wait_fd(c->fd, r == IO_WANT_READ ? POLLIN : POLLOUT, deadline);
	}
}

int conn_write(struct conn *c, const void *p, size_t n, int64_t deadline)
{
	const char *s = p;

	if (c->err)
		return -1;
	while (n > 0) {
		ssize_t k = io_write(c, s, n);
		if (k > 0) {
			s += k;
			n -= k;
			continue;
		}
		if (k == -1)
			return -1;
		int ready = wait_fd(c->fd, k == IO_WANT_WRITE ? POLLOUT : POLLIN, deadline);
		if (settle_wait(c, ready, write_timeout) < 0)
			return -1;
	}
	c->sent = true;
	return 0;
}

ssize_t conn_pull(void *ctx, void *p, size_t n, int64_t deadline)
{
	struct conn *c = ctx;
	ssize_t r = conn_read(c, p, n, deadline);

	if (r < 0)
		err_set("%s", c->errstr);
	return r;
}

int conn_push(void *ctx, const void *p, size_t n, int64_t deadline)
{
	struct conn *c = ctx;

	if (conn_write(c, p, n, deadline) == 0)
		return 0;
	err_set("%s", c->errstr);
	return -1;
}

/* --- commands and replies ---------------------------------------------------------------- */

void conn_append(struct conn *c, int argc, const char **argv, const size_t *lens)
{
	char *cmd;
	int len = redisFormatCommandArgv(&cmd, argc, argv, lens);

	if (len < 0) {
		log_error("out of memory");
		exit(125);
	}
	buf_append(&c->out, cmd, len);
	redisFreeCommand(cmd);
}

int conn_flush(struct conn *c, int64_t deadline)
{
	int rc = c->out.len ? conn_write(c, c->out.data, c->out.len, deadline) : (c->err ? -1 : 0);

	c->out.len = 0;
	return rc;
}

int conn_buffered_reply(struct conn *c, struct redisReply **reply)
{
	void *r = NULL;

	*reply = NULL;
	if (c->err)
		return -1;
	if (c->in.len > c->in.pos) {
		if (redisReaderFeed(c->reader, c->in.buf + c->in.pos, c->in.len - c->in.pos) !=
		    REDIS_OK) {
			failf(c, CONN_ERR_PROTOCOL, "%s", c->reader->errstr);
			return -1;
		}
		c->in.pos = c->in.len = 0;
	}
	if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
		failf(c, CONN_ERR_PROTOCOL, "%s", c->reader->errstr);
		return -1;
	}
	*reply = r;
	return r != NULL;
}

struct redisReply *conn_reply(struct conn *c, int64_t deadline)
{
	struct redisReply *reply;

	for (;;) {
		if (conn_buffered_reply(c, &reply) < 0)
			return NULL;
		if (reply)
			return reply;
		/* the input buffer is empty: hiredis took all of it */
		ssize_t n = conn_read(c, c->in.buf, sizeof(c->in.buf), deadline);
		if (n < 0)
			return NULL;
		c->in.pos = 0;
		c->in.len = (size_t)n;
	}
}

struct resp_reader *conn_reader(struct conn *c, int64_t deadline)
{
	redisReader *r = c->reader;
	size_t left = r->len - r->pos;

	if (c->err)
		return NULL;
	/* bytes hiredis read past its last reply come first (the input buffer
	 * is then empty: every byte in it went to hiredis) */
	if (left > 0) {
		if (r->ridx != -1 || c->in.len > c->in.pos ||
		    resp_feed(&c->in, r->buf + r->pos, left) < left) {
			failf(c, CONN_ERR_PROTOCOL, "a reply is mixed up with the one before");
			return NULL;
		}
		r->pos = r->len;
	}
	c->in.deadline = deadline;
	return &c->in;
}

int conn_wait_input(struct conn *c, int64_t timeout_ms)
{
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN};

	/* decrypted bytes only: part of a record (SSL_has_pending) is no reply
	 * yet, and conn_read_ready reads before it ever polls */
	if (c->in.len > c->in.pos || (c->ssl && SSL_pending(c->ssl) > 0))
		return 1;
	int n = poll(&pfd, 1, timeout_ms > 60000 ? 60000 : (int)timeout_ms);
	return n < 0 ? -1 : n > 0;
}

int conn_read_ready(struct conn *c)
{
	if (c->err)
		return -1;
	if (c->in.pos == c->in.len)
		c->in.pos = c->in.len = 0;
	if (c->in.len == sizeof(c->in.buf))
		return 0;
	ssize_t n = io_read(c, c->in.buf + c->in.len, sizeof(c->in.buf) - c->in.len);
	if (n > 0) {
		c->in.len += n;
		c->got_data = true;
		return 0;
	}
	if (n == 0)
		failf(c, CONN_ERR_EOF, "the server closed the connection");
	return n == 0 || n == -1 ? -1 : 0;
}

int conn_peek_error(struct conn *c, char *out, size_t max)
{
	struct resp_reader *in = &c->in;

	/* the connection failed already: read past its error, without waiting */
	if (in->pos == in->len) {
		in->pos = in->len = 0;
		ssize_t n = io_read(c, in->buf, sizeof(in->buf) - 1);
		if (n > 0)
			in->len = n;
	}
	size_t have = in->len - in->pos;
	const char *p = in->buf + in->pos;
	if (have < 2 || p[0] != '-')
		return 0;
	size_t len = 1;
	while (len < have && p[len] != '\r' && p[len] != '\n')
		len++;
	len--;
	if (len >= max)
		len = max - 1;
	memcpy(out, p + 1, len);
	out[len] = '\0';
	return 1;
}

/* --- connecting ---------------------------------------------------------------------------- */

/* connect a new socket to sa before deadline; the socket, or -1 with errno
 * (ETIMEDOUT when the deadline passed) */
static int connect_to(const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	if (sa->sa_family != AF_UNIX) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (connect(fd, sa, len) == 0)
		return fd;
	if (errno == EINPROGRESS || errno == EINTR) {
		int ready = wait_fd(fd, POLLOUT, deadline);
		if (ready == 1) {
			int soerr = 0;
			socklen_t l = sizeof(soerr);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) == 0 && soerr == 0)
				return fd;
			errno = soerr ? soerr : errno;
		} else if (ready == 0) {
			errno = ETIMEDOUT;
		}
	}
	int saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

static void connect_failed(struct conn *c, int err)
{
	if (err == ETIMEDOUT)
		failf(c, CONN_ERR_TIMEOUT, "timed out (see --redis-timeout)");
	else
		failf(c, CONN_ERR_IO, "%s", strerror(err));
}

static void connect_unix(struct conn *c, const char *path, int64_t deadline)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	if (strlen(path) >= sizeof(sun.sun_path)) {
		failf(c, CONN_ERR_IO, "the socket path is too long");
		return;
	}
	strcpy(sun.sun_path, path);
	c->fd = connect_to((struct sockaddr *)&sun, sizeof(sun), deadline);
	if (c->fd < 0)
		connect_failed(c, errno);
}

/* An address literal goes straight to connect; a name is resolved first
 * (getaddrinfo, which has no deadline), and each address tried in turn. */
static void connect_tcp(struct conn *c, const char *host, int port, int64_t deadline)
{
	struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};

	if (inet_pton(AF_INET, host, &in4.sin_addr) == 1)
		c->fd = connect_to((struct sockaddr *)&in4, sizeof(in4), deadline);
	else if (inet_pton(AF_INET6, host, &in6.sin6_addr) == 1)
		c->fd = connect_to((struct sockaddr *)&in6, sizeof(in6), deadline);
	else {
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV},
				*res;
		char service[16];
		snprintf(service, sizeof(service), "%d", port);
		int rc = getaddrinfo(host, service, &hints, &res);
		if (rc != 0) {
			/* EAI_AGAIN: the resolver may answer on a later try */
			failf(c, rc == EAI_AGAIN || rc == EAI_SYSTEM ? CONN_ERR_IO : CONN_ERR_NAME,
			      "%s", rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
			return;
		}
		errno = EADDRNOTAVAIL;
		for (struct addrinfo *ai = res; ai && c->fd < 0 && errno != ETIMEDOUT;
		     ai = ai->ai_next)
			c->fd = connect_to(ai->ai_addr, ai->ai_addrlen, deadline);
		freeaddrinfo(res);
	}
	if (c->fd < 0)
		connect_failed(c, errno);
}

/* the server asked for a client certificate (OpenSSL calls this then) */
static int note_certificate_request(SSL *ssl, void *arg)
{
	struct conn *c = SSL_get_app_data(ssl);

	(void)arg;
	if (c)
		c->cert_requested = true;
	return 1;
}

static void tls_handshake(struct conn *c, const struct conn_tls *t, const char *host,
			  int64_t deadline)
{
	const char *name = t->server_name ? t->server_name : host;
	unsigned char ip[sizeof(struct in6_addr)];
	bool literal = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;

	ERR_clear_error();
	c->ssl = SSL_new(t->ctx);
	if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
		tls_failed(c, SSL_ERROR_SSL, "cannot start TLS");
		return;
	}
	SSL_set_app_data(c->ssl, c);
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* SNI takes a host name only (RFC 6066 3) */
	if (!literal && !SSL_set_tlsext_host_name(c->ssl, name)) {
		tls_failed(c, SSL_ERROR_SSL, "cannot start TLS");
		return;
	}
	SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (!t->insecure && !(literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name)
				      : SSL_set1_host(c->ssl, name))) {
		tls_failed(c, SSL_ERROR_SSL, "cannot start TLS");
		return;
	}
	for (;;) {
		ERR_clear_error();
		errno = 0;
		int r = SSL_connect(c->ssl);
		if (r == 1)
			return;
		int e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			handshake_failed(c, e, name);
			return;
		}
		int ready = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
		if (ready == 0)
			failf(c, CONN_ERR_TIMEOUT,
			      "TLS handshake failed: not done within "
			      "--redis-timeout (is this port the server's tls-port?)");
		else if (ready < 0)
			failf(c, CONN_ERR_IO, "poll: %s", strerror(errno));
		if (ready != 1)
			return;
	}
}

struct conn *conn_connect(const struct url *u, const struct conn_tls *tls, int64_t deadline)
{
	struct conn *c = conn_new(-1);

	if (u->kind == URL_REDIS_UNIX)
		connect_unix(c, u->path, deadline);
	else
		connect_tcp(c, u->host, u->port, deadline);
	if (!c->err && tls)
		tls_handshake(c, tls, u->host, deadline);
	return c;
}

static void conn_release(struct conn *c, bool goodbye)
{
	if (!c)
		return;
	if (c->ssl) {
		/* one try, never a wait: the server forgets us either way */
		if (goodbye && !c->err)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		ERR_clear_error();
	}
	if (c->fd >= 0)
		close(c->fd);
	redisReaderFree(c->reader);
	buf_free(&c->out);
	free(c);
}

void conn_free(struct conn *c)
{
	conn_release(c, true);
}

void conn_drop(struct conn *c)
{
	conn_release(c, false);
}

const char *conn_tls_desc(const struct conn *c, char *out, size_t max)
{
	if (!c->ssl)
		snprintf(out, max, "%s", "");
	else
		snprintf(out, max, "%s %s", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
	return out;
}

/* --- the TLS configuration --------------------------------------------------------------- */

/* a key with a passphrase fails to load instead of prompting on the terminal */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return 0;
}

/* err_set() "OPT: FILE: what (OpenSSL's reason)" and NULL */
static struct conn_tls *tls_setting_error(struct conn_tls *t, const char *opt, const char *file,
					  const char *what)
{
	unsigned long code = ERR_peek_last_error();
	const char *why = code ? ERR_reason_error_string(code) : NULL;

	err_set("%s: %s: %s%s%s%s", opt, file, what, why ? " (" : "", why ? why : "",
		why ? ")" : "");
	ERR_clear_error();
	conn_tls_free(t);
	return NULL;
}

/* the system's hashed certificate directory, or the one OpenSSL's own
 * SSL_CERT_DIR names, as every OpenSSL client honours it */
static const char *default_ca_dir(void)
{
	const char *env = getenv(X509_get_default_cert_dir_env());

	return env && *env ? env : X509_get_default_cert_dir();
}

/* the name of where a TLS file came from (options.c sets it), else dflt */
static const char *from(const char *name, const char *dflt)
{
	return name ? name : dflt;
}

struct conn_tls *conn_tls_new(const struct tls_options *o)
{
	if (tls_api_load() < 0)
		return NULL;
	struct conn_tls *t = xcalloc(1, sizeof(*t));

	ERR_clear_error();
	t->ctx = SSL_CTX_new(TLS_client_method());
	if (!t->ctx)
		return tls_setting_error(t, "TLS", "OpenSSL", "cannot set up a TLS context");
	t->insecure = o->insecure;
	t->server_name = o->server_name ? xstrdup(o->server_name) : NULL;
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	/* no session outlives its connection: a background refresh, after
	 * fork(2), makes a new one */
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_cert_cb(t->ctx, note_certificate_request, NULL);
	SSL_CTX_set_default_passwd_cb(t->ctx, no_passphrase);
	if (!o->insecure) {
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
		/* a hashed directory is read a certificate at a time, as
		 * verification asks; a bundle file would be parsed whole, on
		 * every run (~18 ms for the system's) */
		const char *dir = o->ca_dir ? o->ca_dir : o->ca_file ? NULL : default_ca_dir();
		if (o->ca_file && SSL_CTX_load_verify_file(t->ctx, o->ca_file) != 1)
			return tls_setting_error(t, from(o->ca_file_from, "--tls-ca-file"),
						 o->ca_file, "holds no CA certificate in PEM");
		if (dir && SSL_CTX_load_verify_dir(t->ctx, dir) != 1)
			return tls_setting_error(t, from(o->ca_dir_from, "--tls-ca-dir"), dir,
						 "cannot be used");
	}
	if (o->cert) {
		const char *key = o->key ? o->key : o->cert;
		const char *key_from =
			o->key ? from(o->key_from, "--tls-key") : from(o->cert_from, "--tls-cert");
		if (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert) != 1)
			return tls_setting_error(t, from(o->cert_from, "--tls-cert"), o->cert,
						 "holds no certificate in PEM");
		if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1) {
			unsigned long code = ERR_peek_last_error();
			if (ERR_GET_LIB(code) == ERR_LIB_X509 &&
			    ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH)
				return tls_setting_error(t, key_from, key,
							 "is not the key of the certificate");
			return tls_setting_error(
				t, key_from, key,
				"holds no private key in PEM without a passphrase");
		}
		if (SSL_CTX_check_private_key(t->ctx) != 1)
			return tls_setting_error(t, key_from, key,
						 "is not the key of the certificate");
	}
	return t;
}

void conn_tls_free(struct conn_tls *t)
{
	if (!t)
		return;
	if (t->ctx)
		SSL_CTX_free(t->ctx);
	free(t->server_name);
	free(t);
}
