/* file_stats: the local store's counters file, NS/stats: a magic word and
 * 64 native-endian 64-bit counters (room for counters added later).
 *
 * The counters are read and written with pread/pwrite under an flock(2) of
 * the file, never through a shared mapping: a mapped file whose blocks the
 * file system cannot allocate (a full disk, a quota, a file truncated under
 * the mapping) kills the process with SIGBUS at the first store to it,
 * where a write(2) returns ENOSPC and the count is just lost. */
#ifndef CACHEFENCE_FILE_STATS_H
#define CACHEFENCE_FILE_STATS_H

#include <stdbool.h>
#include <stdint.h>

struct file_stats {
	int fd;         /* the counters file, opened on first use, or -1 */
	bool opened;    /* an open was tried */
	int open_errno; /* why it failed, or 0 */
	bool writable;  /* opened for writing (a read-only store opens it for reading) */
	bool warned;    /* a failed update was reported (with -v) */
};

/* a struct file_stats not yet opened */
#define FILE_STATS_INIT                                                                            \
	{                                                                                          \
		.fd = -1                                                                           \
	}

/* add one to counter which (below 64) of the store directory dirfd (its
 * path dir for messages); best effort: a failure costs one verbose line */
void file_stats_add(struct file_stats *st, int dirfd, const char *dir, int which);
/* read the first n counters into c, zeroing them after when reset; 0, or
 * -1 with err_set() */
int file_stats_read(struct file_stats *st, int dirfd, const char *dir, uint64_t *c, int n,
		    bool reset);
/* close the counters file; accepts one never opened */
void file_stats_close(struct file_stats *st);

#endif
