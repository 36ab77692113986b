/* store_file: the store interface on a local directory, with no server. The
 * kernel does the locking: the leader holds an exclusive flock(2) on the
 * key's lock file while COMMAND runs; waiters block on a shared flock of the
 * same file, so they all wake the instant it is released, and a leader that
 * dies releases it by dying.
 *
 * Files, per namespace directory DIR/NS, for the key whose SHA-256 is H:
 *   H.entry        header (entry.c) + stdout + stderr + the user key
 *   H.lock         flock target; holds "TOKEN host=.. pid=..\n" of the leader,
 *                  then its user key and tags as records (records.h)
 *   H.done         a failed round's result for its waiters, trailer = TOKEN
 *   H.TOKEN.tmp    a result being written, renamed into place when complete
 *   H.TOKEN.bypass a too-large round's mark for its waiters; mtime = expiry
 *   H.backoff      a failed stale-if-error refresh's back-off; mtime = its end,
 *                  content = the created-at (ms) of the entry it holds back
 *   commit.lock    serialises the final check-and-rename against invalidate
 *   stats          the counters (file_stats.c)
 *   tag-SHA256(T)  the keys filed under tag T, one record each
 *   tagname-SHA256(T)  T itself, for list --tags (a digest names no tag)
 * Only hex digests and fixed words make up these names, so no key, tag or
 * namespace can name another's file, whatever bytes it holds.
 *
 * Entries appear by rename(2), so a reader sees the old entry or the new one,
 * never a torn one. Invalidate unlinks the lock file: a leader that finds
 * its lock file replaced has been fenced out and stores nothing. */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file_stats.h"
#include "key.h"
#include "policy.h"
#include "records.h"
#include "util.h"

/* the header is a few hundred bytes; more than this does not decode */
#define HEADER_MAX 4096

/* an entry created more than this far ahead of the host's clock was
 * written while the clock was ahead: it is suspect, not fresh for as long
 * as the clock takes to catch up */
#define FUTURE_SLACK_MS 2000

/* a file name of one of a key's parts: H, '.', TOKEN, a suffix */
#define NAME_MAX_LEN (KEY_HASH_HEX + TOKEN_LEN + 16)

struct file_store {
	struct store base;
	struct file_stats stats;    /* the counters file */
	int dirfd;                  /* the namespace directory */
	char *dir;                  /* its path, for messages */
	int lock_fd;                /* the lock we lead under, or -1 */
	int wait_fd;                /* the lock file a waiter waits on, or -1 */
	int64_t wait_since_ms;      /* when we first found the lock held, or 0: a
				     * round that ended before is not the one we wait on */
	int notify_fd;              /* inotify, to wake a waiter, or -1 */
	int commit_fd;              /* commit.lock, opened on first use, or -1 */
	char lock_value_suffix[300]; /* " host=H pid=P" after the token */
};

static struct file_store *to_file(struct store *s)
{
	return (struct file_store *)s;
}

static int64_t realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* the file name of one of key's parts: H + suffix */
static void file_name(char *out, size_t outlen, const char *key, size_t len, const char *suffix)
{
	char h[KEY_HASH_HEX];

	key_hash_hex(h, key, len);
	snprintf(out, outlen, "%s%s", h, suffix);
}

/* the file name of one of key's parts that belongs to a round: H.TOKEN + suffix */
static void round_name(char *out, size_t outlen, const char *key, size_t len, const char *token,
		       const char *suffix)
{
	char h[KEY_HASH_HEX];

	key_hash_hex(h, key, len);
	snprintf(out, outlen, "%s.%.*s%s", h, TOKEN_LEN, token, suffix);
}

/* true if the n bytes at p are lowercase hex digits */
static bool is_hex(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

/* is the entry created more than the slack ahead of now? */
static bool from_future(const struct entry_meta *m, int64_t now)
{
	return m->created_ms > now + FUTURE_SLACK_MS;
}

/* flock(2) that goes on after a signal handler ran */
static int flock_retry(int fd, int how)
{
	int rc;

	while ((rc = flock(fd, how)) < 0 && errno == EINTR)
		;
	return rc;
}

/* --- opening the directory safely ------------------------------------------ */

/* refuse a directory that someone else could write into or swap */
static int check_private(int fd, const char *path)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		err_set("cannot stat the store directory %s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_uid != geteuid()) {
		err_set("the store directory %s belongs to uid %ld, not to you (uid %ld): refusing it "
			"(use a directory of your own with -u file:///DIR)",
			path, (long)st.st_uid, (long)geteuid());
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		err_set("the store directory %s is writable by group or others: refusing it "
			"(chmod 700 %s)", path, path);
		return -1;
	}
	return 0;
}

/* mkdir -p with mode 0700 for what is missing */
static int make_dirs(const char *path)
{
	char *p = xstrdup(path);
	int rc = 0;

	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			err_set("cannot create the store directory %s: %s", p, strerror(errno));
			rc = -1;
			break;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return rc;
}

/* Explain why a store directory would not open. A symbolic link or a file
 * in its place is refused (retrying cannot help, and following a link is how
 * a shared /tmp is turned against its users); anything else is a failure to
 * run uncached past. */
static void refuse_or_fail(const char *path, bool *refused)
{
	int e = errno;
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		err_set("the store directory %s is a symbolic link: refusing it (name the real "
			"directory)", path);
		*refused = true;
	} else if (e == ENOTDIR || e == ELOOP) {
		err_set("the store directory %s is not a directory: refusing it", path);
		*refused = true;
	} else {
		err_set("cannot open the store directory %s: %s", path, strerror(e));
	}
}

/* open DIR (created if missing) and its namespace subdirectory, both private */
static int open_store_dir(const char *path, const char *ns, char **ns_path, bool *refused)
{
	if (make_dirs(path) < 0)
		return -1;
	int top = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (top < 0) {
		refuse_or_fail(path, refused);
		return -1;
	}
	if (check_private(top, path) < 0) {
		*refused = true;
		close(top);
		return -1;
	}
	*ns_path = xasprintf("%s/%s", path, ns);
	if (mkdirat(top, ns, 0700) < 0 && errno != EEXIST) {
		err_set("cannot create the store directory %s: %s", *ns_path, strerror(errno));
		close(top);
		return -1;
	}
	int fd = openat(top, ns, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close(top);
	if (fd < 0) {
		refuse_or_fail(*ns_path, refused);
		return -1;
	}
	if (check_private(fd, *ns_path) < 0) {
		*refused = true;
		close(fd);
		return -1;
	}
	return fd;
}

/* --- counters ------------------------------------------------------------------ */

static void file_count(struct store *s, enum counter which)
{
	struct file_store *fs = to_file(s);

	file_stats_add(&fs->stats, fs->dirfd, fs->dir, which);
}

static int file_stats(struct store *s, uint64_t c[STAT_COUNT], bool reset)
{
	struct file_store *fs = to_file(s);

	return file_stats_read(&fs->stats, fs->dirfd, fs->dir, c, STAT_COUNT, reset);
}

/* --- reading entries ---------------------------------------------------------- */

/* an entry (or round result) file opened and checked */
struct stored {
	int fd;              /* positioned at the stored stdout */
	struct entry_meta meta;
	char *trailer;       /* the user key (entries) or token (round results); malloc'ed */
	size_t trailer_len;
};

static void stored_close(struct stored *st)
{
	if (st->fd >= 0)
		close(st->fd);
	free(st->trailer);
	st->fd = -1;
	st->trailer = NULL;
}

/* Open and decode a stored file. 1 found and sound, 0 absent or not
 * decodable (a miss: a corrupt, truncated or foreign file is never an
 * error), -1 on a real I/O failure. */
static int stored_open(struct file_store *fs, const char *name, struct stored *st)
{
	char head[HEADER_MAX];
	struct stat sb;
	size_t hdr_len;

	st->fd = -1;
	st->trailer = NULL;
	int fd = openat(fs->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		err_set("cannot open %s/%s: %s", fs->dir, name, strerror(errno));
		return -1;
	}
	ssize_t n = read_full(fd, head, sizeof(head));
	if (n < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) ||
	    entry_header_parse(head, n, &st->meta, &hdr_len) < 0)
		goto miss;
	uint64_t body = st->meta.out_len + st->meta.err_len;
	/* each size is below 2^63, so the sum cannot wrap; the file's size
	 * is compared by subtraction so that hdr_len + body cannot either */
	if ((uint64_t)sb.st_size < hdr_len || body > (uint64_t)sb.st_size - hdr_len)
		goto miss;
	st->trailer_len = sb.st_size - hdr_len - body;
	if (st->trailer_len > KEY_MAX)
		goto miss;
	st->trailer = xmalloc(st->trailer_len + 1);
	st->trailer[st->trailer_len] = '\0';
	if (pread(fd, st->trailer, st->trailer_len, hdr_len + body) != (ssize_t)st->trailer_len ||
	    lseek(fd, hdr_len, SEEK_SET) < 0)
		goto miss;
	st->fd = fd;
	return 1;
miss:
	log_verbose("ignoring %s/%s: it does not decode (%s)", fs->dir, name, err_msg());
	free(st->trailer);
	st->trailer = NULL;
	close(fd);
	return 0;
}

/* open the key's entry if it is sound and really holds this key */
static int entry_open(struct file_store *fs, const char *key, size_t len, struct stored *st)
{
	char name[KEY_HASH_HEX + 16];

	file_name(name, sizeof(name), key, len, ".entry");
	int rc = stored_open(fs, name, st);
	if (rc == 1 && (st->trailer_len != len || memcmp(st->trailer, key, len) != 0)) {
		stored_close(st);
		return 0;
	}
	return rc;
}

/* stream the stored stdout and stderr to the sink */
static int stored_deliver(struct stored *st, struct sink *sink)
{
	if (sink_copy(sink, sink->out_fd, st->fd, st->meta.out_len) < 0 ||
	    sink_copy(sink, sink->err_fd, st->fd, st->meta.err_len) < 0) {
		err_set("cannot read the stored entry: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* --- the lock ------------------------------------------------------------------ */

/* read the lock file's holder token into holder (TOKEN_LEN+1); "" if none
 * (or not a token: it becomes part of file names) */
static void read_holder(int fd, char *holder)
{
	ssize_t n = pread(fd, holder, TOKEN_LEN, 0);

	holder[n == TOKEN_LEN && is_hex(holder, TOKEN_LEN) ? TOKEN_LEN : 0] = '\0';
}

/* is the lock file at name still the inode we hold? (invalidate unlinks it) */
static int lock_still_ours(struct file_store *fs, const char *name)
{
	struct stat a, b;

	if (fs->lock_fd < 0 || fstat(fs->lock_fd, &a) < 0)
		return 0;
	if (fstatat(fs->dirfd, name, &b, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void release_lock(struct file_store *fs)
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
static int take_lock(struct file_store *fs, const struct lookup_req *req, char *holder)
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

/* --- the back-off of a failed stale-if-error refresh ------------------------------- */

/* Hold off the next refresh of the key's entry until backoff_ms from now,
 * while our lock is held (file_abandon with ABANDON_REFRESH_FAILED): a file
 * whose mtime is the back-off's end and which names the entry by its
 * created-at, so that a new entry is not held back. Best effort. */
static void leave_backoff(struct file_store *fs, const char *key, size_t len, int64_t backoff_ms)
{
	char name[KEY_HASH_HEX + 16], created[24];
	struct stored st;

	if (entry_open(fs, key, len, &st) != 1)
		return;
	int64_t until = realtime_ms() + backoff_ms;
	struct timespec times[2] = {
		{.tv_nsec = UTIME_NOW},
		{.tv_sec = until / 1000, .tv_nsec = until % 1000 * 1000000},
	};
	int n = snprintf(created, sizeof(created), "%lld", (long long)st.meta.created_ms);
	stored_close(&st);
	file_name(name, sizeof(name), key, len, ".backoff");
	int fd = openat(fs->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
			0600);
	if (fd < 0 || write_all(fd, created, n) < 0 || futimens(fd, times) < 0) {
		log_verbose("cannot hold off the next refresh (%s/%s): %s", fs->dir, name,
			    strerror(errno));
		if (fd >= 0)
			unlinkat(fs->dirfd, name, 0);
	}
	if (fd >= 0)
		close(fd);
}

/* until when a back-off left by a failed refresh of the entry m holds off
 * the next (ms on the host's clock), or 0 for none */
static int64_t backoff_until(struct file_store *fs, const struct lookup_req *req,
			     const struct entry_meta *m)
{
	char name[KEY_HASH_HEX + 16], created[24];
	struct stat sb;
	int64_t until = 0;

	file_name(name, sizeof(name), req->key, req->key_len, ".backoff");
	int fd = openat(fs->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read_full(fd, created, sizeof(created) - 1);
	if (n > 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
		char *end;
		created[n] = '\0';
		long long ct = strtoll(created, &end, 10);
		if (*end == '\0' && ct == m->created_ms)
			until = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
	}
	close(fd);
	return until;
}

/* The key's entry, for the policy to judge, unless --refresh: 1 open in st
 * (in->entry points into it), 0 none, -1 error. An entry created ahead of
 * this host's clock is none: it is suspect, not fresh. The back-off of a
 * failed refresh matters only in the stale-if-error window, so a hit does
 * not look for it. */
static int gather_entry(struct file_store *fs, const struct lookup_req *req, struct stored *st,
			struct policy_in *in)
{
	in->entry = NULL;
	in->backoff_ms = 0;
	if (req->force)
		return 0;
	int rc = entry_open(fs, req->key, req->key_len, st);
	if (rc <= 0)
		return rc;
	if (from_future(&st->meta, in->now_ms)) {
		/* said once: the look again under the lock finds the same */
		if (fs->lock_fd < 0)
			log_verbose("ignoring the entry: it was created %llds ahead of this host's "
				    "clock (the clock was set back since)",
				    (long long)((st->meta.created_ms - in->now_ms) / 1000));
		stored_close(st);
		return 0;
	}
	in->entry = &st->meta;
	if (entry_freshness(&st->meta, in->now_ms) == ENTRY_STALE_IF_ERROR)
		in->backoff_ms = backoff_until(fs, req, &st->meta);
	return 1;
}

/* --- a round too large to store ------------------------------------------------ */

/* Leave the waiters of our round (those that read our token from the lock
 * file) a mark that sends them to run COMMAND themselves at once: nothing
 * will be stored, and taking the lock one after another would run it once
 * per waiter in turn. An empty file whose mtime is its expiry; best effort. */
static void leave_bypass_mark(struct file_store *fs, const char *key, size_t len,
			      const char *token)
{
	char name[NAME_MAX_LEN];
	int64_t until = realtime_ms() + BYPASS_MARK_MS;
	struct timespec times[2] = {
		{.tv_nsec = UTIME_NOW},
		{.tv_sec = until / 1000, .tv_nsec = until % 1000 * 1000000},
	};

	round_name(name, sizeof(name), key, len, token, ".bypass");
	int fd = openat(fs->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
			0600);
	if (fd < 0 || futimens(fd, times) < 0) {
		log_verbose("cannot leave the waiters a mark to run COMMAND themselves: %s",
			    strerror(errno));
		if (fd >= 0)
			unlinkat(fs->dirfd, name, 0);
	}
	if (fd >= 0)
		close(fd);
}

/* did the leader we wait on leave us a mark that has not expired? */
static bool bypass_marked(struct file_store *fs, const struct lookup_req *req)
{
	char name[NAME_MAX_LEN];
	struct stat st;

	if (strlen(req->awaited) != TOKEN_LEN || !is_hex(req->awaited, TOKEN_LEN))
		return false;
	round_name(name, sizeof(name), req->key, req->key_len, req->awaited, ".bypass");
	if (fstatat(fs->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return false;
	int64_t until = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
	/* left for our round, not one that ended before we waited (see file_lookup) */
	return until >= realtime_ms() && until - BYPASS_MARK_MS >= fs->wait_since_ms;
}

/* --- lookup and waiting ------------------------------------------------------------- */

/* What the leader we wait on left us, for the policy: its result (open in
 * st) or its mark that the output was too large; 0, or -1 with err_set().
 * The lock file names its last leader even once released, and a lock held
 * for an instant by another reader (inspect) makes a newcomer read that
 * name: only a round that ended after we began to wait is ours. */
static int gather_round(struct file_store *fs, const struct lookup_req *req, struct stored *st,
			struct policy_in *in)
{
	char name[KEY_HASH_HEX + 16];

	in->round = POLICY_ROUND_NONE;
	if (!req->awaited)
		return 0;
	file_name(name, sizeof(name), req->key, req->key_len, ".done");
	int rc = stored_open(fs, name, st);
	if (rc < 0)
		return -1;
	if (rc == 1 && st->trailer_len == TOKEN_LEN &&
	    memcmp(st->trailer, req->awaited, TOKEN_LEN) == 0 &&
	    st->meta.created_ms >= fs->wait_since_ms) {
		in->round = POLICY_ROUND_DONE;
		return 0;
	}
	if (rc == 1)
		stored_close(st);
	if (bypass_marked(fs, req))
		in->round = POLICY_ROUND_TOO_LARGE;
	return 0;
}

/* Gather the state, let the policy decide, and carry out its verdict. The
 * lock is asked for only when the verdict takes it (a hit must not write
 * the lock file); found held, the policy decides again knowing it. */
static int file_lookup(struct store *s, const struct lookup_req *req, struct lookup *res,
		       struct sink *sink)
{
	struct file_store *fs = to_file(s);
	struct stored entry = {.fd = -1}, done = {.fd = -1};
	struct policy_in in = {
		.now_ms = realtime_ms(),
		.lock = fs->lock_fd >= 0 ? POLICY_LOCK_OURS : POLICY_LOCK_FREE,
		.waiting = req->awaited != NULL,
		.force = req->force,
		.holder_gone = true, /* a kernel lock is free only when its holder let go or died */
		.beta = req->beta,
		.rand = req->rand,
	};
	struct policy_out out;
	bool looked_again = false, lock_failed = false;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (gather_entry(fs, req, &entry, &in) < 0 || gather_round(fs, req, &done, &in) < 0)
		goto out;
	for (;;) {
		out = policy_decide(&in);
		if (!out.take_lock || in.lock != POLICY_LOCK_FREE)
			break;
		int got = take_lock(fs, req, res->holder);
		if (got > 0) {
			/* whoever wins the lock checks the entry again (SPEC 4.1),
			 * for a result stored since the first look; the lock was
			 * free when this lookup began, and is ours at once now */
			if (out.verdict != VERDICT_LEAD || out.fallback || looked_again)
				break;
			looked_again = true;
			stored_close(&entry);
			if (gather_entry(fs, req, &entry, &in) < 0)
				goto out;
			continue;
		}
		/* a lock that cannot be taken (a read-only or full store) is as
		 * good as held, for an entry that is served anyway */
		lock_failed = got < 0;
		in.lock = POLICY_LOCK_OTHERS;
	}
	if (lock_failed && out.verdict == VERDICT_WAIT)
		goto out;
	if (lock_failed)
		log_verbose("no refresh: %s", err_msg());

	res->verdict = out.verdict;
	res->age_ms = out.age_ms;
	res->refresh = out.refresh;
	res->fallback = out.fallback;
	res->lease_left_ms = -1; /* a kernel lock has no lease */
	for (int i = 0; i < STAT_COUNT; i++)
		if (out.counters & 1u << i)
			file_count(s, i);
	struct stored *answer = out.verdict == VERDICT_DONE                                ? &done
				: out.verdict == VERDICT_HIT || out.verdict == VERDICT_STALE ? &entry
											     : NULL;
	if (in.entry)
		res->meta = entry.meta;
	rc = 0;
	if (answer) {
		res->meta = answer->meta;
		/* an entry that answers the call: give back a lock we do not need */
		if (!res->refresh)
			release_lock(fs);
		rc = stored_deliver(answer, sink);
	}
out:
	stored_close(&entry);
	stored_close(&done);
	return rc;
}

static int file_watch(struct store *s, const char *key, size_t key_len)
{
	(void)s;
	(void)key;
	(void)key_len;
	return 0; /* the lock file itself is the wake-up: see file_wait */
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
	if (inotify_add_watch(fs->notify_fd, path, IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF) < 0) {
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
static int file_wait(struct store *s, int64_t timeout_ms)
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

static int file_renew(struct store *s, const char *key, size_t key_len, const char *token,
		      int64_t lease_ms)
{
	char name[KEY_HASH_HEX + 16];

	(void)token;
	(void)lease_ms;
	file_name(name, sizeof(name), key, key_len, ".lock");
	return lock_still_ours(to_file(s), name);
}

/* take the store-wide commit lock, held only across check-and-rename */
static int commit_lock(struct file_store *fs)
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

static void commit_unlock(int fd)
{
	flock(fd, LOCK_UN);
}

/* --- tags ----------------------------------------------------------------------- */

/* the file listing a tag's keys: tag-SHA256(tag) */
static void tag_file(char *out, size_t outlen, const char *tag)
{
	char h[KEY_HASH_HEX];

	key_hash_hex(h, tag, strlen(tag));
	snprintf(out, outlen, "tag-%s", h);
}

/* the file holding a tag's name: tagname-SHA256(tag) */
static void tag_name_file(char *out, size_t outlen, const char *tag)
{
	char h[KEY_HASH_HEX];

	key_hash_hex(h, tag, strlen(tag));
	snprintf(out, outlen, "tagname-%s", h);
}

/* Keep the tag's name for list --tags, once: written aside and renamed into
 * place, so a reader finds the whole name or none. Best effort: a tag
 * without its name still fences and invalidates, it is only not listed. */
static void tag_keep_name(struct file_store *fs, const char *tag)
{
	char name[KEY_HASH_HEX + 16], tmp[KEY_HASH_HEX + 48];

	tag_name_file(name, sizeof(name), tag);
	if (faccessat(fs->dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return;
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", name, (long)getpid());
	int fd = openat(fs->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	int rc = write_all(fd, tag, strlen(tag));
	if (close(fd) < 0 || rc < 0 || renameat(fs->dirfd, tmp, fs->dirfd, name) < 0)
		unlinkat(fs->dirfd, tmp, 0);
}

/* does tagname-H's tag file, tag-H, exist? (true if that cannot be told) */
static bool tag_file_of_name_exists(struct file_store *fs, const char *tag_name_file)
{
	char name[KEY_HASH_HEX + 8];

	snprintf(name, sizeof(name), "tag-%s", tag_name_file + 8);
	return faccessat(fs->dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
}

/* File key under tag: one record appended in one write(2), under the commit
 * lock, so records of concurrent leaders never interleave. A record that a
 * full disk cuts short is cut off again (ftruncate never needs space), and
 * one that a crash left without its newline gets one before ours, so that
 * a reader loses at most that record. 0, or -1 with err_set(). */
static int tag_add(struct file_store *fs, const char *tag, const char *key, size_t len)
{
	char name[KEY_HASH_HEX + 8], last = '\n';
	struct buf rec = {0};
	struct stat st;
	int rc = -1, e;

	tag_keep_name(fs, tag);
	tag_file(name, sizeof(name), tag);
	int fd = openat(fs->dirfd, name, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &st) < 0)
		goto out;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		goto out;
	}
	if (st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) != 1)
		goto out;
	if (last != '\n')
		buf_append(&rec, "\n", 1);
	record_append(&rec, key, len);
	if (write_all(fd, rec.data, rec.len) < 0) {
		e = errno;
		if (ftruncate(fd, st.st_size) < 0)
			log_warn("cannot cut a torn record off the tag file %s/%s: %s", fs->dir, name,
				 strerror(errno));
		errno = e;
		goto out;
	}
	rc = 0;
out:
	e = errno;
	if (fd >= 0 && close(fd) < 0 && rc == 0) {
		rc = -1;
		e = errno;
	}
	if (rc < 0)
		err_set("cannot file the result under tag %s in %s: %s", tag, fs->dir, strerror(e));
	buf_free(&rec);
	return rc;
}

/* read a whole small file into b; 0, 1 when absent, -1 with err_set() */
static int read_small_file(struct file_store *fs, const char *name, struct buf *b)
{
	char chunk[65536];
	ssize_t n;
	int fd = openat(fs->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		err_set("cannot open %s/%s: %s", fs->dir, name, strerror(errno));
		return -1;
	}
	while ((n = read_full(fd, chunk, sizeof(chunk))) > 0)
		buf_append(b, chunk, n);
	close(fd);
	if (n < 0) {
		err_set("cannot read %s/%s: %s", fs->dir, name, strerror(errno));
		return -1;
	}
	return 0;
}


/* a walk of the store directory from its start, on a descriptor of its own
 * (closedir() closes it); NULL with err_set() */
static DIR *store_listing(struct file_store *fs)
{
	int dfd = dup(fs->dirfd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;

	if (!d) {
		err_set("cannot read the store directory %s: %s", fs->dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return NULL;
	}
	rewinddir(d);
	return d;
}
/* After invalidating the records that were in a tag file (its first done
 * bytes, as in was), drop them from it, keeping what leaders appended
 * since: under the commit lock, as appends are. Best effort: records left
 * behind only name keys once more. */
static void tag_drop_done(struct file_store *fs, const char *name, const struct buf *was)
{
	struct buf now = {0};
	char tmp[KEY_HASH_HEX + 32];

	int cfd = commit_lock(fs);
	if (cfd < 0)
		return;
	if (read_small_file(fs, name, &now) != 0 || now.len < was->len ||
	    (was->len && memcmp(now.data, was->data, was->len) != 0))
		goto out; /* gone, or rewritten by a sweep: nothing to drop */
	if (now.len == was->len) {
		unlinkat(fs->dirfd, name, 0);
		goto out;
	}
	snprintf(tmp, sizeof(tmp), "%s.inval.tmp", name);
	int fd = openat(fs->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	int rc = write_all(fd, now.data + was->len, now.len - was->len);
	if (close(fd) < 0 || rc < 0 || renameat(fs->dirfd, tmp, fs->dirfd, name) < 0)
		unlinkat(fs->dirfd, tmp, 0);
out:
	commit_unlock(cfd);
	buf_free(&now);
}

static int file_invalidate(struct store *s, const char *key, size_t key_len);
static int fence_running(struct file_store *fs, const char *glob, const char *tag);

/* Fence out the leaders running for tag first: one that stores after that
 * has filed its record by then, under the commit lock, where we read. A
 * record we cannot read (cut short by a crash, or by a full disk under an
 * older version) may name an entry that stays: that is an error to report,
 * after every record that reads has been acted on. */
static long file_invalidate_tag(struct store *s, const char *tag)
{
	struct file_store *fs = to_file(s);
	char name[KEY_HASH_HEX + 8];
	struct buf b = {0}, key = {0};
	long deleted = 0, damaged = 0;
	size_t pos = 0;
	int rc;

	if (fence_running(fs, NULL, tag) < 0)
		return -1;
	tag_file(name, sizeof(name), tag);
	int cfd = commit_lock(fs);
	if (cfd < 0)
		return -1;
	rc = read_small_file(fs, name, &b);
	commit_unlock(cfd);
	if (rc != 0) {
		buf_free(&b);
		return rc < 0 ? -1 : 0;
	}
	while (deleted >= 0 && (rc = record_next(b.data, b.len, &pos, &key)) != 0) {
		if (rc < 0) {
			damaged++;
			continue;
		}
		int one = file_invalidate(s, key.data, key.len);
		deleted = one < 0 ? -1 : deleted + one;
	}
	if (deleted >= 0)
		tag_drop_done(fs, name, &b);
	if (deleted >= 0 && damaged > 0) {
		err_set("tag %s: %ld entr%s invalidated, but %ld record%s of the tag file %s/%s could "
			"not be read (cut short by a crash or a full disk): the entries %s named may "
			"remain (invalidate them by key or with --match)",
			tag, deleted, deleted == 1 ? "y" : "ies", damaged, damaged == 1 ? "" : "s",
			fs->dir, name, damaged == 1 ? "it" : "they");
		deleted = -1;
	}
	buf_free(&b);
	buf_free(&key);
	return deleted;
}

/* --- fencing leaders without an entry ------------------------------------------------ */

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
				match = rec.len == strlen(tag) && memcmp(rec.data, tag, rec.len) == 0;
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
static int fence_running(struct file_store *fs, const char *glob, const char *tag)
{
	DIR *d = store_listing(fs);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return -1;
	while (rc == 0 && (de = readdir(d))) {
		if (!is_key_lock(de->d_name))
			continue;
		int fd = openat(fs->dirfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		rc = fence_one(fs, de->d_name, fd, glob, tag);
		close(fd);
	}
	closedir(d);
	return rc;
}

static int file_fence(struct store *s, const char *glob)
{
	return fence_running(to_file(s), glob, NULL);
}

/* --- inspect, list, ping ----------------------------------------------------------- */

static void info_from(struct entry_info *info, const struct stored *st)
{
	int64_t now = realtime_ms();

	info->present = true;
	info->meta = st->meta;
	info->age_ms = now > st->meta.created_ms ? now - st->meta.created_ms : 0;
	info->freshness = entry_freshness(&st->meta, now);
	if (from_future(&st->meta, now)) {
		/* shown for what it is, served as a miss (gather_entry) */
		info->future = true;
		info->age_ms = now - st->meta.created_ms;
		info->freshness = ENTRY_EXPIRED;
	}
}

static int file_inspect(struct store *s, const char *key, size_t key_len, struct entry_info *info)
{
	struct file_store *fs = to_file(s);
	struct stored st;
	char name[KEY_HASH_HEX + 16];

	memset(info, 0, sizeof(*info));
	int rc = entry_open(fs, key, key_len, &st);
	if (rc < 0)
		return -1;
	if (rc == 1) {
		info_from(info, &st);
		stored_close(&st);
		if (info->freshness == ENTRY_EXPIRED && !info->future)
			info->present = false;
	}
	file_name(name, sizeof(name), key, key_len, ".lock");
	int fd = openat(fs->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	/* a shared lock is refused while a leader holds the exclusive one */
	if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
		info->locked = true;
		ssize_t n = pread(fd, info->holder, sizeof(info->holder) - 1, 0);
		info->holder[n > 0 ? n : 0] = '\0';
		info->holder[strcspn(info->holder, "\n")] = '\0';
		info->lease_left_ms = -1;
	}
	close(fd);
	return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* --- sweeping ------------------------------------------------------------------------ */

/* one store in SWEEP_ODDS sweeps the directory: often enough that expired
 * entries do not pile up, rarely enough that a busy host does not notice */
#define SWEEP_ODDS 32
/* a round result older than this has no waiter left to collect it */
#define DONE_MAX_AGE_S 60
/* a temporary file this old was left by a leader that died mid-write */
#define TMP_MAX_AGE_S 3600
/* a tag file being rewritten this long ago was left by a process that died */
#define TAG_TMP_MAX_AGE_S 60

static bool sweep_due(void)
{
	unsigned char r;

	return getrandom(&r, 1, GRND_NONBLOCK) == 1 && r % SWEEP_ODDS == 0;
}

static bool older_than(struct file_store *fs, const char *name, time_t seconds)
{
	struct stat st;

	return fstatat(fs->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       st.st_mtime + seconds < time(NULL);
}

/* rewrite a tag file keeping the records whose entries still live; an
 * empty tag file is removed, so a tag whose entries expired costs nothing */
static void compact_tag(struct file_store *fs, const char *name)
{
	struct buf b = {0}, keep = {0};
	char tmp[KEY_HASH_HEX + 32];

	if (read_small_file(fs, name, &b) != 0)
		goto out;
	struct buf key = {0};
	size_t pos = 0, start = 0;
	int rc;
	/* a record that does not read is dropped: it names nothing we could find */
	while ((rc = record_next(b.data, b.len, &pos, &key)) != 0) {
		struct stored st;
		if (rc == 1 && entry_open(fs, key.data, key.len, &st) == 1) {
			if (entry_freshness(&st.meta, realtime_ms()) != ENTRY_EXPIRED)
				buf_append(&keep, b.data + start, pos - start);
			stored_close(&st);
		}
		start = pos;
	}
	buf_free(&key);
	if (keep.len == 0) {
		unlinkat(fs->dirfd, name, 0);
		goto out;
	}
	if (keep.len == b.len)
		goto out;
	snprintf(tmp, sizeof(tmp), "%s.sweep.tmp", name);
	int fd = openat(fs->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	rc = write_all(fd, keep.data, keep.len);
	if (close(fd) < 0 || rc < 0 || renameat(fs->dirfd, tmp, fs->dirfd, name) < 0)
		unlinkat(fs->dirfd, tmp, 0);
out:
	buf_free(&b);
	buf_free(&keep);
}

/* drop an entry file once every window has passed */
static void sweep_entry(struct file_store *fs, const char *name)
{
	struct stored st;

	/* its mtime is its expiry: a living entry costs one fstatat */
	if (!older_than(fs, name, 0) || stored_open(fs, name, &st) != 1)
		return;
	bool expired = entry_freshness(&st.meta, realtime_ms()) == ENTRY_EXPIRED;
	stored_close(&st);
	if (expired)
		unlinkat(fs->dirfd, name, 0);
}

/* Remove what has outlived its use: expired entries, old round results,
 * temporaries of leaders that died, and tag records of gone entries. Lock
 * files stay: unlinking one that another process is about to lock would
 * let two leaders run. Runs under the commit lock, against which entries
 * are renamed into place and tags appended. Best effort: errors are ignored. */
static void sweep(struct file_store *fs)
{
	DIR *d = store_listing(fs);
	struct dirent *de;

	if (!d)
		return;
	int cfd = commit_lock(fs);
	if (cfd < 0) {
		closedir(d);
		return;
	}
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		if (ends_with(n, ".entry"))
			sweep_entry(fs, n);
		else if (ends_with(n, ".done") && older_than(fs, n, DONE_MAX_AGE_S))
			unlinkat(fs->dirfd, n, 0);
		else if ((ends_with(n, ".bypass") || ends_with(n, ".backoff")) && older_than(fs, n, 0))
			unlinkat(fs->dirfd, n, 0);
		else if (strncmp(n, "tag-", 4) == 0 && ends_with(n, ".tmp")) {
			if (older_than(fs, n, TAG_TMP_MAX_AGE_S))
				unlinkat(fs->dirfd, n, 0);
		} else if (ends_with(n, ".tmp") && older_than(fs, n, TMP_MAX_AGE_S))
			unlinkat(fs->dirfd, n, 0);
		else if (strncmp(n, "tag-", 4) == 0)
			compact_tag(fs, n);
		else if (strncmp(n, "tagname-", 8) == 0 && older_than(fs, n, TAG_TMP_MAX_AGE_S) &&
			 !tag_file_of_name_exists(fs, n))
			unlinkat(fs->dirfd, n, 0);
	}
	commit_unlock(cfd);
	closedir(d);
}

static int file_list(struct store *s, const char *glob, list_fn fn, void *ctx)
{
	struct file_store *fs = to_file(s);

	sweep(fs);
	DIR *d = store_listing(fs);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return -1;
	while (rc == 0 && (de = readdir(d))) {
		struct stored st;
		struct entry_info info = {0};
		if (!ends_with(de->d_name, ".entry") || stored_open(fs, de->d_name, &st) != 1)
			continue;
		info_from(&info, &st);
		/* keys hold no NUL, so the trailer reads as a C string for fnmatch */
		if (info.freshness != ENTRY_EXPIRED && (!glob || fnmatch(glob, st.trailer, 0) == 0))
			rc = fn(ctx, st.trailer, st.trailer_len, &info);
		stored_close(&st);
	}
	closedir(d);
	return 0;
}

/* the name in tagname-H, if it is a whole tag name that hashes to H and
 * its tag file tag-H exists; 1 with the name in b, else 0 */
static int read_tag_name(struct file_store *fs, const char *name, struct buf *b)
{
	char h[KEY_HASH_HEX];

	b->len = 0;
	if (strlen(name) != 8 + KEY_HASH_HEX - 1 || !is_hex(name + 8, KEY_HASH_HEX - 1) ||
	    !tag_file_of_name_exists(fs, name) ||
	    read_small_file(fs, name, b) != 0 || b->len == 0 || b->len > KEY_MAX ||
	    memchr(b->data, '\0', b->len))
		return 0;
	key_hash_hex(h, b->data, b->len);
	return memcmp(h, name + 8, KEY_HASH_HEX - 1) == 0;
}

static int file_list_tags(struct store *s, const char *glob, tag_fn fn, void *ctx)
{
	struct file_store *fs = to_file(s);

	sweep(fs); /* so that a tag whose entries are all gone is gone too */
	DIR *d = store_listing(fs);
	struct dirent *de;
	struct buf tag = {0};
	int rc = 0;

	if (!d)
		return -1;
	while (rc == 0 && (de = readdir(d))) {
		if (strncmp(de->d_name, "tagname-", 8) == 0 && read_tag_name(fs, de->d_name, &tag) &&
		    (!glob || fnmatch(glob, tag.data, 0) == 0))
			rc = fn(ctx, tag.data, tag.len);
	}
	closedir(d);
	buf_free(&tag);
	return 0;
}

static int file_ping(struct store *s, struct buf *out)
{
	struct file_store *fs = to_file(s);
	char probe[64];
	struct timespec a, b;

	snprintf(probe, sizeof(probe), ".ping.%ld", (long)getpid());
	clock_gettime(CLOCK_MONOTONIC, &a);
	int fd = openat(fs->dirfd, probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, "ping\n", 5) < 0) {
		err_set("the store directory %s is not writable: %s", fs->dir, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlinkat(fs->dirfd, probe, 0);
		}
		return -1;
	}
	close(fd);
	unlinkat(fs->dirfd, probe, 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double rtt = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
	buf_appendf(out, "%s: local store in %s, writable, round trip %.3f ms", s->desc, fs->dir,
		    rtt);
	return 0;
}

/* when an entry expires, in whole seconds rounded up */
static time_t expiry_s(const struct entry_meta *m)
{
	int64_t ms = m->created_ms + entry_lifetime(m);

	return (time_t)((ms + 999) / 1000);
}

/* write header, stdout, stderr and trailer to a new temporary file; its
 * name goes to tmp; 0 or -1 with err_set() (and nothing left behind) */
static int write_temp(struct file_store *fs, char *tmp, const struct result *r,
		      const struct entry_meta *meta, const void *trailer, size_t trailer_len)
{
	struct buf hdr = {0};
	int fd = openat(fs->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd < 0) {
		err_set("cannot create a file in %s: %s", fs->dir, strerror(errno));
		return -1;
	}
	entry_header_write(&hdr, meta);
	int rc = write_all(fd, hdr.data, hdr.len);
	if (rc == 0)
		rc = copy_fd(r->out_fd, fd, meta->out_len);
	if (rc == 0 && r->err_fd >= 0)
		rc = copy_fd(r->err_fd, fd, meta->err_len);
	if (rc == 0)
		rc = write_all(fd, trailer, trailer_len);
	/* an entry's mtime is when it expires, so a sweep can skip the living
	 * with one fstatat each, without opening them */
	struct timespec times[2] = {{.tv_nsec = UTIME_NOW}, {.tv_sec = expiry_s(meta)}};
	if (rc == 0 && r->cacheable && futimens(fd, times) < 0)
		rc = -1;
	if (close(fd) < 0)
		rc = -1;
	buf_free(&hdr);
	if (rc < 0) {
		err_set("cannot write to %s: %s", fs->dir, strerror(errno));
		unlinkat(fs->dirfd, tmp, 0);
	}
	return rc;
}

/* File the entry under its tags before it appears, under the commit lock
 * (so a sweep compacting a tag file or invalidate --tag reading it sees
 * both or neither); 0, or -1 with err_set(). A record filed for an entry
 * that then fails to appear only names a key that has none. */
static int file_tags(struct file_store *fs, const struct result *r, const char *key,
		     size_t key_len)
{
	for (int i = 0; i < r->ntags; i++)
		if (tag_add(fs, r->tags[i], key, key_len) < 0)
			return -1;
	return 0;
}

static int file_finish(struct store *s, const char *key, size_t key_len, const char *token,
		       const struct result *r)
{
	struct file_store *fs = to_file(s);
	char tmp[NAME_MAX_LEN], lock[NAME_MAX_LEN], target[NAME_MAX_LEN];
	struct entry_meta meta = r->meta;
	int rc = -1;

	meta.created_ms = realtime_ms();
	round_name(tmp, sizeof(tmp), key, key_len, token, ".tmp");
	file_name(lock, sizeof(lock), key, key_len, ".lock");
	file_name(target, sizeof(target), key, key_len, r->cacheable ? ".entry" : ".done");
	if (r->cacheable)
		rc = write_temp(fs, tmp, r, &meta, key, key_len);
	else
		rc = write_temp(fs, tmp, r, &meta, token, TOKEN_LEN);
	if (rc < 0)
		goto out;
	int cfd = commit_lock(fs);
	if (cfd < 0) {
		unlinkat(fs->dirfd, tmp, 0);
		goto out;
	}
	if (!lock_still_ours(fs, lock)) {
		unlinkat(fs->dirfd, tmp, 0);
		file_count(s, STAT_LOST_LOCK);
		rc = 0;
	} else if (r->cacheable && file_tags(fs, r, key, key_len) < 0) {
		/* an entry no tag finds would outlive invalidate --tag */
		unlinkat(fs->dirfd, tmp, 0);
		rc = -1;
	} else if (renameat(fs->dirfd, tmp, fs->dirfd, target) < 0) {
		err_set("cannot rename into %s: %s", fs->dir, strerror(errno));
		unlinkat(fs->dirfd, tmp, 0);
		rc = -1;
	} else {
		rc = 1;
		if (r->cacheable) {
			file_name(target, sizeof(target), key, key_len, ".done");
			unlinkat(fs->dirfd, target, 0);
			/* a new entry has no back-off (it names the old one anyway) */
			file_name(target, sizeof(target), key, key_len, ".backoff");
			unlinkat(fs->dirfd, target, 0);
		}
	}
	commit_unlock(cfd);
out:
	release_lock(fs);
	if (rc == 1 && sweep_due())
		sweep(fs);
	return rc;
}

static int file_abandon(struct store *s, const char *key, size_t key_len, const char *token,
			enum abandon_reason why, int64_t backoff_ms)
{
	struct file_store *fs = to_file(s);
	int counter = abandon_counter(why);

	if (counter >= 0)
		file_count(s, counter);
	/* before the release that wakes the waiters */
	if (why == ABANDON_TOO_LARGE && fs->lock_fd >= 0)
		leave_bypass_mark(fs, key, key_len, token);
	/* as abandon.lua sets it: only while the lock, so the entry, is ours */
	char lock[KEY_HASH_HEX + 16];
	file_name(lock, sizeof(lock), key, key_len, ".lock");
	if (why == ABANDON_REFRESH_FAILED && backoff_ms > 0 && lock_still_ours(fs, lock))
		leave_backoff(fs, key, key_len, backoff_ms);
	release_lock(fs);
	return 0;
}

static int file_get(struct store *s, const char *key, size_t key_len, bool fresh_only,
		    struct entry_meta *meta, struct sink *sink)
{
	struct stored st;
	int rc = entry_open(to_file(s), key, key_len, &st);

	if (rc <= 0)
		return rc;
	int64_t now = realtime_ms();
	enum freshness f = entry_freshness(&st.meta, now);
	if (f == ENTRY_EXPIRED || (fresh_only && f != ENTRY_FRESH) || from_future(&st.meta, now)) {
		stored_close(&st);
		return 0;
	}
	*meta = st.meta;
	rc = stored_deliver(&st, sink) < 0 ? -1 : 1;
	stored_close(&st);
	return rc;
}

static int file_invalidate(struct store *s, const char *key, size_t key_len)
{
	struct file_store *fs = to_file(s);
	char entry[KEY_HASH_HEX + 16], lock[KEY_HASH_HEX + 16];
	struct stored st;

	/* only this key's entry counts: a hash collision must not delete another */
	int found = entry_open(fs, key, key_len, &st);
	if (found < 0)
		return -1;
	if (found)
		stored_close(&st);
	file_name(entry, sizeof(entry), key, key_len, ".entry");
	file_name(lock, sizeof(lock), key, key_len, ".lock");
	int cfd = commit_lock(fs);
	if (cfd < 0)
		return -1;
	int deleted = found && unlinkat(fs->dirfd, entry, 0) == 0;
	unlinkat(fs->dirfd, lock, 0);
	commit_unlock(cfd);
	return deleted;
}

static int file_after_fork(struct store *s, bool child)
{
	struct file_store *fs = to_file(s);

	/* flock(2) locks belong to the open file, which parent and child now
	 * share: the parent closes its descriptor without unlocking */
	if (!child && fs->lock_fd >= 0) {
		close(fs->lock_fd);
		fs->lock_fd = -1;
	}
	return 0;
}

static void file_close(struct store *s)
{
	struct file_store *fs = to_file(s);

	if (!fs)
		return;
	release_lock(fs);
	file_stats_close(&fs->stats);
	if (fs->wait_fd >= 0)
		close(fs->wait_fd);
	if (fs->notify_fd >= 0)
		close(fs->notify_fd);
	if (fs->commit_fd >= 0)
		close(fs->commit_fd);
	if (fs->dirfd >= 0)
		close(fs->dirfd);
	free(fs->dir);
	free(fs->base.desc);
	free(fs);
}

static const struct store_ops file_ops = {
	.lookup = file_lookup,
	.watch = file_watch,
	.wait = file_wait,
	.renew = file_renew,
	.finish = file_finish,
	.abandon = file_abandon,
	.get = file_get,
	.invalidate = file_invalidate,
	.inspect = file_inspect,
	.list = file_list,
	.list_tags = file_list_tags,
	.invalidate_tag = file_invalidate_tag,
	.fence = file_fence,
	.stats = file_stats,
	.count = file_count,
	.ping = file_ping,
	.after_fork = file_after_fork,
	.close = file_close,
};

struct store *store_file_open(const struct store_config *cfg, bool *refused)
{
	struct file_store *fs = xcalloc(1, sizeof(*fs));
	char host[256] = "unknown";

	fs->base.ops = &file_ops;
	fs->lock_fd = fs->wait_fd = fs->notify_fd = fs->commit_fd = -1;
	fs->stats = (struct file_stats)FILE_STATS_INIT;
	fs->base.desc = url_display(cfg->url);
	if (!cfg->url->path) {
		/* options.c found no directory to default to */
		err_set("no store given, and neither XDG_CACHE_HOME nor HOME to put the local "
			"store in (give -u file:///DIR, or set HOME)");
		fs->dirfd = -1;
		file_close(&fs->base);
		return NULL;
	}
	fs->dirfd = open_store_dir(cfg->url->path, cfg->ns, &fs->dir, refused);
	if (fs->dirfd < 0) {
		file_close(&fs->base);
		return NULL;
	}
	gethostname(host, sizeof(host) - 1);
	snprintf(fs->lock_value_suffix, sizeof(fs->lock_value_suffix), " host=%s pid=%ld", host,
		 (long)getpid());
	return &fs->base;
}
