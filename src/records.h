/* records: the line records of the local store's small files: a tag's list
 * of keys, and the key and tags a leader writes into its lock file.
 *
 * One record is "LEN=BYTES\n": LEN the decimal length of the bytes, BYTES
 * with backslash and newline escaped as "\\" and "\n", so a record never
 * holds a raw newline. A reader splits at newlines and keeps a line only if
 * its bytes unescape to exactly LEN. A record cut short (a full disk, a
 * crash) is one bad line, never a reason to misread the records after it,
 * and no key's bytes can pass for a record of their own, whatever they hold. */
#ifndef CACHEFENCE_RECORDS_H
#define CACHEFENCE_RECORDS_H

#include <stddef.h>

#include "util.h"

/* the longest record accepted (the longest user key) */
#define RECORD_MAX (1024 * 1024)

/* append one record of len bytes at p to b */
void record_append(struct buf *b, const void *p, size_t len);

/* Read the record at *pos of the len bytes at data into out (replacing its
 * contents) and move *pos past it. 1 a record, 0 at the end, -1 a damaged
 * line (skipped: call again for the next). Empty lines are skipped. A line
 * "LEN:BYTES" is a record of cachefence 0.1, which did not escape: it counts
 * when its raw bytes are exactly LEN long. */
int record_next(const char *data, size_t len, size_t *pos, struct buf *out);

#endif
