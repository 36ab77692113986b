/* file_lock: the local store's locks, all kernel locks, so that a process
 * that dies lets go by dying. A key's leader holds an exclusive flock(2)
 * on H.lock, whose content names it (token, host, pid, then its key and
 * tags as records); waiters wait for a shared flock of the same file;
 * commit.lock serialises the last check-and-rename of a result against
 * invalidate and the sweep. Invalidating unlinks a lock file: its leader
 * finds its lock replaced, is fenced out, and stores nothing. */
#ifndef CACHEFENCE_FILE_LOCK_H
#define CACHEFENCE_FILE_LOCK_H

#include <stdint.h>

#include "store.h"

struct file_store;

/* Try to take the key's lock without blocking: 1 taken (fs->lock_fd), 0 held
 * by another process (its token in holder, TOKEN_LEN + 1 bytes, the file
 * kept open in fs->wait_fd to wait on), -1 with err_set(). */
int take_lock(struct file_store *fs, const struct lookup_req *req, char *holder);

/* is the lock file name still the one we hold? 1 or 0 */
int lock_still_ours(struct file_store *fs, const char *name);

/* give back the lock we lead under, if any */
void release_lock(struct file_store *fs);

/* the store's wait: until the lock file in fs->wait_fd is let go (1) or
 * timeout_ms passes (0); -1 with err_set() */
int file_wait(struct store *s, int64_t timeout_ms);

/* take the store-wide commit lock; its descriptor for commit_unlock, or -1
 * with err_set() */
int commit_lock(struct file_store *fs);

/* let go of the commit lock */
void commit_unlock(int fd);

/* Fence out every leader running for a key that matches glob, or (glob
 * NULL) that files its result under tag, whether an entry exists yet or
 * not. 0 or -1 with err_set(). */
int fence_running(struct file_store *fs, const char *glob, const char *tag);

/* the store's fence: fence_running for glob */
int file_fence(struct store *s, const char *glob);

#endif
