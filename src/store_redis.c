/* store_redis: the store interface on Redis, and the only file that includes
 * hiredis. Every decision that compares times runs in a Lua script on the
 * server's clock (src/lua/); this file maps user keys to Redis keys, sends
 * the scripts, and turns replies into the interface's results.
 *
 * Key layout: NS:{K} is the entry (a hash), NS:{K}:lock the lock,
 * NS:{K}:done:TOKEN a failed round's result for its waiters, and NS:{K}:wake
 * the pub/sub channel that wakes them. K is the user key with '%' and '}'
 * percent-escaped, so the hash tag holds the whole key and one entry's keys
 * share a cluster slot, whatever bytes the key holds. */
#include "store.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lua_scripts.h"
#include "util.h"

struct redis_store {
	struct store base;
	redisContext *c;   /* commands */
	redisContext *sub; /* subscribed to one wake channel, for waiters only */
	struct url url;
	char *ns;
	int64_t timeout_ms;
	char *lock_value_suffix; /* " host=H pid=P", after the token */
};

static struct redis_store *to_redis(struct store *s)
{
	return (struct redis_store *)s;
}

/* the Redis name of one of key's parts: NS:{escaped key}suffix, into out */
static void redis_name(struct buf *out, const char *ns, const char *key, size_t len,
		       const char *suffix)
{
	out->len = 0;
	buf_appendf(out, "%s:{", ns);
	for (size_t i = 0; i < len; i++) {
		if (key[i] == '%')
			buf_append(out, "%25", 3);
		else if (key[i] == '}')
			buf_append(out, "%7D", 3);
		else
			buf_append(out, key + i, 1);
	}
	buf_append(out, "}", 1);
	buf_append(out, suffix, strlen(suffix));
}

static struct timeval ms_to_timeval(int64_t ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	return tv;
}

/* record a hiredis context failure as the error message */
static void context_error(const struct redis_store *rs, const redisContext *c, const char *what)
{
	char *where = url_display(&rs->url);
	const char *why = c ? c->errstr : "cannot allocate a context";
	if (c && c->err == REDIS_ERR_IO && errno == EAGAIN)
		why = "timed out (see --redis-timeout)";
	err_set("%s %s: %s", what, where, why);
	free(where);
}

/* send one command; the reply, or NULL with err_set() on I/O failure or an
 * error reply. The caller frees the reply. */
static redisReply *command(struct redis_store *rs, redisContext *c, int argc, const char **argv,
			   const size_t *lens)
{
	redisReply *r = redisCommandArgv(c, argc, argv, lens);

	if (!r) {
		context_error(rs, c, "redis");
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		char *where = url_display(&rs->url);
		err_set("redis %s: %.*s", where, (int)r->len, r->str);
		free(where);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

/* open one connection, authenticated and on the right database */
static redisContext *connect_one(struct redis_store *rs)
{
	struct timeval tv = ms_to_timeval(rs->timeout_ms);
	redisContext *c;

	if (rs->url.kind == URL_REDIS_UNIX)
		c = redisConnectUnixWithTimeout(rs->url.path, tv);
	else
		c = redisConnectWithTimeout(rs->url.host, rs->url.port, tv);
	if (!c || c->err) {
		context_error(rs, c, "cannot connect to");
		redisFree(c);
		return NULL;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		context_error(rs, c, "cannot set timeouts on");
		redisFree(c);
		return NULL;
	}
	const char *password = rs->url.password;
	if (!password)
		password = getenv("CACHEFENCE_PASSWORD");
	if (password && *password) {
		const char *argv[3] = {"AUTH", rs->url.user ? rs->url.user : password, password};
		size_t lens[3] = {4, strlen(argv[1]), strlen(password)};
		redisReply *r = command(rs, c, rs->url.user ? 3 : 2, argv, lens);
		if (!r) {
			err_set("%s (check the password in the URL or CACHEFENCE_PASSWORD)", err_msg());
			redisFree(c);
			return NULL;
		}
		freeReplyObject(r);
	}
	if (rs->url.db != 0) {
		char db[16];
		snprintf(db, sizeof(db), "%d", rs->url.db);
		const char *argv[2] = {"SELECT", db};
		size_t lens[2] = {6, strlen(db)};
		redisReply *r = command(rs, c, 2, argv, lens);
		if (!r) {
			redisFree(c);
			return NULL;
		}
		freeReplyObject(r);
	}
	return c;
}

/* A script call: EVALSHA, and on NOSCRIPT (a restarted or flushed server)
 * EVAL with the source, which also caches it for the next call. */
struct script_call {
	const struct lua_script *script;
	int nkeys;
	int argc; /* keys and args together, after the numkeys word */
	const char *argv[24];
	size_t lens[24];
};

static void call_push(struct script_call *sc, const void *p, size_t len)
{
	sc->argv[sc->argc] = p;
	sc->lens[sc->argc] = len;
	sc->argc++;
}

static void call_push_str(struct script_call *sc, const char *s)
{
	call_push(sc, s, strlen(s));
}

static redisReply *call_script(struct redis_store *rs, struct script_call *sc)
{
	const char *argv[27];
	size_t lens[27];
	char nkeys[8];

	snprintf(nkeys, sizeof(nkeys), "%d", sc->nkeys);
	argv[0] = "EVALSHA";
	lens[0] = 7;
	argv[1] = sc->script->sha;
	lens[1] = 40;
	argv[2] = nkeys;
	lens[2] = strlen(nkeys);
	memcpy(argv + 3, sc->argv, sc->argc * sizeof(*argv));
	memcpy(lens + 3, sc->lens, sc->argc * sizeof(*lens));

	redisReply *r = redisCommandArgv(rs->c, sc->argc + 3, argv, lens);
	if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
		freeReplyObject(r);
		argv[0] = "EVAL";
		lens[0] = 4;
		argv[1] = sc->script->src;
		lens[1] = sc->script->len;
		r = redisCommandArgv(rs->c, sc->argc + 3, argv, lens);
	}
	if (!r) {
		context_error(rs, rs->c, "redis");
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		char *where = url_display(&rs->url);
		err_set("redis %s: script %s: %.*s", where, sc->script->name, (int)r->len, r->str);
		free(where);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

static int is_string(const redisReply *r)
{
	return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

static int reply_is(const redisReply *r, const char *word)
{
	return is_string(r) && r->len == strlen(word) && memcmp(r->str, word, r->len) == 0;
}

/* Decode {meta, out, err} at elements[i..i+2] of a script reply and write the
 * bytes to sink; 0, or -1 with err_set() if the reply does not hold an entry. */
static int deliver_entry(redisReply **el, struct entry_meta *meta, struct sink *sink)
{
	static const char *const names[ENTRY_NFIELDS] = {
		"v", "st", "ct", "ttl", "sw", "se", "dt", "olen", "elen", "host",
	};
	const char *values[ENTRY_NFIELDS];
	size_t lens[ENTRY_NFIELDS];
	redisReply *m = el[0], *out = el[1], *err = el[2];

	if (m->type != REDIS_REPLY_ARRAY || m->elements != ENTRY_NFIELDS || !is_string(out) ||
	    !is_string(err)) {
		err_set("the store's reply does not hold an entry");
		return -1;
	}
	for (size_t i = 0; i < ENTRY_NFIELDS; i++) {
		values[i] = is_string(m->element[i]) ? m->element[i]->str : "";
		lens[i] = is_string(m->element[i]) ? m->element[i]->len : 0;
	}
	if (entry_meta_decode(meta, names, values, lens, ENTRY_NFIELDS) < 0)
		return -1;
	if (meta->out_len != out->len || meta->err_len != err->len) {
		err_set("the stored entry's sizes do not match its bytes");
		return -1;
	}
	sink_write(sink, sink->out_fd, out->str, out->len);
	sink_write(sink, sink->err_fd, err->str, err->len);
	return 0;
}

static int redis_lookup(struct store *s, const struct lookup_req *req, struct lookup *res,
			struct sink *sink)
{
	struct redis_store *rs = to_redis(s);
	struct buf entry = {0}, lock = {0}, done = {0}, lock_value = {0};
	struct script_call sc = {.script = &lua_lookup, .nkeys = 3};
	char lease[24], beta[32], draw[32];
	int rc = -1;

	redis_name(&entry, rs->ns, req->key, req->key_len, "");
	redis_name(&lock, rs->ns, req->key, req->key_len, ":lock");
	redis_name(&done, rs->ns, req->key, req->key_len, ":done:");
	buf_append(&done, req->awaited ? req->awaited : "-", req->awaited ? TOKEN_LEN : 1);
	buf_appendf(&lock_value, "%s%s", req->token, rs->lock_value_suffix);
	snprintf(lease, sizeof(lease), "%lld", (long long)req->lease_ms);
	call_push(&sc, entry.data, entry.len);
	call_push(&sc, lock.data, lock.len);
	call_push(&sc, done.data, done.len);
	call_push_str(&sc, req->token);
	call_push_str(&sc, lease);
	call_push(&sc, lock_value.data, lock_value.len);
	call_push_str(&sc, req->awaited ? "1" : "0");
	call_push_str(&sc, req->force ? "1" : "0");
	snprintf(beta, sizeof(beta), "%.17g", req->beta);
	snprintf(draw, sizeof(draw), "%.17g", req->rand);
	call_push_str(&sc, beta);
	call_push_str(&sc, draw);

	redisReply *r = call_script(rs, &sc);
	if (!r)
		goto out;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
		err_set("the store's lookup reply is malformed");
		goto out;
	}
	redisReply **el = r->element;
	memset(res, 0, sizeof(*res));
	if (reply_is(el[0], "lead") && r->elements == 2 && el[1]->type == REDIS_REPLY_INTEGER) {
		res->verdict = VERDICT_LEAD;
		res->fallback = el[1]->integer == 1;
	} else if (reply_is(el[0], "wait") && r->elements == 3 &&
		   el[1]->type == REDIS_REPLY_INTEGER && is_string(el[2]) && el[2]->len >= TOKEN_LEN) {
		res->verdict = VERDICT_WAIT;
		res->lease_left_ms = el[1]->integer;
		memcpy(res->holder, el[2]->str, TOKEN_LEN);
		res->holder[TOKEN_LEN] = '\0';
	} else if (r->elements == 6 && el[1]->type == REDIS_REPLY_INTEGER &&
		   el[5]->type == REDIS_REPLY_INTEGER &&
		   (reply_is(el[0], "hit") || reply_is(el[0], "stale") || reply_is(el[0], "done"))) {
		res->verdict = reply_is(el[0], "hit")     ? VERDICT_HIT
			       : reply_is(el[0], "stale") ? VERDICT_STALE
							  : VERDICT_DONE;
		res->age_ms = el[1]->integer;
		res->refresh = el[5]->integer == 1;
		if (deliver_entry(el + 2, &res->meta, sink) < 0)
			goto out;
	} else {
		err_set("the store's lookup reply is malformed");
		goto out;
	}
	rc = 0;
out:
	freeReplyObject(r);
	buf_free(&entry);
	buf_free(&lock);
	buf_free(&done);
	buf_free(&lock_value);
	return rc;
}

static int redis_watch(struct store *s, const char *key, size_t key_len)
{
	struct redis_store *rs = to_redis(s);
	struct buf channel = {0};

	if (rs->sub)
		return 0;
	rs->sub = connect_one(rs);
	if (!rs->sub)
		return -1;
	redis_name(&channel, rs->ns, key, key_len, ":wake");
	const char *argv[2] = {"SUBSCRIBE", channel.data};
	size_t lens[2] = {9, channel.len};
	redisReply *r = command(rs, rs->sub, 2, argv, lens);
	buf_free(&channel);
	if (!r)
		return -1;
	freeReplyObject(r);
	return 0;
}

/* discard every message already buffered on the subscription */
static int drain_messages(struct redis_store *rs)
{
	void *msg;

	for (;;) {
		if (redisGetReplyFromReader(rs->sub, &msg) != REDIS_OK) {
			context_error(rs, rs->sub, "redis");
			return -1;
		}
		if (!msg)
			return 0;
		freeReplyObject(msg);
	}
}

static int redis_wait(struct store *s, int64_t timeout_ms)
{
	struct redis_store *rs = to_redis(s);
	struct pollfd pfd = {.fd = rs->sub->fd, .events = POLLIN};

	if (timeout_ms < 0)
		timeout_ms = 0;
	int n = poll(&pfd, 1, timeout_ms > 60000 ? 60000 : (int)timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return 1; /* a signal: let the caller look again */
		err_set("poll: %s", strerror(errno));
		return -1;
	}
	if (n == 0)
		return 0;
	if (redisBufferRead(rs->sub) != REDIS_OK) {
		context_error(rs, rs->sub, "redis");
		return -1;
	}
	return drain_messages(rs) < 0 ? -1 : 1;
}

/* a script call on one key part with the token and one more argument */
static redisReply *call_on_lock(struct redis_store *rs, const struct lua_script *script,
				const char *key, size_t key_len, const char *token,
				const char *arg)
{
	struct buf lock = {0};
	struct script_call sc = {.script = script, .nkeys = 1};

	redis_name(&lock, rs->ns, key, key_len, ":lock");
	call_push(&sc, lock.data, lock.len);
	call_push_str(&sc, token);
	call_push_str(&sc, arg);
	redisReply *r = call_script(rs, &sc);
	buf_free(&lock);
	return r;
}

static int integer_reply(redisReply *r)
{
	if (!r)
		return -1;
	int v = r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -1;
	if (v < 0)
		err_set("the store's reply is not an integer");
	freeReplyObject(r);
	return v;
}

static int redis_renew(struct store *s, const char *key, size_t key_len, const char *token,
		       int64_t lease_ms)
{
	char lease[24];

	snprintf(lease, sizeof(lease), "%lld", (long long)lease_ms);
	return integer_reply(call_on_lock(to_redis(s), &lua_renew, key, key_len, token, lease));
}

static int redis_abandon(struct store *s, const char *key, size_t key_len, const char *token)
{
	struct redis_store *rs = to_redis(s);
	struct buf channel = {0};

	redis_name(&channel, rs->ns, key, key_len, ":wake");
	int rc = integer_reply(call_on_lock(rs, &lua_abandon, key, key_len, token, channel.data));
	buf_free(&channel);
	return rc < 0 ? -1 : 0;
}

/* Map len bytes of a spool file read-only; the page cache holds them, so
 * the value is not copied into this process's heap. NULL with err_set(). */
static void *map_spool(int fd, uint64_t len)
{
	if (len == 0)
		return (void *)"";
	void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		err_set("cannot map the spooled output: %s", strerror(errno));
		return NULL;
	}
	return p;
}

static void unmap_spool(void *p, uint64_t len)
{
	if (len)
		munmap(p, len);
}

static int redis_finish(struct store *s, const char *key, size_t key_len, const char *token,
			const struct result *res)
{
	struct redis_store *rs = to_redis(s);
	struct buf entry = {0}, lock = {0}, done = {0}, channel = {0};
	struct script_call sc = {.script = &lua_finish, .nkeys = 3};
	struct entry_field fields[ENTRY_NFIELDS];
	char expiry[24], handoff[24];
	int rc = -1;
	void *out = map_spool(res->out_fd, res->meta.out_len);
	void *err = res->err_fd < 0 ? (void *)"" : map_spool(res->err_fd, res->meta.err_len);

	if (!out || !err)
		goto out;
	int64_t expiry_ms = res->meta.ttl_ms + res->meta.stale_ms + res->meta.sie_ms;
	snprintf(expiry, sizeof(expiry), "%lld", (long long)(expiry_ms > 0 ? expiry_ms : 1));
	snprintf(handoff, sizeof(handoff), "%lld", (long long)res->handoff_ms);
	redis_name(&entry, rs->ns, key, key_len, "");
	redis_name(&lock, rs->ns, key, key_len, ":lock");
	redis_name(&done, rs->ns, key, key_len, ":done:");
	buf_append(&done, token, TOKEN_LEN);
	redis_name(&channel, rs->ns, key, key_len, ":wake");
	call_push(&sc, entry.data, entry.len);
	call_push(&sc, lock.data, lock.len);
	call_push(&sc, done.data, done.len);
	call_push_str(&sc, token);
	call_push_str(&sc, res->cacheable ? "1" : "0");
	call_push_str(&sc, expiry);
	call_push_str(&sc, handoff);
	call_push(&sc, channel.data, channel.len);
	entry_meta_encode(&res->meta, fields);
	for (int i = 0; i < ENTRY_NFIELDS; i++)
		call_push_str(&sc, fields[i].value);
	call_push(&sc, out, res->meta.out_len);
	call_push(&sc, err, res->err_fd < 0 ? 0 : res->meta.err_len);
	rc = integer_reply(call_script(rs, &sc));
out:
	if (out)
		unmap_spool(out, res->meta.out_len);
	if (err && res->err_fd >= 0)
		unmap_spool(err, res->meta.err_len);
	buf_free(&entry);
	buf_free(&lock);
	buf_free(&done);
	buf_free(&channel);
	return rc;
}

static int redis_get(struct store *s, const char *key, size_t key_len, bool fresh_only,
		     struct entry_meta *meta, struct sink *sink)
{
	struct redis_store *rs = to_redis(s);
	struct buf entry = {0};
	struct script_call sc = {.script = &lua_get, .nkeys = 1};
	int rc = -1;

	redis_name(&entry, rs->ns, key, key_len, "");
	call_push(&sc, entry.data, entry.len);
	redisReply *r = call_script(rs, &sc);
	buf_free(&entry);
	if (!r)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || (r->elements != 0 && r->elements != 4)) {
		err_set("the store's get reply is malformed");
		goto out;
	}
	rc = 0;
	if (r->elements == 0)
		goto out;
	/* judge freshness before writing anything: decode into a throwaway sink */
	struct sink none = {.out_fd = -1, .err_fd = -1};
	if (deliver_entry(r->element + 1, meta, &none) < 0) {
		rc = -1;
		goto out;
	}
	if (fresh_only && r->element[0]->integer >= meta->ttl_ms)
		goto out;
	rc = deliver_entry(r->element + 1, meta, sink) < 0 ? -1 : 1;
out:
	freeReplyObject(r);
	return rc;
}

static int redis_invalidate(struct store *s, const char *key, size_t key_len)
{
	struct redis_store *rs = to_redis(s);
	struct buf entry = {0}, lock = {0}, channel = {0};
	struct script_call sc = {.script = &lua_invalidate, .nkeys = 2};

	redis_name(&entry, rs->ns, key, key_len, "");
	redis_name(&lock, rs->ns, key, key_len, ":lock");
	redis_name(&channel, rs->ns, key, key_len, ":wake");
	call_push(&sc, entry.data, entry.len);
	call_push(&sc, lock.data, lock.len);
	call_push(&sc, channel.data, channel.len);
	int rc = integer_reply(call_script(rs, &sc));
	buf_free(&entry);
	buf_free(&lock);
	buf_free(&channel);
	return rc;
}

static int redis_after_fork(struct store *s, bool child)
{
	struct redis_store *rs = to_redis(s);

	if (!child)
		return 0;
	/* the parent goes on using these sockets: drop our copies, open our own */
	if (rs->sub)
		redisFree(rs->sub);
	rs->sub = NULL;
	redisFree(rs->c);
	rs->c = connect_one(rs);
	return rs->c ? 0 : -1;
}

static void redis_close(struct store *s)
{
	struct redis_store *rs = to_redis(s);

	if (!rs)
		return;
	if (rs->c)
		redisFree(rs->c);
	if (rs->sub)
		redisFree(rs->sub);
	url_free(&rs->url);
	free(rs->ns);
	free(rs->lock_value_suffix);
	free(rs->base.desc);
	free(rs);
}

static const struct store_ops redis_ops = {
	.lookup = redis_lookup,
	.watch = redis_watch,
	.wait = redis_wait,
	.renew = redis_renew,
	.finish = redis_finish,
	.abandon = redis_abandon,
	.get = redis_get,
	.invalidate = redis_invalidate,
	.after_fork = redis_after_fork,
	.close = redis_close,
};

/* a deep copy of a parsed URL, so the store owns its strings */
static void url_copy(struct url *dst, const struct url *src)
{
	*dst = *src;
	dst->host = src->host ? xstrdup(src->host) : NULL;
	dst->path = src->path ? xstrdup(src->path) : NULL;
	dst->user = src->user ? xstrdup(src->user) : NULL;
	dst->password = src->password ? xstrdup(src->password) : NULL;
}

struct store *store_redis_open(const struct store_config *cfg)
{
	struct redis_store *rs = xcalloc(1, sizeof(*rs));
	char host[256] = "unknown";

	rs->base.ops = &redis_ops;
	url_copy(&rs->url, cfg->url);
	rs->base.desc = url_display(&rs->url);
	rs->ns = xstrdup(cfg->ns);
	rs->timeout_ms = cfg->timeout_ms;
	gethostname(host, sizeof(host) - 1);
	rs->lock_value_suffix = xasprintf(" host=%s pid=%ld", host, (long)getpid());
	rs->c = connect_one(rs);
	if (!rs->c) {
		redis_close(&rs->base);
		return NULL;
	}
	return &rs->base;
}
