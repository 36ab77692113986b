/* run: the decision logic. It talks only to the store interface (store.h)
 * and to child.c, so every store gets the same decisions:
 *
 *   lookup ─ fresh entry ──────────────────────→ replay it (hit); XFetch may
 *          │                                     refresh early in the background
 *          ─ stale entry (inside --stale) ─────→ replay it; the lock winner
 *          │                                     refreshes in the background
 *          ─ no usable entry, lock free ───────→ lead: run COMMAND, store, wake
 *          ─ no usable entry, lock held ───────→ watch, wait, look again
 *
 * The store makes "check the entry, else take the lock" one atomic step, so
 * whoever wins the lock has already checked the entry. */
#include "run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "child.h"
#include "key.h"
#include "store.h"
#include "util.h"

/* the longest a waiter sleeps between lookups when no wake-up comes: a
 * wake-up lost to a reconnect costs at most this much */
#define WAIT_POLL_MAX_MS 1000
/* how long a failed leader's result stays for the waiters of its round */
#define HANDOFF_MIN_MS 5000

struct run_ctx {
	const struct options *o;
	struct store *store;
	struct buf key;       /* the user key */
	struct buf printable; /* key for log lines */
	char token[TOKEN_LEN + 1];
	char awaited[TOKEN_LEN + 1];
	int stdin_spool;      /* --stdin: standard input, kept for COMMAND; else -1 */
	bool lock_lost;       /* a renewal found the lock gone */
	bool renew_failed;    /* a renewal could not reach the store */
};

/* how a leader runs COMMAND */
enum lead_mode {
	LEAD_LIVE,       /* stream the output to the caller as it comes */
	LEAD_FALLBACK,   /* hold it back: if COMMAND fails, serve the stale entry instead */
	LEAD_BACKGROUND, /* a detached refresh: no caller */
};

static const char *key_for_log(struct run_ctx *ctx)
{
	return key_printable(&ctx->printable, ctx->key.data, ctx->key.len);
}

/* replace this process with COMMAND, uncached, with --stdin's bytes as its input */
static int exec_uncached(struct run_ctx *ctx)
{
	if (ctx->stdin_spool >= 0 &&
	    (lseek(ctx->stdin_spool, 0, SEEK_SET) < 0 || dup2(ctx->stdin_spool, STDIN_FILENO) < 0)) {
		log_error("--stdin: cannot replay standard input: %s", strerror(errno));
		return 125;
	}
	return child_exec(ctx->o->command);
}

/* The store is out of reach: run COMMAND uncached (fail-open), replacing
 * this process so its output and status reach the caller untouched, or with
 * --fail-closed give up with 125. */
static int fail_open(struct run_ctx *ctx, const char *why)
{
	if (ctx->o->fail_closed) {
		log_error("%s; not running COMMAND (--fail-closed)", why);
		return 125;
	}
	log_warn("%s; running COMMAND uncached", why);
	if (ctx->store)
		ctx->store->ops->count(ctx->store, STAT_FAIL_OPEN);
	store_close(ctx->store);
	ctx->store = NULL;
	return exec_uncached(ctx);
}

static int store_failed(struct run_ctx *ctx)
{
	char why[1024];

	if (ctx->store && ctx->store->refused) {
		log_error("%s", err_msg());
		return 125;
	}
	snprintf(why, sizeof(why), "store unavailable: %s", err_msg());
	return fail_open(ctx, why);
}

/* A stored value broke off mid-stream: what reached stdout cannot be taken
 * back, so running COMMAND now would only append to it. */
static int output_cut(struct run_ctx *ctx)
{
	log_error("the stored output of key=%s was cut off: %s; run again", key_for_log(ctx),
		  err_msg());
	return 125;
}

static void renew_lease(void *arg)
{
	struct run_ctx *ctx = arg;
	int rc = ctx->store->ops->renew(ctx->store, ctx->key.data, ctx->key.len, ctx->token,
					ctx->o->lease_ms);

	if (rc == 0 && !ctx->lock_lost) {
		ctx->lock_lost = true;
		log_verbose("lost the lock key=%s: lease ran out or the key was invalidated",
			    key_for_log(ctx));
	} else if (rc < 0 && !ctx->renew_failed) {
		ctx->renew_failed = true;
		log_warn("cannot renew the lock: %s", err_msg());
	}
}

/* an unlinked temporary file; -1 with err_set() */
static int open_spool(void)
{
	const char *dir = getenv("TMPDIR");

	if (!dir || !*dir)
		dir = "/tmp";
	char *path = xasprintf("%s/cachefence.XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd >= 0) {
		unlink(path);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
	} else {
		err_set("cannot create a spool file in %s: %s (set TMPDIR)", dir, strerror(errno));
	}
	free(path);
	return fd;
}

/* give the lock back without a result, so a waiter takes over at once */
static void release(struct run_ctx *ctx, enum abandon_reason why)
{
	ctx->store->ops->abandon(ctx->store, ctx->key.data, ctx->key.len, ctx->token, why);
}

/* the spools of one run: stdout, and stderr with --cache-stderr */
struct spools {
	int out, err;
};

static void spools_close(struct spools *sp)
{
	if (sp->out >= 0)
		close(sp->out);
	if (sp->err >= 0)
		close(sp->err);
}

static int spools_open(struct spools *sp, bool with_err)
{
	sp->out = open_spool();
	sp->err = -1;
	if (sp->out < 0)
		return -1;
	if (with_err && (sp->err = open_spool()) < 0) {
		spools_close(sp);
		return -1;
	}
	return 0;
}

/* rewind both spools for reading; 0 or -1 with err_set() */
static int spools_rewind(struct spools *sp)
{
	if (lseek(sp->out, 0, SEEK_SET) < 0 || (sp->err >= 0 && lseek(sp->err, 0, SEEK_SET) < 0)) {
		err_set("cannot rewind the spool file: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* hand the finished run to the store: as the entry, or to this round's
 * waiters only when it is a failure that is not cached */
static void store_result(struct run_ctx *ctx, const struct child_result *cr, struct spools *sp)
{
	const struct options *o = ctx->o;
	struct result r = {.out_fd = sp->out, .err_fd = sp->err};
	struct entry_meta *m = &r.meta;

	m->status = cr->status;
	m->ttl_ms = cr->status != 0 && o->failure_ttl_ms > 0 ? o->failure_ttl_ms : o->ttl_ms;
	m->stale_ms = o->stale_ms;
	m->sie_ms = o->sie_ms;
	m->compute_ms = cr->compute_ms;
	m->out_len = cr->out_len;
	m->err_len = sp->err >= 0 ? cr->err_len : 0;
	if (gethostname(m->host, sizeof(m->host) - 1) < 0)
		strcpy(m->host, "unknown");
	/* kept for inspect and list, which show where a (derived) key came from */
	entry_command_display(m->cmd, o->command);
	/* a COMMAND that could not start, or was cut off, is no result to keep */
	r.cacheable = cr->status == 0 || (o->cache_failures && !cr->timed_out && !cr->exec_failed);
	r.handoff_ms = o->lease_ms > HANDOFF_MIN_MS ? o->lease_ms : HANDOFF_MIN_MS;
	r.tags = o->tags;
	r.ntags = o->ntags;
	if (spools_rewind(sp) < 0) {
		log_warn("%s; result not stored", err_msg());
		release(ctx, ABANDON_INTERRUPTED);
		return;
	}
	int rc = ctx->store->ops->finish(ctx->store, ctx->key.data, ctx->key.len, ctx->token, &r);
	if (rc < 0) {
		log_warn("cannot store the result: %s", err_msg());
		/* give the lock back if the store still listens, so waiters take
		 * over now rather than when the lease runs out */
		release(ctx, ABANDON_STORE_FAILED);
	}
	else if (rc == 0)
		log_warn("result for key=%s not stored: the lock was lost (lease ran out, or the "
			 "key was invalidated)", key_for_log(ctx));
	else if (r.cacheable)
		log_verbose("stored key=%s status=%d size=%llu compute=%lldms", key_for_log(ctx),
			    cr->status, (unsigned long long)cr->out_len, (long long)cr->compute_ms);
	else
		log_verbose("not cached key=%s status=%d (failures are cached only with "
			    "--cache-failures); handed to waiters", key_for_log(ctx), cr->status);
}

/* A refresh failed while a stale-if-error entry stands: serve that entry
 * (bytes and status) instead. Returns its status, or -1 if it is gone. */
static int serve_stale_entry(struct run_ctx *ctx, const struct child_result *cr)
{
	struct sink sink = {.out_fd = STDOUT_FILENO, .err_fd = STDERR_FILENO};
	struct entry_meta meta;

	int rc = ctx->store->ops->get(ctx->store, ctx->key.data, ctx->key.len, false, &meta, &sink);
	if (rc < 0 && sink.partial)
		return output_cut(ctx);
	if (rc != 1)
		return -1;
	log_warn("refresh of key=%s failed (status %d), serving stale", key_for_log(ctx),
		 cr->status);
	return meta.status;
}

/* write what a held-back run produced to the caller */
static void replay_spools(struct spools *sp, const struct child_result *cr)
{
	struct sink sink = {.out_fd = STDOUT_FILENO, .err_fd = STDERR_FILENO};

	if (spools_rewind(sp) < 0)
		return;
	sink_copy(&sink, sink.out_fd, sp->out, cr->out_len);
	if (sp->err >= 0)
		sink_copy(&sink, sink.err_fd, sp->err, cr->err_len);
}

static void prepare_spec(struct run_ctx *ctx, struct child_spec *spec, const struct spools *sp,
			 enum lead_mode mode)
{
	const struct options *o = ctx->o;
	bool live = mode == LEAD_LIVE;

	*spec = (struct child_spec){
		.argv = o->command,
		.in_fd = -1,
		.out_fd = live ? STDOUT_FILENO : -1,
		.spool_fd = sp->out,
		.capture_err = sp->err >= 0,
		.err_fd = live ? STDERR_FILENO : -1,
		.err_spool_fd = sp->err,
		.max_spool = o->max_size,
		.timeout_ms = o->timeout_ms,
		.tick_ms = o->lease_ms / 3,
		.tick = renew_lease,
		.tick_ctx = ctx,
	};
	if (ctx->stdin_spool >= 0 && lseek(ctx->stdin_spool, 0, SEEK_SET) == 0)
		spec->in_fd = ctx->stdin_spool;
}

/* We hold the lock: run COMMAND, tee its output, keep the lease, store. */
static int lead(struct run_ctx *ctx, enum lead_mode mode)
{
	struct child_result cr;
	struct child_spec spec;
	struct spools sp;

	log_verbose("%s key=%s: running COMMAND", mode == LEAD_BACKGROUND ? "refresh" : "lead",
		    key_for_log(ctx));
	if (spools_open(&sp, ctx->o->cache_stderr) < 0) {
		log_warn("%s; running COMMAND uncached", err_msg());
		release(ctx, ABANDON_INTERRUPTED);
		return mode == LEAD_BACKGROUND ? 0 : exec_uncached(ctx);
	}
	prepare_spec(ctx, &spec, &sp, mode);
	if (child_run(&spec, &cr) < 0) {
		log_error("%s", err_msg());
		release(ctx, ABANDON_INTERRUPTED);
		spools_close(&sp);
		return 125;
	}
	int status = cr.status;
	if (cr.signal_received) {
		log_verbose("interrupted by signal %d: nothing stored, lock released",
			    cr.signal_received);
		release(ctx, ABANDON_INTERRUPTED);
		status = 128 + cr.signal_received;
	} else if (mode == LEAD_FALLBACK && cr.status != 0 && (status = serve_stale_entry(ctx, &cr)) >= 0) {
		release(ctx, ABANDON_INTERRUPTED); /* the old entry stays, for stale-if-error */
	} else {
		status = cr.status;
		if (mode == LEAD_FALLBACK)
			replay_spools(&sp, &cr);
		if (cr.timed_out)
			log_error("COMMAND timed out after --timeout %lldms; nothing stored",
				  (long long)ctx->o->timeout_ms);
		if (cr.too_large) {
			log_warn("output of key=%s is larger than --max-size %llu bytes: not stored",
				 key_for_log(ctx), (unsigned long long)ctx->o->max_size);
			release(ctx, ABANDON_TOO_LARGE);
		} else if (cr.spool_failed) {
			log_warn("cannot write the spool file: %s; result not stored", strerror(errno));
			release(ctx, ABANDON_INTERRUPTED);
		} else {
			store_result(ctx, &cr, &sp);
		}
	}
	spools_close(&sp);
	return status;
}

/* Close what the caller handed us beyond stdin, stdout and stderr (a `5>file`,
 * a test harness's pipe): a detached refresh must not keep them open for
 * whoever waits on them. Every descriptor of our own is close-on-exec, which
 * is how they are told apart. */
static void close_inherited_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	if (!d)
		return;
	int self = dirfd(d);
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name);
		int flags = fcntl(fd, F_GETFD);
		if (fd > STDERR_FILENO && fd != self && flags >= 0 && !(flags & FD_CLOEXEC))
			close(fd);
	}
	closedir(d);
}

/* Refresh in a detached process (own session, no stdin, the caller's
 * stdout and stderr closed), so `x=$(cachefence ...)` returns at once. The
 * lock, already ours, goes with it. */
static void refresh_in_background(struct run_ctx *ctx)
{
	pid_t pid = fork();

	if (pid < 0) {
		log_warn("cannot start a background refresh: %s", strerror(errno));
		release(ctx, ABANDON_INTERRUPTED);
		return;
	}
	if (pid > 0) {
		ctx->store->ops->after_fork(ctx->store, false);
		return;
	}
	setsid();
	close_inherited_fds();
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	if (ctx->store->ops->after_fork(ctx->store, true) == 0)
		lead(ctx, LEAD_BACKGROUND);
	store_close(ctx->store);
	_exit(0);
}

/* how long to sleep before the next lookup while another process leads */
static int64_t wait_interval(const struct lookup *l, int64_t deadline)
{
	/* a lease about to run out is worth a look right after; a store
	 * without leases (a kernel lock) wakes us itself */
	int64_t t = l->lease_left_ms >= 0 ? l->lease_left_ms + 20 : WAIT_POLL_MAX_MS;

	if (t > WAIT_POLL_MAX_MS)
		t = WAIT_POLL_MAX_MS;
	if (deadline) {
		int64_t left = deadline - monotonic_ms();
		if (left < t)
			t = left;
	}
	return t;
}

/* a uniform draw in (0, 1] for XFetch */
static double xfetch_draw(void)
{
	uint64_t r = 0;

	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		return 1.0; /* no early refresh this time */
	return ((double)(r >> 11) + 1.0) / 9007199254740992.0; /* (0, 1] in 2^-53 steps */
}

/* a hit (fresh or stale) was served: log it, and start a refresh if ours */
static int served(struct run_ctx *ctx, const struct lookup *l)
{
	const char *what = l->verdict == VERDICT_HIT ? "hit" : "stale";

	log_verbose("%s key=%s age=%llds ttl=%llds%s", what, key_for_log(ctx),
		    (long long)(l->age_ms / 1000), (long long)((l->meta.ttl_ms - l->age_ms) / 1000),
		    !l->refresh			   ? ""
		    : l->verdict == VERDICT_HIT ? ": xfetch early refresh in the background"
						: ": refreshing in the background");
	if (l->refresh)
		refresh_in_background(ctx);
	return l->meta.status;
}

/* The leader we waited on found its output over --max-size: nothing will
 * be stored this round. Run COMMAND now, uncached, as every other waiter
 * of the round does, rather than take the lock in turn and run it once per
 * waiter, one after another. Not a failure: no warning. */
static int run_bypassed(struct run_ctx *ctx)
{
	log_verbose("waited key=%s: the leader's output is over --max-size; running COMMAND "
		    "uncached", key_for_log(ctx));
	store_close(ctx->store);
	ctx->store = NULL;
	return exec_uncached(ctx);
}

static int decide(struct run_ctx *ctx)
{
	const struct options *o = ctx->o;
	struct lookup_req req = {
		.key = ctx->key.data,
		.key_len = ctx->key.len,
		.token = ctx->token,
		.lease_ms = o->lease_ms,
		.force = o->refresh,
		.beta = o->beta,
		.rand = xfetch_draw(),
		.tags = o->tags,
		.ntags = o->ntags,
	};
	struct sink sink = {.out_fd = STDOUT_FILENO, .err_fd = STDERR_FILENO};
	struct lookup l;
	int64_t deadline = o->wait_ms ? monotonic_ms() + o->wait_ms : 0;
	bool watching = false;

	for (;;) {
		if (ctx->store->ops->lookup(ctx->store, &req, &l, &sink) < 0)
			return sink.partial ? output_cut(ctx) : store_failed(ctx);
		switch (l.verdict) {
		case VERDICT_HIT:
		case VERDICT_STALE:
			return served(ctx, &l);
		case VERDICT_DONE:
			log_verbose("waited key=%s: the leader's result, status %d", key_for_log(ctx),
				    l.meta.status);
			return l.meta.status;
		case VERDICT_LEAD:
			return lead(ctx, l.fallback ? LEAD_FALLBACK : LEAD_LIVE);
		case VERDICT_BYPASS:
			return run_bypassed(ctx);
		case VERDICT_WAIT:
			break;
		}
		memcpy(ctx->awaited, l.holder, sizeof(ctx->awaited));
		req.awaited = ctx->awaited;
		if (!watching) {
			/* listen first, then look again: a wake-up between our lookup
			 * and the subscription would otherwise be lost */
			log_verbose("wait key=%s: another process is running COMMAND", key_for_log(ctx));
			if (ctx->store->ops->watch(ctx->store, ctx->key.data, ctx->key.len) < 0)
				return store_failed(ctx);
			watching = true;
			continue;
		}
		if (deadline && monotonic_ms() >= deadline) {
			log_error("gave up waiting for key=%s after --wait %lldms", key_for_log(ctx),
				  (long long)o->wait_ms);
			return 124;
		}
		if (ctx->store->ops->wait(ctx->store, wait_interval(&l, deadline)) < 0)
			return store_failed(ctx);
	}
}

/* --stdin: keep standard input in a spool and put its digest in the key */
static int read_stdin(struct run_ctx *ctx, unsigned char digest[32])
{
	ctx->stdin_spool = open_spool();
	if (ctx->stdin_spool < 0)
		return -1;
	return key_digest_copy(STDIN_FILENO, ctx->stdin_spool, digest);
}

/* the user key: --key, or derived from COMMAND and the scopes; 0 or -1 */
static int make_key(struct run_ctx *ctx)
{
	const struct options *o = ctx->o;
	unsigned char digest[32];
	struct key_scope scope = {
		.cwd = o->scope_cwd,
		.env = o->scope_env,
		.nenv = o->nscope_env,
		.files = o->scope_file,
		.nfiles = o->nscope_file,
	};

	if (o->key) {
		buf_append(&ctx->key, o->key, strlen(o->key));
		return 0;
	}
	if (o->use_stdin) {
		if (read_stdin(ctx, digest) < 0)
			return -1;
		scope.stdin_digest = digest;
	}
	return key_derive(&ctx->key, o->command, &scope);
}

int run_command(const struct options *o)
{
	struct run_ctx ctx = {.o = o, .stdin_spool = -1};
	struct store_config cfg = {.url = &o->url, .ns = o->ns, .timeout_ms = o->redis_timeout_ms,
				   .password = o->password};
	bool refused;
	int status = 125;

	if (make_key(&ctx) < 0 || random_hex(ctx.token, TOKEN_LEN / 2) < 0) {
		log_error("%s", err_msg());
		goto out;
	}
	ctx.store = store_open(&cfg, &refused);
	if (!ctx.store && refused)
		log_error("%s", err_msg());
	else if (!ctx.store)
		status = store_failed(&ctx);
	else {
		log_verbose("store %s", ctx.store->desc);
		status = decide(&ctx);
	}
out:
	store_close(ctx.store);
	if (ctx.stdin_spool >= 0)
		close(ctx.stdin_spool);
	buf_free(&ctx.key);
	buf_free(&ctx.printable);
	return status;
}
