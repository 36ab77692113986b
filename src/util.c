/* util: error recording, log lines, x-allocation, buffers and careful I/O. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* per thread: the lease's thread (lease.c) calls the store too */
static _Thread_local char last_error[1024];
static int verbose_on, quiet_on;
/* the caller's stdout (1) and stderr (2): 0 while every byte went out, else
 * the errno of the first failed write */
static int out_errno[3];

static int write_wait(int fd, const void *p, size_t n);

void err_set(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
}

const char *err_msg(void)
{
	return last_error[0] ? last_error : "unknown error";
}

void log_init(int verbose, int quiet)
{
	verbose_on = verbose;
	quiet_on = quiet;
}

int log_is_verbose(void)
{
	return verbose_on;
}

/* One write(2) per line, so lines from many processes sharing a terminal
 * or a log file do not interleave mid-line. */
static void log_line(const char *prefix, const char *fmt, va_list ap)
{
	char line[2048];
	int n = snprintf(line, sizeof(line), "cachefence: %s", prefix);

	if (n < 0)
		return;
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	/* whatever a message quotes (a server's error text, a file name), it
	 * stays one line and sends no escape sequence to the terminal */
	for (int i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	line[n++] = '\n';
	(void)write_wait(STDERR_FILENO, line, n);
}

void log_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line("", fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;

	if (quiet_on)
		return;
	va_start(ap, fmt);
	log_line("warning: ", fmt, ap);
	va_end(ap);
}

void log_verbose(const char *fmt, ...)
{
	va_list ap;

	if (!verbose_on)
		return;
	va_start(ap, fmt);
	log_line("", fmt, ap);
	va_end(ap);
}

static void out_of_memory(void)
{
	static const char msg[] = "cachefence: out of memory\n";

	(void)write_all(STDERR_FILENO, msg, sizeof(msg) - 1);
	exit(125);
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		out_of_memory();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		out_of_memory();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		out_of_memory();
	return p;
}

char *xstrdup(const char *s)
{
	return xmemdup(s, strlen(s));
}

char *xmemdup(const void *p, size_t n)
{
	char *d = xmalloc(n + 1);

	memcpy(d, p, n);
	d[n] = '\0';
	return d;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	struct buf b = {0};

	va_start(ap, fmt);
	buf_vappendf(&b, fmt, ap);
	va_end(ap);
	return b.data;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void buf_vappendf(struct buf *b, const char *fmt, va_list ap)
{
	va_list again;
	char tmp[512];

	va_copy(again, ap);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	if (n >= 0 && (size_t)n < sizeof(tmp)) {
		buf_append(b, tmp, n);
	} else if (n >= 0) {
		char *big = xmalloc(n + 1);
		vsnprintf(big, n + 1, fmt, again);
		buf_append(b, big, n);
		free(big);
	}
	va_end(again);
	if (!b->data)
		buf_append(b, "", 0);
}

void buf_appendf(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	buf_vappendf(b, fmt, ap);
	va_end(ap);
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= w;
	}
	return 0;
}

int std_fds_init(void)
{
	for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		/* the wrong way round on purpose: it holds the number, and a read
		 * of stdin or a write to stdout fails with EBADF as when closed */
		int null = open("/dev/null", fd == STDIN_FILENO ? O_WRONLY : O_RDONLY);
		if (null < 0) {
			err_set("descriptor %d is closed and /dev/null cannot be opened in its place: %s",
				fd, strerror(errno));
			return -1;
		}
		if (null != fd) {
			int rc = dup2(null, fd);
			close(null);
			if (rc < 0) {
				err_set("cannot put /dev/null on closed descriptor %d: %s", fd,
					strerror(errno));
				return -1;
			}
		}
	}
	return 0;
}

/* write_all, and on a non-blocking descriptor wait for room instead of
 * failing with EAGAIN */
static int write_wait(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -1;
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
				return -1;
			continue;
		}
		c += w;
		n -= w;
	}
	return 0;
}

void out_lost(int fd, int err)
{
	if (fd != STDOUT_FILENO && fd != STDERR_FILENO)
		return;
	if (out_errno[fd])
		return;
	out_errno[fd] = err ? err : EIO;
	if (err == EPIPE)
		return; /* the reader went away on purpose (| head): nothing to say */
	const char *what = fd == STDOUT_FILENO ? "output" : "error";
	if (err == EBADF)
		log_error("cannot write to standard %s: it is closed (to discard it, send it to "
			  "/dev/null)",
			  what);
	else
		log_error("cannot write to standard %s: %s", what, strerror(err));
}

bool out_failed(int fd)
{
	return (fd == STDOUT_FILENO || fd == STDERR_FILENO) && out_errno[fd];
}

int out_write(int fd, const void *p, size_t n)
{
	bool std = fd == STDOUT_FILENO || fd == STDERR_FILENO;

	if (std && out_errno[fd]) {
		errno = out_errno[fd];
		return -1;
	}
	if (write_wait(fd, p, n) == 0)
		return 0;
	int e = errno;
	out_lost(fd, e);
	errno = e;
	return -1;
}

int out_status(int status)
{
	/* stdout only: stderr carries diagnostics, and a stderr that fails
	 * leaves nowhere to say why the status changed */
	if (status != 0 || out_errno[STDOUT_FILENO] == 0)
		return status;
	return out_errno[STDOUT_FILENO] == EPIPE ? 128 + SIGPIPE : 125;
}

ssize_t read_full(int fd, void *p, size_t n)
{
	char *c = p;
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, c + got, n - got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		got += r;
	}
	return got;
}

int read_pieces(int fd, uint64_t len, int (*fn)(void *ctx, const char *p, size_t n), void *ctx)
{
	char chunk[65536];

	while (len > 0) {
		size_t want = len < sizeof(chunk) ? len : sizeof(chunk);
		ssize_t r = read_full(fd, chunk, want);
		if (r < 0)
			return -1;
		if ((size_t)r < want) {
			errno = EIO;
			return -1;
		}
		if (fn(ctx, chunk, r) < 0)
			return -1;
		len -= r;
	}
	return 0;
}

static int write_piece(void *ctx, const char *p, size_t n)
{
	return write_all(*(int *)ctx, p, n);
}

int copy_fd(int in_fd, int out_fd, uint64_t len)
{
	return read_pieces(in_fd, len, write_piece, &out_fd);
}

int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void hex_encode(char *out, const unsigned char *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

int random_hex(char *out, size_t nbytes)
{
	unsigned char raw[64];

	if (nbytes > sizeof(raw)) {
		err_set("random_hex: %zu bytes is too many", nbytes);
		return -1;
	}
	size_t got = 0;
	while (got < nbytes) {
		ssize_t r = getrandom(raw + got, nbytes - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			err_set("getrandom: %s", strerror(errno));
			return -1;
		}
		got += r;
	}
	hex_encode(out, raw, nbytes);
	return 0;
}

size_t dec_u64(char *out, uint64_t v)
{
	char rev[20];
	size_t n = 0, len = 0;

	do {
		rev[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		out[len++] = rev[--n];
	out[len] = '\0';
	return len;
}
