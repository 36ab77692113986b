/* file_lock: the local store's locks; see file_lock.h. A waiter polls a
 * shared flock(2) without blocking, woken by inotify, up to its deadline:
 * no timer, so no signal handler, and no bound that a blocked signal
 * could break. */
#include "file_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file_dir.h"
#include "key.h"
#include "records.h"
#include "store_file.h"
#include "util.h"

/* flock(2) that goes on after a signal handler ran */
static int flock_retry(int fd, int how)
{
	int rc;

	while ((rc = flock(fd, how)) < 0 && errno == EINTR)
		;
	return rc;
}

/* read the lock file's holder token into holder (TOKEN_LEN+1); "" if none
 * (or not a token: it becomes part of file names) */
static void read_holder(int fd, char *holder)
{
	ssize_t n = pread(fd, holder, TOKEN_LEN, 0);

	holder[n == TOKEN_LEN && is_hex(holder, TOKEN_LEN) ? TOKEN_LEN : 0] = '\0';
}

/* is the lock file at name still the inode we hold? (invalidate unlinks it) */
int lock_still_ours(struct file_store *fs, const char *name)
{
	struct stat a, b;

	if (fs->lock_fd < 0 || fstat(fs->lock_fd, &a) < 0)
		return 0;
	if (fstatat(fs->dirfd, name, &b, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

void release_lock(struct file_store *fs)
{
	if (fs->lock_fd >= 0) {
		flock(fs->lock_fd, LOCK_UN);
		close(fs->lock_fd);
		fs->lock_fd = -1;
	}
}

/* We have just taken the lock: remove what a crashed predecessor left
 * half-written, then write our token for waiters and inspect, and our key
 * and tags for invalidate --match and --tag, which fence us out by them
 * before any entry of ours exists. */
static int claim_lock(struct file_store *fs, int fd, const struct lookup_req *req)
{
	char prev[TOKEN_LEN + 1], tmp[NAME_MAX_LEN];
	struct buf value = {0};
	int rc = 0;

	read_holder(fd, prev);
	if (prev[0]) {
		round_name(tmp, sizeof(tmp), req->key, req->key_len, prev, ".tmp");
		unlinkat(fs->dirfd, tmp, 0);
	}
	buf_appendf(&value, "%.*s%s\n", TOKEN_LEN, req->token, fs->lock_value_suffix);
	record_append(&value, req->key, req->key_len);
	for (int i = 0; i < req->ntags; i++)
		record_append(&value, req->tags[i], strlen(req->tags[i]));
	if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
	    write_all(fd, value.data, value.len) < 0) {
		err_set("cannot write the lock file in %s: %s", fs->dir, strerror(errno));
		rc = -1;
	}
	buf_free(&value);
	return rc;
}

/* Try to take the key's lock without blocking: 1 taken (fs->lock_fd), 0 held
 * by another process (its token in holder, the file kept open in fs->wait_fd
 * to wait on), -1 with err_set(). */
int take_lock(struct file_store *fs, const struct lookup_req *req, char *holder)
{
	char name[NAME_MAX_LEN];

	if (fs->lock_fd >= 0)
		return 1;
	file_name(name, sizeof(name), req->key, req->key_len, ".lock");
	int fd = openat(fs->dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		err_set("cannot open the lock file in %s: %s", fs->dir, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			err_set("cannot lock %s/%s: %s", fs->dir, name, strerror(errno));
			close(fd);
			return -1;
		}
		read_holder(fd, holder);
		if (fs->wait_fd >= 0)
			close(fs->wait_fd);
		fs->wait_fd = fd;
		if (!fs->wait_since_ms)
			fs->wait_since_ms = realtime_ms();
		return 0;
	}
	if (claim_lock(fs, fd, req) < 0) {
		flock(fd, LOCK_UN);
		close(fd);
		return -1;
	}
	fs->lock_fd = fd;
	return 1;
}

/* A waiter looks at the lock again after this long, doubling up to a cap,
 * when no inotify event wakes it first: the events make the wake-up
 * immediate, the looks make it certain (an event can be missed, inotify
 * can be out of instances). */
#define WAIT_STEP_FIRST_MS 2
#define WAIT_STEP_CAP_MS 250
#define WAIT_STEP_CAP_BLIND_MS 50 /* without inotify */

/* Ask inotify about the lock file wait_fd has open: a leader opens it for
 * writing and closes it as it unlocks, or as it dies (IN_CLOSE_WRITE), and
 * invalidate unlinks it (IN_ATTRIB, the link count). Best effort. */
static void watch_lock(struct file_store *fs)
{
	char path[64];

	if (fs->notify_fd < 0)
		fs->notify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fs->notify_fd < 0)
		return;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fs->wait_fd);
	if (inotify_add_watch(fs->notify_fd, path, IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF) <
	    0) {
		close(fs->notify_fd);
		fs->notify_fd = -1;
	}
}

/* Wait for the leader to release the lock file it holds exclusively: a
 * shared lock tried without blocking, again at each inotify event and at
 * growing intervals, until it is granted or timeout_ms passes. flock(2)
 * itself has no timeout, and a timer's signal is no bound: the caller may
 * have it blocked or ignored, and a store must not take a process-wide
 * signal for itself. */
int file_wait(struct store *s, int64_t timeout_ms)
{
	struct file_store *fs = to_file(s);
	char events[4096];

	if (fs->wait_fd < 0)
		return 1;
	if (timeout_ms <= 0)
		return 0;
	watch_lock(fs); /* before the first try, so no release falls between */
	int64_t deadline = monotonic_ms() + timeout_ms;
	int64_t step = WAIT_STEP_FIRST_MS;
	for (;;) {
		if (flock(fs->wait_fd, LOCK_SH | LOCK_NB) == 0) {
			flock(fs->wait_fd, LOCK_UN);
			return 1;
		}
		if (errno != EWOULDBLOCK && errno != EINTR) {
			err_set("cannot wait on the lock in %s: %s", fs->dir, strerror(errno));
			return -1;
		}
		int64_t left = deadline - monotonic_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = {.fd = fs->notify_fd, .events = POLLIN};
		int n = poll(&p, fs->notify_fd >= 0, step < left ? step : left);
		if (n > 0)
			while (read(fs->notify_fd, events, sizeof(events)) > 0)
				;
		int64_t cap = fs->notify_fd >= 0 ? WAIT_STEP_CAP_MS : WAIT_STEP_CAP_BLIND_MS;
		if (n == 0 && step < cap)
			step = step * 2 < cap ? step * 2 : cap;
	}
}

/* take the store-wide commit lock, held only across check-and-rename */
int commit_lock(struct file_store *fs)
{
	/* opened once per process: invalidate --match takes it per entry */
	if (fs->commit_fd < 0)
		fs->commit_fd = openat(fs->dirfd, "commit.lock",
				       O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fs->commit_fd < 0 || flock_retry(fs->commit_fd, LOCK_EX) < 0) {
		err_set("cannot take the commit lock in %s: %s", fs->dir, strerror(errno));
		return -1;
	}
	return fs->commit_fd;
}

void commit_unlock(int fd)
{
	flock(fd, LOCK_UN);
}

/* is name a key's lock file, "<64 hex digits>.lock"? (commit.lock is not) */
static bool is_key_lock(const char *name)
{
	return strlen(name) == KEY_HASH_HEX - 1 + 5 && is_hex(name, KEY_HASH_HEX - 1) &&
	       strcmp(name + KEY_HASH_HEX - 1, ".lock") == 0;
}

/* Does the claimed lock file content b name a key that matches glob, or
 * (glob NULL) file under tag? Its first line is the holder, then come the
 * key's record and the tags' (claim_lock). */
static bool lock_matches(const struct buf *b, const char *glob, const char *tag)
{
	struct buf rec = {0};
	bool match = false;

	if (b->len == 0) /* claimed, or its claim failed, this instant */
		return false;
	const char *nl = memchr(b->data, '\n', b->len);
	size_t pos = nl ? (size_t)(nl + 1 - b->data) : b->len;

	/* the key has no NUL (key_validate), so it reads as a C string for fnmatch */
	if (record_next(b->data, b->len, &pos, &rec) == 1) {
		if (glob)
			match = fnmatch(glob, rec.data, 0) == 0;
		else
			while (!match && record_next(b->data, b->len, &pos, &rec) == 1)
				match = rec.len == strlen(tag) &&
					memcmp(rec.data, tag, rec.len) == 0;
	}
	buf_free(&rec);
	return match;
}

/* If the lock file open at fd names a key that matches, unlink it: a
 * leader holding it then finds its lock replaced and stores nothing. The
 * file is read without taking its lock, even for a moment: a newcomer that
 * found it held would read its last leader's name and wait on a round long
 * over. A lock file nobody holds is made again by the next leader, as after
 * invalidate KEY. 0 or -1. */
static int fence_one(struct file_store *fs, const char *name, int fd, const char *glob,
		     const char *tag)
{
	struct buf b = {0};
	struct stat a, here;
	char chunk[65536];
	ssize_t n;
	int rc = 0;

	while ((n = read_full(fd, chunk, sizeof(chunk))) > 0)
		buf_append(&b, chunk, n);
	if (n < 0 || !lock_matches(&b, glob, tag))
		goto out;
	int cfd = commit_lock(fs);
	if (cfd < 0) {
		rc = -1;
		goto out;
	}
	/* still the same file: a lock file made since belongs to a leader that
	 * started after we did */
	if (fstat(fd, &a) == 0 && fstatat(fs->dirfd, name, &here, AT_SYMLINK_NOFOLLOW) == 0 &&
	    a.st_ino == here.st_ino && a.st_dev == here.st_dev)
		unlinkat(fs->dirfd, name, 0);
	commit_unlock(cfd);
out:
	buf_free(&b);
	return rc;
}

/* Fence out every leader running for a key that matches glob, or (glob
 * NULL) that files its result under tag, whether an entry exists yet or
 * not. A leader writes its key and tags into its lock file before it runs
 * COMMAND; one whose lock file we have passed by runs COMMAND after the
 * invalidation began. 0 or -1. */
struct fence_walk {
	const char *glob, *tag;
};

static int fence_name(struct file_store *fs, const char *name, void *ctx)
{
	const struct fence_walk *w = ctx;

	if (!is_key_lock(name))
		return 0;
	int fd = openat(fs->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int rc = fence_one(fs, name, fd, w->glob, w->tag);
	close(fd);
	return rc;
}

int fence_running(struct file_store *fs, const char *glob, const char *tag)
{
	struct fence_walk w = {glob, tag};

	return store_each(fs, fence_name, &w);
}

int file_fence(struct store *s, const char *glob)
{
	return fence_running(to_file(s), glob, NULL);
}
