/* conn: one connection to Redis, the only way bytes go to and come from it:
 * TCP, a unix socket, or TLS over TCP (OpenSSL), opened within a deadline,
 * with reads and writes that never wait past the exchange's deadline.
 *
 * Two readers take replies from one input buffer (in), so no byte read is
 * ever lost between them: hiredis's redisReader parses the small replies
 * whole (conn_reply), and resp.c streams the large ones (conn_reader).
 * Commands are built by hiredis (conn_append) or streamed by resp.c
 * (conn_push). Failures are kept in the connection (err, errstr), in the
 * habit of hiredis's contexts; the store turns them into its messages. */
#ifndef CACHEFENCE_CONN_H
#define CACHEFENCE_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "parse.h"
#include "resp.h"
#include "util.h"

struct ssl_st;
struct redisReader;
struct redisReply;

enum conn_error {
	CONN_OK,
	CONN_ERR_IO,       /* a system call failed, or the peer reset the connection */
	CONN_ERR_TIMEOUT,  /* the deadline passed */
	CONN_ERR_EOF,      /* the server closed the connection */
	CONN_ERR_PROTOCOL, /* bytes that are not RESP, or an exchange left half done */
	CONN_ERR_TLS,      /* the TLS layer failed (handshake, verification, alert) */
	CONN_ERR_NAME,     /* the host name does not resolve (and will not by retrying) */
};

struct conn {
	int fd;
	enum conn_error err;
	char errstr[400];           /* err's cause, one line without the address */
	struct ssl_st *ssl;         /* TLS; NULL on a plain connection */
	bool cert_requested;        /* TLS: the server asked for a client certificate */
	bool got_data;              /* some application data came since the handshake */
	bool sent;                  /* a write went out since the last read: its reply is
				     * not there yet (conn_read polls before reading) */
	struct redisReader *reader; /* parses replies that are not streamed */
	struct buf out;             /* commands appended, not yet sent */
	struct resp_reader in;      /* bytes read and not yet parsed */
};

/* a TLS configuration: the CA to trust, the client certificate, the name to
 * verify; shared by every connection of a process (after a fork too: it
 * holds no session) */
struct conn_tls;

/* load what o names (CA file or directory, certificate and key) into a
 * configuration for connections; NULL with err_set() naming the option at
 * fault. insecure skips verification of the server. */
struct conn_tls *conn_tls_new(const struct tls_options *o);
/* release a configuration; accepts NULL */
void conn_tls_free(struct conn_tls *t);

/* Connect to the TCP or unix address u names, with TLS when tls is not NULL
 * (then the handshake is done and the server verified), all before
 * deadline. Never NULL: on failure err and errstr say why (a TLS failure
 * names its cause: unknown CA, name mismatch, certificate expired, ...).
 * The descriptor is close-on-exec. */
struct conn *conn_connect(const struct url *u, const struct conn_tls *tls, int64_t deadline);
/* a plain connection over an open socket or pipe fd, which it then owns */
struct conn *conn_of_fd(int fd);
/* close the connection (a TLS one says goodbye) and free it; accepts NULL */
void conn_free(struct conn *c);
/* free a connection inherited across fork(2) without a word on the wire:
 * the other process still uses its TLS session; accepts NULL */
void conn_drop(struct conn *c);

/* mark the connection unusable with why, unless it failed already: an
 * exchange stopped part way, and bytes still on their way would be read
 * as the next reply */
void conn_fail(struct conn *c, enum conn_error err, const char *why);

/* read up to n bytes into p before deadline (0: none); the count, or -1
 * with err set (the server closing the connection is an error) */
ssize_t conn_read(struct conn *c, void *p, size_t n, int64_t deadline);
/* write all n bytes before deadline; 0, or -1 with err set */
int conn_write(struct conn *c, const void *p, size_t n, int64_t deadline);

/* resp.c's callbacks on a connection (ctx): conn_read and conn_write,
 * whose failures also go to err_set() */
ssize_t conn_pull(void *ctx, void *p, size_t n, int64_t deadline);
int conn_push(void *ctx, const void *p, size_t n, int64_t deadline);

/* append one command (argv with explicit lengths) to the output buffer */
void conn_append(struct conn *c, int argc, const char **argv, const size_t *lens);
/* send everything appended before deadline; 0, or -1 with err set */
int conn_flush(struct conn *c, int64_t deadline);
/* the next whole reply, read before deadline, parsed by hiredis (error
 * replies included); NULL with err set. Free it with freeReplyObject. */
struct redisReply *conn_reply(struct conn *c, int64_t deadline);
/* the next reply if its bytes are all here already, without reading:
 * 1 with *reply, 0 none yet, -1 with err set (bytes that are not RESP) */
int conn_buffered_reply(struct conn *c, struct redisReply **reply);

/* the stream reader for the next reply, with no byte already read lost,
 * its deadline set; NULL with err set when the connection failed */
struct resp_reader *conn_reader(struct conn *c, int64_t deadline);

/* wait up to timeout_ms for input: 1 there is some (bytes held, in TLS's
 * buffers or on the socket), 0 none, -1 with errno (EINTR: a signal) */
int conn_wait_input(struct conn *c, int64_t timeout_ms);
/* read what is there without waiting; 0, or -1 with err set (closed too) */
int conn_read_ready(struct conn *c);

/* after a failed send: whether the server had already sent an error reply
 * (a refusal it sends before closing, such as "-DENIED ..." from a server in
 * protected mode, or "-ERR max number of clients reached"); 1 with its
 * text (cut to max - 1 bytes) in out, else 0. Never waits. */
int conn_peek_error(struct conn *c, char *out, size_t max);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for a TLS connection, else "" */
const char *conn_tls_desc(const struct conn *c, char *out, size_t max);

#endif
