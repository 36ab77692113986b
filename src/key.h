/* key: user keys (any bytes but NUL) and how the cache key is derived from a
 * command line when none is given. */
#ifndef CACHEFENCE_KEY_H
#define CACHEFENCE_KEY_H

#include <stddef.h>

#include "util.h"

/* the longest user key accepted */
#define KEY_MAX (1024 * 1024)
/* hex digits of a SHA-256 digest, plus NUL */
#define KEY_HASH_HEX 65

/* check a user key given on the command line; 0, or -1 with err_set() */
int key_validate(const char *key, size_t len);

/* derive the user key for COMMAND's argv: "cmd:" and the SHA-256 of every
 * argument followed by a NUL byte, so ("a b") and ("a", "b") differ; the
 * result replaces out's contents */
void key_derive(struct buf *out, char *const *argv);

/* lowercase hex SHA-256 of len bytes at p */
void key_hash_hex(char out[KEY_HASH_HEX], const void *p, size_t len);

/* a printable form of key for log lines, into out: bytes outside printable
 * ASCII become \xNN and long keys are cut with "..."; returns out->data */
const char *key_printable(struct buf *out, const char *key, size_t len);

#endif
