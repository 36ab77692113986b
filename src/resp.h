/* resp: the small part of the Redis protocol (RESP2) that cachefence speaks
 * on its own, so values of any size stream between Redis and a file without
 * being held in memory: hiredis buffers a whole reply, and builds a whole
 * command, before it hands either over. Used only where the size calls for
 * it: a hit's reply and a store's command.
 *
 * No I/O of its own: the reader pulls bytes through a callback (conn.c's
 * connection, or a fuzzer's input), the writer pushes them through another,
 * each with the exchange's deadline. */
#ifndef CACHEFENCE_RESP_H
#define CACHEFENCE_RESP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The deadline of an exchange (a command and its reply) is absolute, on the
 * monotonic clock (util.h's monotonic_ms), so the timeout bounds the whole
 * exchange rather than each read or write of it: a link that trickles a
 * byte at a time cannot stretch it. A value of n bytes adds resp_budget_ms(n)
 * to it, the time it takes at the slowest rate taken for a working link. */
#define RESP_MIN_RATE (1024 * 1024) /* bytes per second */

/* the time n bytes take at RESP_MIN_RATE, in ms, rounded up */
int64_t resp_budget_ms(uint64_t n);

/* read up to n bytes into p, waiting no longer than deadline (0: none):
 * how many (> 0), 0 at the end of the stream, or -1 with err_set() */
typedef ssize_t (*resp_pull_fn)(void *ctx, void *p, size_t n, int64_t deadline);
/* write all n bytes at p before deadline (0: none); 0, or -1 with err_set() */
typedef int (*resp_push_fn)(void *ctx, const void *p, size_t n, int64_t deadline);

/* a buffered reader of replies: the bytes it holds, and where more come from */
struct resp_reader {
	resp_pull_fn pull; /* NULL: only the bytes fed with resp_feed */
	void *ctx;         /* for pull */
	int64_t deadline;  /* no pull waits past it; 0: none */
	size_t pos, len;
	char buf[65536];
};

/* start an empty reader that pulls from pull(ctx, ...), with no deadline */
void resp_reader_init(struct resp_reader *r, resp_pull_fn pull, void *ctx);
/* hand the reader n bytes to read before any it pulls (after those it
 * holds); how many fit */
size_t resp_feed(struct resp_reader *r, const void *p, size_t n);
/* allow the reader n more bytes' worth of time (resp_budget_ms), once a
 * reply says how large its value is; nothing without a deadline */
void resp_reader_extend(struct resp_reader *r, uint64_t n);

/* read a reply's type byte and its line (without CRLF) into line; 0, or -1
 * with err_set() (a closed connection, a timeout, a line longer than max).
 * An error line ('-') longer than max is cut to fit: its text is the
 * server's message to the operator, however long. */
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

/* the bytes args take on the wire, as resp_send writes them */
uint64_t resp_size(const struct resp_arg *args, int n);
/* send one command made of args through push(ctx, ...), reading file
 * arguments in pieces, all of it before deadline (0: none); 0, or -1 with
 * err_set() */
int resp_send(resp_push_fn push, void *ctx, const struct resp_arg *args, int n, int64_t deadline);

#endif
