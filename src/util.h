/* util: the small things every module needs: one error vocabulary, log lines,
 * allocation that never returns NULL, growable byte buffers, and I/O that
 * survives EINTR and short writes. */
#ifndef CACHEFENCE_UTIL_H
#define CACHEFENCE_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ATTR_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* record a one-line error message for the caller to report; modules return
 * -1 (or NULL) after calling this, and only main.c decides to exit */
void err_set(const char *fmt, ...) ATTR_PRINTF(1, 2);
/* the message recorded by the last err_set() */
const char *err_msg(void);

/* choose which log lines print: verbose adds decision lines, quiet drops warnings */
void log_init(int verbose, int quiet);
/* print "cachefence: MSG" on stderr; errors always print */
void log_error(const char *fmt, ...) ATTR_PRINTF(1, 2);
/* print "cachefence: warning: MSG" on stderr unless quiet */
void log_warn(const char *fmt, ...) ATTR_PRINTF(1, 2);
/* print "cachefence: MSG" on stderr only with -v (one line per decision) */
void log_verbose(const char *fmt, ...) ATTR_PRINTF(1, 2);
/* whether -v is in force, to skip building expensive verbose lines */
int log_is_verbose(void);

/* allocation wrappers: they exit(125) with a message instead of returning NULL */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xmemdup(const void *p, size_t n);
/* a malloc'ed string built like printf; the caller frees it */
char *xasprintf(const char *fmt, ...) ATTR_PRINTF(1, 2);

/* a growable byte buffer; data is NUL-terminated for convenience but may hold NULs */
struct buf {
	char *data;
	size_t len, cap;
};
void buf_append(struct buf *b, const void *p, size_t n);
void buf_appendf(struct buf *b, const char *fmt, ...) ATTR_PRINTF(2, 3);
void buf_vappendf(struct buf *b, const char *fmt, va_list ap) ATTR_PRINTF(2, 0);
/* release the buffer's memory and reset it to empty */
void buf_free(struct buf *b);

/* write all n bytes, retrying on EINTR and short writes; 0 or -1 with errno */
int write_all(int fd, const void *p, size_t n);

/* The caller's standard descriptors. Before anything else is opened, a
 * closed stdin, stdout or stderr is given /dev/null opened the other way
 * round (stdin write-only, stdout and stderr read-only): no socket or lock
 * file can take its number, and every read or write on it still fails with
 * EBADF, for cachefence and for COMMAND, as on a closed descriptor. 0, or
 * -1 with err_set() when /dev/null cannot be opened. */
int std_fds_init(void);

/* Write n bytes to the caller's stdout or stderr: the one path for every
 * byte of output (hits, the leader's tee, get, replays). It retries EINTR
 * and short writes, waits with poll(2) when the descriptor is non-blocking
 * (EAGAIN: its flags are shared with other processes, so they are left
 * alone), stays quiet when the reader went away (EPIPE), and prints one
 * line for any other error. After a failure the stream takes no more bytes.
 * 0, or -1 with errno. */
int out_write(int fd, const void *p, size_t n);
/* whether a write to the caller's fd failed (no more bytes go there) */
bool out_failed(int fd);
/* record that bytes meant for the caller's fd were lost before the write
 * (a spool that cannot be read back): the same as a write error err */
void out_lost(int fd, int err);
/* the exit status once the output is done: status itself when every byte
 * of stdout went out or status is already non-zero; else 141 (128+SIGPIPE,
 * as a command killed by SIGPIPE) when stdout's reader went away, and 125
 * after any other write error on stdout (stderr's never count) */
int out_status(int status);
/* read up to n bytes, retrying on EINTR and until EOF or n; bytes read or -1 */
ssize_t read_full(int fd, void *p, size_t n);
/* read len bytes from fd at its current offset, handing them to fn in
 * pieces of up to 64 KiB; 0, or -1 with errno (a short input is EIO; a
 * piece fn fails with -1 stops the walk) */
int read_pieces(int fd, uint64_t len, int (*fn)(void *ctx, const char *p, size_t n), void *ctx);
/* copy len bytes from in_fd at its current offset to out_fd; 0 or -1 with
 * errno (a short input is EIO) */
int copy_fd(int in_fd, int out_fd, uint64_t len);

/* milliseconds on the monotonic clock, for intervals within this process */
int64_t monotonic_ms(void);
/* microseconds on the same clock, for round trips */
int64_t monotonic_us(void);
/* milliseconds since the epoch on the wall clock, for times kept in files */
int64_t realtime_ms(void);
/* fill out with a random token of 2*nbytes hex digits plus NUL */
int random_hex(char *out, size_t nbytes);
/* lowercase hex of n bytes into out (2n+1 bytes) */
void hex_encode(char *out, const unsigned char *p, size_t n);
/* v in decimal into out (at least 21 bytes), NUL-terminated; its length.
 * For numbers on a hit's path, where snprintf's cost shows. */
size_t dec_u64(char *out, uint64_t v);

#endif
