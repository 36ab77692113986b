/* store_file: the local store's state, shared by its parts and by nobody
 * else (the rest of the program sees store.h): store_file.c (the store
 * operations, reading entries, the lookup), file_dir.c (the directory and
 * the names in it), file_lock.c (kernel locks, waits, fencing), file_tags.c,
 * file_sweep.c and file_stats.c (the counters). */
#ifndef CACHEFENCE_STORE_FILE_H
#define CACHEFENCE_STORE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "file_stats.h"
#include "store.h"

struct file_store {
	struct store base;
	struct file_stats stats;     /* the counters file */
	int dirfd;                   /* the namespace directory */
	char *dir;                   /* its path, for messages */
	int lock_fd;                 /* the lock we lead under, or -1 */
	int wait_fd;                 /* the lock file a waiter waits on, or -1 */
	int64_t wait_since_ms;       /* when we first found the lock held, or 0: a
				     * round that ended before is not the one we wait on */
	int notify_fd;               /* inotify, to wake a waiter, or -1 */
	int commit_fd;               /* commit.lock, opened on first use, or -1 */
	char lock_value_suffix[300]; /* " host=H pid=P" after the token */
	bool sweep_pending;          /* a result was stored and the odds fell: sweep at close */
};

static inline struct file_store *to_file(struct store *s)
{
	return (struct file_store *)s;
}

/* an entry (or round result) file opened and checked */
struct stored {
	int fd; /* positioned at the stored stdout */
	struct entry_meta meta;
	char *trailer; /* the user key (entries) or token (round results); malloc'ed */
	size_t trailer_len;
};

/* Open and decode the stored file name. 1 found and sound, 0 absent or not
 * decodable (a miss: a corrupt, truncated or foreign file is never an
 * error), -1 on a real I/O failure with err_set(). */
int stored_open(struct file_store *fs, const char *name, struct stored *st);

/* open the key's entry if it is sound and really holds this key; as stored_open */
int entry_open(struct file_store *fs, const char *key, size_t len, struct stored *st);

/* close what stored_open opened; accepts one already closed */
void stored_close(struct stored *st);

/* delete the key's entry and fence out its leader; 1 deleted, 0 none, -1 */
int file_invalidate(struct store *s, const char *key, size_t key_len);

#endif
