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
 * its lock file replaced has been fenced out and stores nothing.
 *
 * This file holds the store's operations, reading entries and the lookup;
 * its parts (store_file.h) hold the rest: file_dir.c the directory and the
 * names, file_lock.c the locks, waits and fencing, file_tags.c the tags,
 * file_sweep.c the clean-up, file_stats.c the counters. */
#include "store_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file_dir.h"
#include "file_lock.h"
#include "file_sweep.h"
#include "file_tags.h"
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

/* is the entry created more than the slack ahead of now? */
static bool from_future(const struct entry_meta *m, int64_t now)
{
	return m->created_ms > now + FUTURE_SLACK_MS;
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

void stored_close(struct stored *st)
{
	if (st->fd >= 0)
		close(st->fd);
	free(st->trailer);
	st->fd = -1;
	st->trailer = NULL;
}

int stored_open(struct file_store *fs, const char *name, struct stored *st)
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

int entry_open(struct file_store *fs, const char *key, size_t len, struct stored *st)
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
	sink_start(sink, &st->meta);
	if (sink_copy(sink, SINK_OUT, st->fd, st->meta.out_len) < 0 ||
	    sink_copy(sink, SINK_ERR, st->fd, st->meta.err_len) < 0) {
		err_set("cannot read the stored entry: %s", strerror(errno));
		return -1;
	}
	return 0;
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
	/* the time the entry is judged at is taken after it was read: under
	 * load a process may sleep seconds between the two, and a time from
	 * before would make the entry a leader just stored look created in
	 * the future, so a miss, so a second run (CI: 200 callers, 2 runs) */
	in->now_ms = realtime_ms();
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
static void leave_bypass_mark(struct file_store *fs, const char *key, size_t len, const char *token)
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

/* --- lookup ----------------------------------------------------------------------- */

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
	struct stored *answer = out.verdict == VERDICT_DONE ? &done
				: out.verdict == VERDICT_HIT || out.verdict == VERDICT_STALE
					? &entry
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

static int file_renew(struct store *s, const char *key, size_t key_len, const char *token,
		      int64_t lease_ms)
{
	char name[KEY_HASH_HEX + 16];

	(void)token;
	(void)lease_ms;
	file_name(name, sizeof(name), key, key_len, ".lock");
	return lock_still_ours(to_file(s), name);
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

struct list_walk {
	const char *glob;
	list_fn fn;
	void *ctx;
	int stopped; /* fn's non-zero return: stop, which is no failure */
};

static int list_name(struct file_store *fs, const char *name, void *ctx)
{
	struct list_walk *w = ctx;
	struct stored st;
	struct entry_info info = {0};
	int rc = 0;

	if (!ends_with(name, ".entry") || stored_open(fs, name, &st) != 1)
		return 0;
	info_from(&info, &st);
	/* keys hold no NUL, so the trailer reads as a C string for fnmatch */
	if (info.freshness != ENTRY_EXPIRED && (!w->glob || fnmatch(w->glob, st.trailer, 0) == 0))
		rc = w->stopped = w->fn(w->ctx, st.trailer, st.trailer_len, &info);
	stored_close(&st);
	return rc;
}

static int file_list(struct store *s, const char *glob, list_fn fn, void *ctx)
{
	struct file_store *fs = to_file(s);
	struct list_walk w = {glob, fn, ctx, 0};

	file_sweep(fs);
	return store_each(fs, list_name, &w) < 0 && !w.stopped ? -1 : 0;
}

static int file_ping(struct store *s, struct buf *out)
{
	struct file_store *fs = to_file(s);
	char probe[64];
	struct timespec a, b;

	snprintf(probe, sizeof(probe), ".ping.%ld", (long)getpid());
	clock_gettime(CLOCK_MONOTONIC, &a);
	int fd = openat(fs->dirfd, probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			0600);
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
	/* the sweep waits for file_close: after the caller got the result */
	if (rc == 1 && file_sweep_due())
		fs->sweep_pending = true;
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

int file_invalidate(struct store *s, const char *key, size_t key_len)
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
	if (fs->sweep_pending)
		file_sweep(fs);
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
