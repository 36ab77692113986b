/* resp: the small part of the Redis protocol (RESP2) that cachefence speaks
 * on its own, on a plain file descriptor, so values of any size stream
 * between Redis and a file without being held in memory: hiredis buffers a
 * whole reply, and builds a whole command, before it hands either over.
 * Used only where the size calls for it: a hit's reply and a store's command. */
#ifndef CACHEFENCE_RESP_H
#define CACHEFENCE_RESP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* a buffered reader of replies from fd */
struct resp_reader {
	int fd;
	size_t pos, len;
	char buf[65536];
};

/* start reading replies from fd; seed holds bytes already read from it */
void resp_reader_init(struct resp_reader *r, int fd, const char *seed, size_t seed_len);

/* read a reply's type byte and its line (without CRLF) into line; 0, or -1
 * with err_set() (a closed connection, a timeout, a line longer than max) */
int resp_header(struct resp_reader *r, char *type, char *line, size_t max);
/* read a header that must be of type want ('*', '$' or ':') and its number;
 * a '-' error reply becomes err_set() with its text and -2; -1 otherwise */
int resp_number(struct resp_reader *r, char want, int64_t *n);
/* read exactly n bytes into p; 0 or -1 */
int resp_read(struct resp_reader *r, void *p, size_t n);
/* read the CRLF that ends a bulk string; 0 or -1 */
int resp_crlf(struct resp_reader *r);

/* called with each piece of a streamed bulk string */
typedef void (*resp_piece_fn)(void *ctx, const char *p, size_t n);
/* read exactly n bytes, handing them to fn in pieces as they arrive; 0 or -1 */
int resp_stream(struct resp_reader *r, uint64_t n, resp_piece_fn fn, void *ctx);

/* one argument of a command: len bytes at p, or (fd >= 0) len bytes read
 * from fd at its current offset */
struct resp_arg {
	const void *p;
	uint64_t len;
	int fd;
};

/* send one command made of args to fd, reading file arguments in pieces;
 * 0, or -1 with err_set() */
int resp_send(int fd, const struct resp_arg *args, int n);

#endif
