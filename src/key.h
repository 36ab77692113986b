/* key: user keys (any bytes but NUL) and how the cache key is derived from a
 * command line when none is given. */
#ifndef CACHEFENCE_KEY_H
#define CACHEFENCE_KEY_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* the longest user key accepted */
#define KEY_MAX (1024 * 1024)
/* hex digits of a SHA-256 digest, plus NUL */
#define KEY_HASH_HEX 65

/* check a user key given on the command line; 0, or -1 with err_set() */
int key_validate(const char *key, size_t len);

/* what else goes into a derived key besides COMMAND's argv */
struct key_scope {
	bool cwd;               /* the working directory */
	const char *const *env; /* variable names: their values (or their absence) */
	int nenv;
	const char *const *files; /* paths: their size and mtime (or their absence) */
	int nfiles;
	const unsigned char *stdin_digest; /* SHA-256 of standard input, or NULL */
};

/* derive the user key for COMMAND's argv: "cmd:" and the SHA-256 of every
 * argument followed by a NUL byte, so ("a b") and ("a", "b") differ. With a
 * scope, the digest also covers it. The result replaces out's contents;
 * -1 with err_set() when the working directory cannot be read. */
int key_derive(struct buf *out, char *const *argv, const struct key_scope *scope);

/* read all of in_fd, handing each piece to keep (which keeps it somewhere
 * for later; NULL: nothing is kept) and computing the SHA-256 of it all into digest (32 bytes);
 * 0, -1 with err_set() when in_fd cannot be read, or keep's -1 when it
 * could not keep a piece (then reading stops: the rest is still in in_fd) */
int key_digest_read(int in_fd, int (*keep)(void *ctx, const char *p, size_t n), void *ctx,
		    unsigned char digest[32]);

/* lowercase hex SHA-256 of len bytes at p */
void key_hash_hex(char out[KEY_HASH_HEX], const void *p, size_t len);

/* a printable form of key for log lines, into out: bytes outside printable
 * ASCII become \xNN and long keys are cut with "..."; returns out->data */
const char *key_printable(struct buf *out, const char *key, size_t len);

#endif
