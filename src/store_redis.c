/* store_redis: the store interface on Redis, over the connections of
 * conn.c (with which it shares hiredis: conn.c parses the replies this file
 * reads). Every decision that compares times runs in a Lua script on the
 * server's clock (src/lua/); this file maps user keys to Redis keys, sends
 * the scripts, and turns replies into the interface's results.
 *
 * Key layout: every name is NS:{...}..., one brace tag per entry:
 *
 *   NS:{K}               the entry (a hash)
 *   NS:{K}:lock          the lock
 *   NS:{K}:done:TOKEN    a failed round's result for its waiters
 *   NS:{K}:stage:TOKEN   a result being written
 *   NS:{K}:wake          the pub/sub channel that wakes the waiters
 *   NS:{%W}:tag:T        the set of user keys of slot %W filed under tag T
 *   NS:{%W}:run:T        the keys of slot %W whose leader runs with tag T and
 *                        has not finished (so that invalidate --tag can fence it)
 *   NS:{%W}:stats        the counters of the runs of slot %W's keys (a hash)
 *   NS:{%ping}...        probe keys of ping, deleted after
 *
 * K is the user key and T the tag name with '%' and '}' written %25 and %7D,
 * so a brace tag holds the whole name, and one entry's keys share a cluster
 * slot, whatever bytes the key holds. %W is the tag of that slot (cluster.h:
 * '%' and four letters of [@A-O] that hash to it), so that each script
 * call touches one slot, counters and tag sets included, on a cluster and
 * alike on a standalone server; stats and the tag subcommands add up every
 * slot's (SCAN). The mapping is injective: the namespace holds no '{'
 * (options.c refuses one, and so does open), so the first '{' ends it; the
 * first '}' ends the brace tag; an escaped key holds '%' only in %25 or %7D,
 * so no entry's name is "NS:{%W}:" followed by tag, run or stats (those
 * suffixes are not an entry part's); and the suffix after the '}' says which
 * part of the entry a name is. No tag, key or namespace can name another's
 * key. */
#include "store.h"

#include <errno.h>
#include <fnmatch.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acl.h"
#include "cluster.h"
#include "conn.h"
#include "lua_scripts.h"
#include "private_cache.h"
#include "reply.h"
#include "resp.h"
#include "util.h"

struct redis_store {
	struct store base;
	struct conn *c;       /* commands */
	struct conn *sub;     /* subscribed to one wake channel, for waiters only */
	struct conn_tls *tls; /* rediss://: the TLS configuration of both */
	struct url url;
	char *ns;
	int64_t timeout_ms;
	char *lock_value_suffix;                 /* " host=H pid=P", after the token */
	char slot_tag[CLUSTER_SLOT_TAG_MAX + 1]; /* of the key in use: its counters and tag
						  * sets' slot */
	struct buf stats_key;        /* NS:{%SLOTTAG}:stats, the counters of that slot */
	bool refused;                /* the server refused our credentials */
	enum conn_error connect_err; /* how the last connect_one() failed to connect */
	char *password;              /* CACHEFENCE_PASSWORD's, for a URL without one */
	char *sentinel_password;     /* CACHEFENCE_SENTINEL_PASSWORD's, or NULL */
	/* redis+sentinel://: the primary the sentinels named, NULL until asked
	 * (and again when it turned out a replica) */
	char *primary_host;
	int primary_port;
	/* a run's: the file that keeps the primary between runs (NULL: none);
	 * whether to try it at the start of the call; whether primary_* came
	 * from it, unchecked: a hit then connects there at once, and its first
	 * write is the check (a replica answers READONLY) */
	char *primary_path;
	bool try_cache;
	bool primary_unchecked;
	const char *const *tags; /* the run's tags, from its lookup: renew keeps them */
	int ntags;
	/* who c is on the server (identity()), asked once per connection: */
	bool identified;
	long long cid;       /* CLIENT ID; 0 when refused */
	char run_id[48];     /* INFO server's run_id; "" when refused */
	bool no_client_list; /* CLIENT LIST ID is refused: wait out leases */
	/* the lock this process holds, from its lookup until finish or abandon */
	bool holding;
	char held_run[48]; /* the run id of the server it was last ours on */
	int64_t held_lease_ms;
	struct buf held_key; /* its user key */
	char held_token[TOKEN_LEN + 1];
	struct conn *old;       /* a broken connection we held the lock from, kept open
				  * until the lock names the new one (see reconnect) */
	char seen_holder[512];  /* a waiter: the lock's value at its last look */
	int64_t seen_pttl_ms;   /* and how long its lease still ran then */
	bool waited;            /* redis_wait judged seen_holder since that look */
	struct buf sub_channel; /* the channel watched: a broken subscription is renewed */
	struct buf carried;     /* the last wake-up that carried a result: the
				 * leader's token, then its lookup reply (finish.lua) */
	struct resp_reader *carry_reader; /* reads carried, made as the wait begins */
	bool carried_hit; /* a carried stored result served us: count the hit as we leave */
	/* Redis Cluster (SPEC 9.3): found from the first MOVED, or from a map
	 * cached for these seeds; c is then the connection to one node */
	bool cluster;
	bool map_asked; /* detect_cluster() asked for the whole map */
	struct slot_map map;
	char *map_path; /* the map's cache on disk; NULL: none */
	struct peer {   /* connections to the other nodes, parked */
		char *host;
		int port;
		struct conn *c;
	} * peers;
	size_t n_peers;
	char *at_host; /* the node c is on; NULL: the URL's (a seed) */
	int at_port;
	/* with at_host NULL, the seed the last connection to the seeds reached:
	 * 0 the URL's first host, i its more[i - 1] */
	int seed_at;
	bool asking;     /* ASK: send ASKING before the next command */
	char *scan_host; /* the node a SCAN walks, while it does */
	int scan_port;
	int64_t resubscribe_at; /* when to try that again */
};

static struct redis_store *to_redis(struct store *s)
{
	return (struct redis_store *)s;
}

/* tags one entry may carry: each is a key of the finish script */
#define MAX_TAGS 32

/* append the n bytes at p with '%' and '}' escaped, for inside a brace tag */
static void append_escaped(struct buf *out, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '%')
			buf_append(out, "%25", 3);
		else if (p[i] == '}')
			buf_append(out, "%7D", 3);
		else
			buf_append(out, p + i, 1);
	}
}

/* Counters and tag records live next to the entries they count and file:
 * in each slot (of Redis Cluster's 16384), under that slot's tag %W (see
 * cluster.h), so that every script call touches one slot. A standalone
 * server has the same names: stats and the tag subcommands add them up. */

/* the Redis name of a tag's set in the slot of slot_tag: NS:{%W}:tag:escaped
 * tag, into out */
static void tag_name(struct buf *out, const char *ns, const char *slot_tag, const char *tag)
{
	out->len = 0;
	buf_appendf(out, "%s:{%s}:tag:", ns, slot_tag);
	append_escaped(out, tag, strlen(tag));
}

/* the Redis name of a tag's running leaders in the slot of slot_tag:
 * NS:{%W}:run:escaped tag, into out */
static void run_set_name(struct buf *out, const char *ns, const char *slot_tag, const char *tag)
{
	out->len = 0;
	buf_appendf(out, "%s:{%s}:run:", ns, slot_tag);
	append_escaped(out, tag, strlen(tag));
}

/* the cluster slot of every Redis name of key's (NS:{escaped key}...: the
 * hash tag is the escaped key, which has no '}') */
static unsigned key_slot(const char *key, size_t len)
{
	struct buf tag = {0};

	append_escaped(&tag, key, len);
	unsigned slot = cluster_slot(tag.data, tag.len);
	buf_free(&tag);
	return slot;
}

/* the key in use from now on is key: its slot's counters (and tag sets) */
static void use_key_slot(struct redis_store *rs, const char *key, size_t len)
{
	cluster_slot_tag(key_slot(key, len), rs->slot_tag);
	rs->stats_key.len = 0;
	buf_appendf(&rs->stats_key, "%s:{%s}:stats", rs->ns, rs->slot_tag);
}

/* the Redis name of one of key's parts: NS:{escaped key}suffix, into out */
static void redis_name(struct buf *out, const char *ns, const char *key, size_t len,
		       const char *suffix)
{
	out->len = 0;
	buf_append(out, ns, strlen(ns));
	buf_append(out, ":{", 2);
	append_escaped(out, key, len);
	buf_append(out, "}", 1);
	buf_append(out, suffix, strlen(suffix));
}

/* the URL's host i: 0 the first, i its more[i - 1] (a seed, a sentinel) */
static void url_host(const struct url *u, int i, const char **host, int *port)
{
	*host = i ? u->more[i - 1].host : u->host;
	*port = i ? u->more[i - 1].port : u->port;
}

/* the server c talks to, for messages: the URL, and on a cluster the node
 * (the caller frees it) */
static char *server_name(const struct redis_store *rs)
{
	char *url = url_display(&rs->url);
	const char *what = rs->at_host ? "node" : "primary";
	const char *host = rs->at_host ? rs->at_host : rs->primary_host;
	int port = rs->at_host ? rs->at_port : rs->primary_port;

	if (!host)
		return url;
	char *both = xasprintf(strchr(host, ':') ? "%s (%s [%s]:%d)" : "%s (%s %s:%d)", url, what,
			       host, port);
	free(url);
	return both;
}

/* the server's error text, as a message gives it (size bytes into out): an
 * ACL refusal as the permission the user lacks, which the refused script
 * (NULL: none) helps name (acl.c); any other text as it is */
static void server_says(const struct redis_store *rs, const char *text,
			const struct lua_script *script, char *out, size_t size)
{
	if (!acl_denial(text, rs->ns, script ? script->src : NULL, script ? script->len : 0, out,
			size))
		snprintf(out, size, "%s", text);
}

/* put "redis URL: " and then says before the error message set so far */
static void err_at_server(const struct redis_store *rs, const char *says)
{
	char why[512];
	char *where = server_name(rs);

	server_says(rs, err_msg(), NULL, why, sizeof(why));
	err_set("redis %s: %s%s", where, says, why);
	free(where);
}

/* record a connection's failure as the error message */
static void conn_error(const struct redis_store *rs, const struct conn *c, const char *what)
{
	char *where = server_name(rs);
	err_set("%s %s: %s", what, where, c->errstr);
	free(where);
}

/* after a failed send on c: the refusal the server sent before it closed
 * (protected mode, too many clients) as the error, if there is one; else
 * the connection's own error */
static void send_error(const struct redis_store *rs, struct conn *c)
{
	char said[512];

	if (conn_peek_error(c, said, sizeof(said))) {
		char *where = server_name(rs);
		err_set("redis %s: the server refused us: %s", where, said);
		free(where);
		return;
	}
	conn_error(rs, c, "redis");
}

/* Send the commands appended on c and read one reply, all before deadline
 * (see conn.h); further replies of a pipeline come with more calls (their
 * commands are sent by then). The reply (an error reply included), or NULL
 * with err_set() and the connection failed. */
static redisReply *exchange(struct redis_store *rs, struct conn *c, int64_t deadline)
{
	if (c->err) {
		conn_error(rs, c, "redis");
		return NULL;
	}
	if (conn_flush(c, deadline) < 0) {
		send_error(rs, c);
		return NULL;
	}
	redisReply *r = conn_reply(c, deadline);
	if (!r)
		conn_error(rs, c, "redis");
	return r;
}

/* the deadline of an exchange that sends and receives about n bytes of values */
static int64_t deadline_for(const struct redis_store *rs, uint64_t n)
{
	return monotonic_ms() + rs->timeout_ms + resp_budget_ms(n);
}

/* whether an error reply is the server turning the client away (it then
 * closes the connection): protected mode, or out of connections */
static bool is_refusal(const char *text)
{
	return strncmp(text, "DENIED", 6) == 0 || strstr(text, "max number of clients");
}

/* send one command and read its reply within --redis-timeout (and the time
 * its arguments' size allows); the reply, error replies included, or NULL
 * with err_set() on I/O failure. The caller frees the reply. */
static redisReply *raw_command(struct redis_store *rs, struct conn *c, int argc, const char **argv,
			       const size_t *lens)
{
	uint64_t size = 0;

	for (int i = 0; i < argc; i++)
		size += lens[i];
	if (!c->err)
		conn_append(c, argc, argv, lens);
	return exchange(rs, c, deadline_for(rs, size));
}

/* the primary found is not (or no longer) one: ask the sentinels again */
static void forget_primary(struct redis_store *rs)
{
	free(rs->primary_host);
	rs->primary_host = NULL;
	rs->primary_unchecked = false;
}

/* After an error reply with text: a primary found through the sentinels
 * that answers READONLY is a replica now (a failover): the connection is
 * marked broken, so that the operation is sent again on a new one to the
 * primary the sentinels name then */
static void demoted(struct redis_store *rs, const char *text)
{
	if (!rs->url.sentinel || rs->at_host || strncmp(text, "READONLY", 8) != 0)
		return;
	log_verbose("%s:%d is a replica now: asking the sentinels again",
		    rs->primary_host ? rs->primary_host : "?", rs->primary_port);
	forget_primary(rs);
	conn_fail(rs->c, CONN_ERR_EOF, "the primary became a replica (READONLY)");
}

/* send one command; the reply, or NULL with err_set() on I/O failure or an
 * error reply. The caller frees the reply. */
static redisReply *command(struct redis_store *rs, struct conn *c, int argc, const char **argv,
			   const size_t *lens)
{
	redisReply *r = raw_command(rs, c, argc, argv, lens);

	if (r && r->type == REDIS_REPLY_ERROR) {
		char *where = server_name(rs), why[512];
		server_says(rs, r->str, NULL, why, sizeof(why));
		err_set("redis %s: %s%s", where,
			is_refusal(r->str) ? "the server refused us: " : "", why);
		free(where);
		if (c == rs->c)
			demoted(rs, r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

/* how many databases the server has (CONFIG GET databases); 0 when it
 * will not say: CONFIG renamed away, or an ACL user without it */
static int server_databases(struct redis_store *rs, struct conn *c)
{
	const char *argv[3] = {"CONFIG", "GET", "databases"};
	size_t lens[3] = {6, 3, 9};
	redisReply *r = raw_command(rs, c, 3, argv, lens);
	int n = 0;

	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[1]->type == REDIS_REPLY_STRING)
		n = atoi(r->element[1]->str);
	freeReplyObject(r);
	return n > 0 ? n : 0;
}

/* SELECT the URL's database on c; 0, or -1 with err_set(). A database the
 * server does not have will not appear by retrying: like a refused
 * password, it is a usage error (rs->refused), told with the range the
 * server has, not a reason to run uncached. */
static int select_db(struct redis_store *rs, struct conn *c)
{
	char db[16];
	snprintf(db, sizeof(db), "%d", rs->url.db);
	const char *argv[2] = {"SELECT", db};
	size_t lens[2] = {6, strlen(db)};
	redisReply *r = raw_command(rs, c, 2, argv, lens);

	if (!r)
		return -1;
	if (r->type != REDIS_REPLY_ERROR) {
		freeReplyObject(r);
		return 0;
	}
	char *where = url_display(&rs->url);
	/* the same database in the URL's own spelling */
	const char *sel = rs->url.kind == URL_REDIS_UNIX ? "?db=" : "/";
	if (strstr(r->str, "out of range") || strstr(r->str, "invalid DB index")) {
		int n = server_databases(rs, c);
		if (n > 1)
			err_set("%s: database %d does not exist on this server (it has %d: see "
				"'databases' in redis.conf); use %s0 to %s%d",
				where, rs->url.db, n, sel, sel, n - 1);
		else if (n == 1)
			err_set("%s: database %d does not exist on this server (it has only one: see "
				"'databases' in redis.conf); use %s0",
				where, rs->url.db, sel);
		else
			err_set("%s: database %d does not exist on this server (see 'databases' in its "
				"redis.conf: 16 by default, %s0 to %s15)",
				where, rs->url.db, sel, sel);
		rs->refused = true;
	} else if (strstr(r->str, "cluster mode")) {
		err_set("%s: a Redis Cluster has only database 0: drop %s%d from the URL", where,
			sel, rs->url.db);
		rs->refused = true;
	} else {
		char why[512];
		server_says(rs, r->str, NULL, why, sizeof(why));
		err_set("redis %s: SELECT %d: %s", where, rs->url.db, why);
	}
	free(where);
	freeReplyObject(r);
	return -1;
}

/* --- Redis Sentinel: finding the primary (SPEC 9.2) ---------------------------------- */

/* The hosts of a redis+sentinel:// URL are sentinels. Each new connection
 * asks them in turn, each within a short time, for the address of the
 * service's primary (SENTINEL get-master-addr-by-name), connects there and
 * checks with ROLE that it is the primary; a server that says otherwise,
 * or answers READONLY later (a failover since), makes the next connection
 * ask the sentinels again. A sentinel that knows no such service is a
 * usage error; none answering, an unreachable store. */

/* the time each sentinel has to answer: half of --redis-timeout, so that
 * one stopped sentinel leaves time for the next */
static int64_t sentinel_budget_ms(const struct redis_store *rs)
{
	return rs->timeout_ms / 2 > 100 ? rs->timeout_ms / 2 : 100;
}

/* one command on c, its reply read before deadline; the reply, or NULL with
 * err_set() */
static redisReply *command_before(struct redis_store *rs, struct conn *c, int argc,
				  const char **argv, const size_t *lens, int64_t deadline)
{
	conn_append(c, argc, argv, lens);
	return exchange(rs, c, deadline);
}

/* ask the sentinel at host:port for the primary of the URL's service; 1
 * found (rs->primary_*), 0 it knows no such service, -1 with why[] set */
static int ask_sentinel(struct redis_store *rs, const char *host, int port, int64_t until,
			char *why, size_t why_len)
{
	struct url at = rs->url;
	int64_t deadline = monotonic_ms() + sentinel_budget_ms(rs);
	int rc = -1;

	if (until && until < deadline)
		deadline = until;
	at.host = (char *)host;
	at.port = port;
	struct conn *c = conn_connect(&at, rs->tls, deadline);
	redisReply *r = NULL;
	if (!c->err && rs->sentinel_password) {
		const char *argv[2] = {"AUTH", rs->sentinel_password};
		size_t lens[2] = {4, strlen(rs->sentinel_password)};
		r = command_before(rs, c, 2, argv, lens, deadline);
		if (r && r->type == REDIS_REPLY_ERROR) {
			snprintf(why, why_len, "%s:%d refused CACHEFENCE_SENTINEL_PASSWORD: %s",
				 host, port, r->str);
			goto out;
		}
		freeReplyObject(r);
	}
	const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", rs->url.service};
	size_t lens[3] = {8, 23, strlen(rs->url.service)};
	r = c->err ? NULL : command_before(rs, c, 3, argv, lens, deadline);
	if (!r) {
		snprintf(why, why_len, "%s:%d: %s", host, port, c->err ? c->errstr : err_msg());
	} else if (r->type == REDIS_REPLY_NIL) {
		rc = 0;
	} else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
		   r->element[0]->type == REDIS_REPLY_STRING &&
		   r->element[1]->type == REDIS_REPLY_STRING && atoi(r->element[1]->str) > 0) {
		forget_primary(rs);
		rs->primary_host = xstrdup(r->element[0]->str);
		rs->primary_port = atoi(r->element[1]->str);
		rc = 1;
	} else if (r->type == REDIS_REPLY_ERROR) {
		snprintf(why, why_len, "%s:%d: %s%s", host, port, r->str,
			 strstr(r->str, "NOAUTH") ? " (set CACHEFENCE_SENTINEL_PASSWORD)" : "");
	} else {
		snprintf(why, why_len, "%s:%d: an answer that is not an address", host, port);
	}
out:
	freeReplyObject(r);
	conn_free(c);
	return rc;
}

#define PRIMARY_MAGIC "cachefence-primary 1\n"

/* the primary kept by an earlier run into rs->primary_*; whether there was one */
static bool load_primary(struct redis_store *rs)
{
	struct buf b = {0};
	char host[256];
	int port, used = -1;
	size_t magic = strlen(PRIMARY_MAGIC);

	bool ok = rs->primary_path && private_cache_read(rs->primary_path, &b) == 0 &&
		  b.len > magic && !memchr(b.data, '\0', b.len) &&
		  memcmp(b.data, PRIMARY_MAGIC, magic) == 0 &&
		  sscanf(b.data + magic, "%255s %5d\n%n", host, &port, &used) == 2 &&
		  used == (int)(b.len - magic) && port > 0 && port <= 65535;
	buf_free(&b);
	if (ok) {
		forget_primary(rs);
		rs->primary_host = xstrdup(host);
		rs->primary_port = port;
	}
	return ok;
}

/* keep the primary the sentinels named for the next runs */
static void save_primary(const struct redis_store *rs)
{
	if (!rs->primary_path)
		return;
	char *text = xasprintf(PRIMARY_MAGIC "%s %d\n", rs->primary_host, rs->primary_port);
	private_cache_write(rs->primary_path, text, strlen(text));
	free(text);
}

/* Ask the URL's sentinels in turn for the primary; 0, or -1 with err_set()
 * (and rs->refused when none named one and one that answered knows no such
 * service, which asking again will not change) */
static int ask_sentinels(struct redis_store *rs, int64_t until)
{
	char why[512] = "", first[512] = "";
	int unknown = 0;

	for (int i = 0; i <= rs->url.n_more; i++) {
		const char *host;
		int port;
		url_host(&rs->url, i, &host, &port);
		int rc = ask_sentinel(rs, host, port, until, why, sizeof(why));
		if (rc == 1) {
			save_primary(rs);
			return 0;
		}
		unknown += rc == 0;
		if (rc < 0 && !first[0])
			snprintf(first, sizeof(first), "%s", why);
		if (until && monotonic_ms() >= until)
			break;
	}
	if (unknown) {
		rs->refused = true;
		err_set("the sentinels know no service \"%s\" (check the name after the hosts "
			"in the URL against their 'sentinel monitor' lines)",
			rs->url.service);
		return -1;
	}
	err_set("no sentinel told where the primary is: %s", first);
	return -1;
}

/* ROLE on a new connection to the primary the sentinels named: 0 it is
 * the primary, -1 with err_set() when not (or the connection failed) */
static int check_role(struct redis_store *rs, struct conn *c)
{
	const char *argv[1] = {"ROLE"};
	size_t lens[1] = {4};
	redisReply *r = raw_command(rs, c, 1, argv, lens);

	if (!r)
		return -1;
	const char *role = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
					   r->element[0]->type == REDIS_REPLY_STRING
				   ? r->element[0]->str
				   : "something else";
	bool primary = strcmp(role, "master") == 0;
	if (!primary)
		err_set("%s:%d, which the sentinels named, is not the primary (ROLE says %s): a "
			"failover in progress",
			rs->primary_host, rs->primary_port, role);
	freeReplyObject(r);
	return primary ? 0 : -1;
}

/* connect to the primary found before in this call (or kept from an
 * earlier run), or else the one the sentinels name, within --redis-timeout
 * and before until; a connection, which says when it failed */
static struct conn *connect_primary(struct redis_store *rs, int64_t until)
{
	struct url host = rs->url;
	int64_t deadline = monotonic_ms() + rs->timeout_ms;

	if (until && until < deadline)
		deadline = until;
	if (!rs->primary_host && rs->try_cache && load_primary(rs))
		rs->primary_unchecked = true; /* its first write checks it */
	rs->try_cache = false;                /* once a call, and only at its start */
	if (rs->primary_host) {
		host.host = rs->primary_host;
		host.port = rs->primary_port;
		struct conn *c = conn_connect(&host, rs->tls, deadline);
		if (!c->err)
			return c;
		/* gone (a failover?): the sentinels say where it is now */
		conn_free(c);
		forget_primary(rs);
	}
	if (ask_sentinels(rs, until) < 0) {
		struct conn *c = conn_of_fd(-1);
		conn_fail(c, CONN_ERR_IO, err_msg());
		return c;
	}
	host.host = rs->primary_host;
	host.port = rs->primary_port;
	return conn_connect(&host, rs->tls, deadline);
}

/* connect to the first host of the URL that takes the connection, each
 * tried within --redis-timeout and before until (0: no limit); a
 * connection, which says when it failed (the last host's failure). For a
 * sentinel URL, to the primary the sentinels name. */
static struct conn *connect_host(struct redis_store *rs, int64_t until)
{
	struct url host = rs->url;
	struct conn *c = NULL;
	int more = rs->url.n_more;

	if (rs->url.sentinel && !rs->at_host)
		return connect_primary(rs, until);
	if (rs->at_host) {
		/* a cluster's node, which the map named: that one only */
		host.host = rs->at_host;
		host.port = rs->at_port;
		more = 0;
	}
	for (int i = 0; i <= more; i++) {
		if (!rs->at_host) {
			const char *h;
			url_host(&rs->url, i, &h, &host.port);
			host.host = (char *)h; /* read only: the URL keeps it */
		}
		int64_t deadline = monotonic_ms() + rs->timeout_ms;
		if (until && until < deadline)
			deadline = until;
		conn_free(c);
		c = conn_connect(&host, rs->tls, deadline);
		if (!c->err && !rs->at_host)
			rs->seed_at = i;
		/* a certificate that does not verify is not the host's fault */
		if (!c->err || c->err == CONN_ERR_TLS || (until && monotonic_ms() >= until))
			break;
	}
	return c;
}

/* open one connection (TLS for rediss://), authenticated and on the
 * right database, all within --redis-timeout for each step, and its
 * connecting before until (0: no limit) */
static struct conn *connect_one(struct redis_store *rs, int64_t until)
{
	struct conn *c = connect_host(rs, until);

	rs->connect_err = c->err;
	if (c->err) {
		conn_error(rs, c, "cannot connect to");
		conn_free(c);
		return NULL;
	}
	const char *password = rs->url.password ? rs->url.password : rs->password;
	if (password && *password) {
		const char *argv[3] = {"AUTH", rs->url.user ? rs->url.user : password, password};
		size_t lens[3] = {4, strlen(argv[1]), strlen(password)};
		redisReply *r = command(rs, c, rs->url.user ? 3 : 2, argv, lens);
		if (!r) {
			char why[512];
			snprintf(why, sizeof(why), "%s", err_msg());
			/* a failure of TLS (a client certificate the server
			 * wants) is not the password's */
			if (c->err != CONN_ERR_TLS)
				err_set("%s (check the password in the URL or CACHEFENCE_PASSWORD)",
					why);
			/* a server that answers but refuses us will not change its
			 * mind: a usage error, not a reason to run uncached */
			if (c->err == 0)
				rs->refused = true;
			conn_free(c);
			return NULL;
		}
		freeReplyObject(r);
	}
	if (rs->url.db != 0 && select_db(rs, c) < 0) {
		conn_free(c);
		return NULL;
	}
	if (rs->url.sentinel && !rs->at_host && !rs->primary_unchecked && check_role(rs, c) < 0) {
		forget_primary(rs);
		rs->connect_err = c->err ? c->err : CONN_ERR_IO; /* worth a retry */
		conn_free(c);
		return NULL;
	}
	return c;
}

/* --- connections that break (SPEC 9.5) ------------------------------------------------ */

/* Every operation of a run that is safe to send twice is retried on a new
 * connection when its connection breaks (the server closed it, reset it,
 * or went silent past --redis-timeout), until --redis-timeout after the
 * first failure, with short pauses that double: a Redis restart costs a
 * waiter or a leader a few hundred milliseconds, not a fail-open run. What
 * is retried (each says why it is safe): lookup (its lock is taken under
 * our token, and taking it again is a no-op; it is never retried once
 * bytes went to the caller), renew (fenced by the token), finish (the
 * stage is written again under our token, and finish.lua answers "stored"
 * to a repeat whose first send did run), abandon (fenced by the token),
 * get (never once bytes went out), invalidate (deletes: done twice is
 * done once). A server
 * that answered with an error, or sent bytes that are not RESP, is not
 * retried: it would say the same again. Counters (HINCRBY) and stats
 * --reset are never repeated. */

/* the retry state of one operation */
struct retry {
	int64_t deadline; /* 0 until the first failure */
	int pause_ms;
};

#define RETRY_PAUSE_MIN_MS 20
#define RETRY_PAUSE_MAX_MS 250

static int remap_elsewhere(struct redis_store *rs, int64_t until);

/* replace the command connection with a new one, connected before until;
 * 0, or -1 with err_set() and a connection that says it failed */
static int reconnect(struct redis_store *rs, int64_t until)
{
	/* While we hold a lock, the broken connection stays open (to the
	 * server it may still be there: a network that stalled) until the
	 * lock names the new one, or waiters would see its holder gone and
	 * take over from a leader that is alive (see forget_old). */
	if (rs->holding && rs->c->fd >= 0 && !rs->old) {
		rs->old = rs->c;
	} else {
		conn_free(rs->c);
	}
	rs->c = NULL;
	rs->identified = false;
	rs->cid = 0;
	rs->run_id[0] = '\0';
	rs->c = connect_one(rs, until);
	if (rs->c || (rs->cluster && !rs->refused && remap_elsewhere(rs, until) == 0))
		return 0;
	/* never NULL: the next exchange fails on it, and may reconnect */
	rs->c = conn_of_fd(-1);
	conn_fail(rs->c, CONN_ERR_IO, err_msg());
	return -1;
}

/* the lock names the current connection now, or is no longer ours */
static void forget_old(struct redis_store *rs)
{
	conn_free(rs->old);
	rs->old = NULL;
}

/* After a failed operation: whether to send it again, on a new connection.
 * Only when the connection broke (not when the server answered), and only
 * until --redis-timeout after the first failure; the error of the last
 * failure stays set when the answer is no. */
static bool again(struct redis_store *rs, struct retry *rt)
{
	if (rs->refused || rs->base.refused)
		return false;
	enum conn_error e = rs->c->err;
	if (e != CONN_ERR_IO && e != CONN_ERR_EOF && e != CONN_ERR_TIMEOUT)
		return false;
	int64_t now = monotonic_ms();
	if (!rt->deadline) {
		rt->deadline = now + rs->timeout_ms;
		rt->pause_ms = RETRY_PAUSE_MIN_MS;
	}
	char first[512];
	snprintf(first, sizeof(first), "%s", err_msg());
	while (now < rt->deadline) {
		int64_t pause = rt->pause_ms;
		if (pause > rt->deadline - now)
			pause = rt->deadline - now;
		poll(NULL, 0, (int)pause); /* EINTR: the run's signals are handled after */
		rt->pause_ms = rt->pause_ms * 2 > RETRY_PAUSE_MAX_MS ? RETRY_PAUSE_MAX_MS
								     : rt->pause_ms * 2;
		if (reconnect(rs, rt->deadline) == 0) {
			log_verbose("reconnected to %s", rs->base.desc);
			return true;
		}
		if (rs->refused)
			return false;
		now = monotonic_ms();
	}
	err_set("%s", first);
	return false;
}

/* --- Redis Cluster: routing by slot (SPEC 9.3) ---------------------------------------- */

/* Cluster mode is found, not configured: the first MOVED says so (and a
 * standalone server never sends one, so it costs nothing), or a map cached
 * on disk for the same seeds. Then each keyed command goes to the node
 * that serves its key's slot, on a connection of its own kept for the
 * run; MOVED corrects the map (and the cache), ASK sends the one command
 * to the node named after ASKING, at most REDIRECTS_MAX times a command;
 * TRYAGAIN (a slot being migrated) and CLUSTERDOWN (a failover) are asked
 * again after short pauses for up to --redis-timeout from the first, so a
 * short migration is waited out, and one that never ends is a fail-open
 * run within the bound. */

#define REDIRECTS_MAX 5
#define TRYAGAIN_PAUSE_MAX_MS 100

/* the redirections and retries of one command so far */
struct redirects {
	const void *name; /* the Redis name the command is routed by, or NULL */
	size_t len;
	int hops;      /* MOVED and ASK followed */
	int tries;     /* TRYAGAIN and CLUSTERDOWN waited out */
	int64_t until; /* when those stop: --redis-timeout after the first */
};

/* the host c is connected to (a node's, or a seed's) */
static const char *at_host(const struct redis_store *rs)
{
	const char *host;
	int port;

	if (rs->at_host)
		return rs->at_host;
	url_host(&rs->url, rs->seed_at, &host, &port);
	return host;
}

/* and its port */
static int at_port(const struct redis_store *rs)
{
	const char *host;
	int port;

	if (rs->at_host)
		return rs->at_port;
	url_host(&rs->url, rs->seed_at, &host, &port);
	return port;
}

/* put c away, on the node it is on, for a later command there (a broken
 * one is closed) */
static void park(struct redis_store *rs)
{
	if (!rs->c || rs->c->err || rs->c->fd < 0) {
		conn_free(rs->c);
	} else {
		rs->peers = xrealloc(rs->peers, (rs->n_peers + 1) * sizeof(*rs->peers));
		rs->peers[rs->n_peers++] = (struct peer){xstrdup(at_host(rs)), at_port(rs), rs->c};
	}
	rs->c = NULL;
}

/* the parked connection to host:port, taken out; NULL when there is none */
static struct conn *unpark(struct redis_store *rs, const char *host, int port)
{
	for (size_t i = 0; i < rs->n_peers; i++) {
		if (rs->peers[i].port != port || strcmp(rs->peers[i].host, host) != 0)
			continue;
		struct conn *c = rs->peers[i].c;
		free(rs->peers[i].host);
		rs->peers[i] = rs->peers[--rs->n_peers];
		return c;
	}
	return NULL;
}

/* make c a connection to host:port, parked or new; 0, or -1 with err_set()
 * and c a connection that says it failed */
static int go_to_node(struct redis_store *rs, const char *host, int port)
{
	int here = at_port(rs);

	if (rs->c && port == here && strcmp(host, at_host(rs)) == 0)
		return 0;
	park(rs);
	char *h = xstrdup(host);
	free(rs->at_host);
	rs->at_host = h;
	rs->at_port = port;
	rs->identified = false; /* CLIENT ID and run id are the node's */
	rs->cid = 0;
	rs->run_id[0] = '\0';
	rs->c = unpark(rs, host, port);
	if (rs->c)
		return 0;
	rs->c = connect_one(rs, 0);
	if (rs->c)
		return 0;
	rs->c = conn_of_fd(-1);
	conn_fail(rs->c, CONN_ERR_IO, err_msg());
	return -1;
}

/* send what follows to the node serving the slot of the Redis name (a
 * no-op off a cluster, or for a slot the map does not know) */
static void route(struct redis_store *rs, const void *name, size_t len)
{
	if (!rs->cluster)
		return;
	const struct cluster_node *n = slot_map_owner(&rs->map, cluster_slot(name, len));
	if (n)
		go_to_node(rs, n->host, n->port); /* a failure shows on the exchange */
}

/* keep the map on disk for the next runs, if there is a place */
static void save_map(const struct redis_store *rs)
{
	if (rs->map_path && rs->map.n_nodes)
		slot_map_save(&rs->map, rs->map_path);
}

/* ask the node c is on for the whole map, and keep it (in memory) */
static void learn_map(struct redis_store *rs)
{
	const char *argv[2] = {"CLUSTER", "SLOTS"};
	size_t lens[2] = {7, 5};
	redisReply *r = raw_command(rs, rs->c, 2, argv, lens);

	if (r)
		slot_map_from_slots(&rs->map, r, at_host(rs));
	freeReplyObject(r);
}

/* the redirections of a command on the Redis name of len bytes (NULL:
 * none), with c sent to the node of its slot */
static struct redirects routed(struct redis_store *rs, const void *name, size_t len)
{
	if (name)
		route(rs, name, len);
	return (struct redirects){.name = name, .len = len};
}

/* After an error reply whose text is text: 1 when it was a cluster's
 * redirection or a "try again", followed (c is then where the command goes
 * again), 0 when it is none or the command has had its share (so) */
static int follow_redirect(struct redis_store *rs, const char *text, struct redirects *so)
{
	struct redirect rd;

	if (strncmp(text, "TRYAGAIN", 8) == 0 || strncmp(text, "CLUSTERDOWN", 11) == 0) {
		int64_t now = monotonic_ms();
		if (!so->until)
			so->until = now + rs->timeout_ms;
		if (now >= so->until)
			return 0;
		int64_t pause = 10LL << (so->tries < 4 ? so->tries : 4);
		if (pause > TRYAGAIN_PAUSE_MAX_MS)
			pause = TRYAGAIN_PAUSE_MAX_MS;
		if (pause > so->until - now)
			pause = so->until - now;
		so->tries++;
		poll(NULL, 0, (int)pause); /* a migration or a failover in progress */
		/* Start again from the slot's owner: an importing node answers
		 * TRYAGAIN to a script whose keys it does not all have yet (ours
		 * never have the lock), and without a new ASKING, MOVED. The
		 * redirections of the rounds before are not a loop: time bounds
		 * these rounds. */
		so->hops = 0;
		if (so->name)
			route(rs, so->name, so->len);
		return 1;
	}
	if (!cluster_parse_redirect(text, at_host(rs), &rd) || ++so->hops > REDIRECTS_MAX)
		return 0;
	if (!rd.ask) {
		if (!rs->cluster) {
			rs->cluster = true;
			log_verbose("%s is a Redis Cluster: routing by slot", rs->base.desc);
			learn_map(rs);
		}
		slot_map_set(&rs->map, rd.slot, slot_map_node(&rs->map, rd.host, rd.port));
		save_map(rs); /* once, the whole map learnt and corrected */
	}
	if (go_to_node(rs, rd.host, rd.port) < 0)
		return 0;
	rs->asking = rd.ask;
	return 1;
}

/* ASK: the node takes the next command for a slot it is importing only
 * after ASKING; 0, or -1 with err_set() */
static int send_asking(struct redis_store *rs)
{
	const char *argv[1] = {"ASKING"};
	size_t lens[1] = {6};

	if (!rs->asking)
		return 0;
	rs->asking = false;
	conn_append(rs->c, 1, argv, lens);
	redisReply *r = exchange(rs, rs->c, deadline_for(rs, 0));
	freeReplyObject(r);
	return r ? 0 : -1;
}

/* append the URL's hosts to b: "h1:p1,h2:p2..." (what its caches are of) */
static void host_list(struct buf *b, const struct url *u)
{
	buf_appendf(b, "%s:%d", u->host, u->port);
	for (int i = 0; i < u->n_more; i++)
		buf_appendf(b, ",%s:%d", u->more[i].host, u->more[i].port);
}

/* the file that keeps the primary of a sentinel URL's service, or NULL */
static char *primary_path_of(const struct url *u)
{
	struct buf name = {0};

	host_list(&name, u);
	buf_appendf(&name, "/%s", u->service);
	char *path = private_cache_path("sentinel", name.data);
	buf_free(&name);
	return path;
}

/* the cache file of the map of the URL's seeds, or NULL */
static char *map_path_of(const struct url *u)
{
	struct buf seeds = {0};

	host_list(&seeds, u);
	char *path = slot_map_cache_path(seeds.data);
	buf_free(&seeds);
	return path;
}

/* the i-th node we know of: the map's nodes, then the URL's hosts */
static void known_node(const struct redis_store *rs, size_t i, const char **host, int *port)
{
	if (i < rs->map.n_nodes) {
		*host = rs->map.nodes[i].host;
		*port = rs->map.nodes[i].port;
	} else {
		url_host(&rs->url, (int)(i - rs->map.n_nodes), host, port);
	}
}

/* A cluster node that takes no connection (a primary killed: its replica
 * not promoted yet, or promoted already): ask another node we know of, from
 * the map or the seeds, for the map, so that the next command goes where
 * its slot is now. c is left on that node. 0, or -1 with err_set() when no
 * node answers before until. */
static int remap_elsewhere(struct redis_store *rs, int64_t until)
{
	char *gone = xstrdup(at_host(rs));
	int gone_port = at_port(rs);
	size_t n = rs->map.n_nodes + 1 + (size_t)rs->url.n_more;
	int rc = -1;

	for (size_t i = 0; i < n && rc < 0 && !rs->refused; i++) {
		const char *host;
		int port;
		known_node(rs, i, &host, &port);
		if (port == gone_port && strcmp(host, gone) == 0)
			continue;
		if (until && monotonic_ms() >= until)
			break;
		char *h = xstrdup(host); /* the map is replaced below */
		free(rs->at_host);
		rs->at_host = h;
		rs->at_port = port;
		conn_free(rs->c);
		rs->c = connect_one(rs, until);
		if (!rs->c)
			continue;
		learn_map(rs);
		if (rs->map.n_nodes) {
			log_verbose("%s:%d is gone; the slot map from %s:%d", gone, gone_port, h,
				    port);
			save_map(rs);
			rc = 0;
		}
	}
	if (rc < 0) {
		conn_free(rs->c);
		rs->c = NULL;
	}
	free(gone);
	return rc;
}

/* Ask the server for its slot map, once in a call: an operator's command,
 * which must reach every primary, and a map cached on disk may be stale (a
 * run finds out from its first MOVED instead) */
static void detect_cluster(struct redis_store *rs)
{
	if (rs->map_asked)
		return;
	rs->map_asked = true;
	learn_map(rs);
	rs->cluster = rs->map.n_nodes > 0;
	save_map(rs);
}

/* whether nodes[node] serves a slot (a primary, not one left empty) */
static bool serves_slots(const struct slot_map *m, size_t node)
{
	for (unsigned s = 0; s < CLUSTER_SLOTS; s++)
		if (slot_map_index(m, s) == node)
			return true;
	return false;
}

/* Call fn on each primary of a cluster, with c on it and SCAN kept there
 * (scan_step), or once on the server; the first failure, or 0 */
static int each_primary(struct redis_store *rs, int (*fn)(struct redis_store *, void *), void *ctx)
{
	detect_cluster(rs);
	if (!rs->cluster)
		return fn(rs, ctx);
	int rc = 0;
	for (size_t i = 0; i < rs->map.n_nodes && rc == 0; i++) {
		if (!serves_slots(&rs->map, i))
			continue;
		rs->scan_host = xstrdup(rs->map.nodes[i].host);
		rs->scan_port = rs->map.nodes[i].port;
		rc = go_to_node(rs, rs->scan_host, rs->scan_port) < 0 ? -1 : fn(rs, ctx);
		free(rs->scan_host);
		rs->scan_host = NULL;
	}
	return rc;
}

/* every parked connection closed, with or without a word on the wire */
static void unpark_all(struct redis_store *rs, void (*close)(struct conn *))
{
	for (size_t i = 0; i < rs->n_peers; i++) {
		close(rs->peers[i].c);
		free(rs->peers[i].host);
	}
	free(rs->peers);
	rs->peers = NULL;
	rs->n_peers = 0;
}

/* A script call: EVALSHA, and on NOSCRIPT (a restarted or flushed server)
 * EVAL with the source, which also caches it for the next call. */
struct script_call {
	const struct lua_script *script;
	int nkeys;
	int argc; /* keys and args together, after the numkeys word */
	struct resp_arg args[128];
};

static void call_push_arg(struct script_call *sc, struct resp_arg arg)
{
	if (sc->argc == (int)(sizeof(sc->args) / sizeof(sc->args[0])))
		abort(); /* a programming error: callers bound what they push */
	sc->args[sc->argc++] = arg;
}

static void call_push(struct script_call *sc, const void *p, size_t len)
{
	call_push_arg(sc, (struct resp_arg){.p = p, .len = len, .fd = -1});
}

static void call_push_str(struct script_call *sc, const char *s)
{
	call_push(sc, s, strlen(s));
}

/* push the names made by name_of(ns, slot tag, tags[i]) for ntags tags as
 * keys of sc, built in names[] (freed with free_names) */
static void push_tag_keys(struct script_call *sc, struct buf *names, const struct redis_store *rs,
			  const char *const *tags, int ntags,
			  void (*name_of)(struct buf *, const char *, const char *, const char *))
{
	for (int i = 0; i < ntags; i++) {
		name_of(&names[i], rs->ns, rs->slot_tag, tags[i]);
		call_push(sc, names[i].data, names[i].len);
		sc->nkeys++;
	}
}

static void free_names(struct buf *names, int n)
{
	for (int i = 0; i < n; i++)
		buf_free(&names[i]);
}

/* the script's error, named, with the server's text */
static void script_error(struct redis_store *rs, const struct script_call *sc, const char *text)
{
	char why[512];
	char *where = server_name(rs);

	server_says(rs, text, sc->script, why, sizeof(why));
	err_set("redis %s: script %s: %s", where, sc->script->name, why);
	free(where);
	demoted(rs, why);
}

/* the redirections of a script call, routed by its first key (if any) */
static struct redirects script_routed(struct redis_store *rs, const struct script_call *sc)
{
	return sc->nkeys > 0 ? routed(rs, sc->args[0].p, sc->args[0].len) : routed(rs, NULL, 0);
}

/* a small-argument script call through hiredis; the reply, or NULL with err_set() */
static redisReply *call_script(struct redis_store *rs, struct script_call *sc)
{
	const char *argv[131];
	size_t lens[131];
	char nkeys[8];

	snprintf(nkeys, sizeof(nkeys), "%d", sc->nkeys);
	argv[0] = "EVALSHA";
	lens[0] = 7;
	argv[1] = sc->script->sha;
	lens[1] = 40;
	argv[2] = nkeys;
	lens[2] = strlen(nkeys);
	for (int i = 0; i < sc->argc; i++) {
		argv[3 + i] = sc->args[i].p;
		lens[3 + i] = sc->args[i].len;
	}
	redisReply *r;
	for (struct redirects so = script_routed(rs, sc);;) {
		bool asked = rs->asking;
		if (send_asking(rs) < 0)
			return NULL;
		r = raw_command(rs, rs->c, sc->argc + 3, argv, lens);
		if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
			/* each node loads the script the first time it is asked
			 * (an importing node again after ASKING) */
			freeReplyObject(r);
			rs->asking = asked;
			argv[0] = "EVAL";
			lens[0] = 4;
			argv[1] = sc->script->src;
			lens[1] = sc->script->len;
			continue;
		}
		if (!r || r->type != REDIS_REPLY_ERROR || !follow_redirect(rs, r->str, &so))
			break;
		freeReplyObject(r);
	}
	if (!r)
		return NULL;
	if (r->type == REDIS_REPLY_ERROR) {
		script_error(rs, sc, r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

/* reads one reply of a streamed call; 0, -1 failed, -2 an error reply */
typedef int (*reply_fn)(struct resp_reader *rd, void *ctx);

/* Start an exchange on the command connection, outside hiredis's reader:
 * send args and return the reader of the reply, with the exchange's
 * deadline (see resp.h): --redis-timeout from now, plus the time the bytes
 * sent take at RESP_MIN_RATE; the reply's reader adds the time of any value
 * it meets. NULL with err_set() (the connection is then unusable). */
static struct resp_reader *exchange_start(struct redis_store *rs, const struct resp_arg *args,
					  int n)
{
	int64_t deadline = deadline_for(rs, resp_size(args, n));
	struct resp_reader *rd = conn_reader(rs->c, deadline);

	if (!rd) {
		err_set("the connection to redis broke earlier in this run: %s", rs->c->errstr);
		return NULL;
	}
	if (resp_send(conn_push, rs->c, args, n, deadline) == 0)
		return rd;
	char said[512];
	if (conn_peek_error(rs->c, said, sizeof(said)))
		err_set("the server refused us: %s", said);
	return NULL;
}

/* the connection can no longer be trusted to be between replies */
static void break_connection(struct redis_store *rs)
{
	conn_fail(rs->c, CONN_ERR_PROTOCOL, "the connection broke in the middle of an exchange");
}

/* A script call whose reply streams: read by read_reply straight from the
 * socket, so a large value is never whole in memory. 0, or -1 with
 * err_set(); a connection left mid-reply is marked broken. */
static int stream_script(struct redis_store *rs, struct script_call *sc, reply_fn read_reply,
			 void *ctx)
{
	struct resp_arg all[131];
	char nkeys[8];

	snprintf(nkeys, sizeof(nkeys), "%d", sc->nkeys);
	all[0] = (struct resp_arg){.p = "EVALSHA", .len = 7, .fd = -1};
	all[1] = (struct resp_arg){.p = sc->script->sha, .len = 40, .fd = -1};
	all[2] = (struct resp_arg){.p = nkeys, .len = strlen(nkeys), .fd = -1};
	memcpy(all + 3, sc->args, sc->argc * sizeof(*all));
	struct redirects so = script_routed(rs, sc);
	for (int attempt = 0;; attempt++) {
		bool asked = rs->asking;
		/* a value read from a file goes again from its start */
		for (int i = 3; attempt > 0 && i < sc->argc + 3; i++)
			if (all[i].fd >= 0 && lseek(all[i].fd, 0, SEEK_SET) < 0) {
				err_set("cannot read the spooled result again: %s",
					strerror(errno));
				return -1;
			}
		if (send_asking(rs) < 0)
			return -1;
		struct resp_reader *rd = exchange_start(rs, all, sc->argc + 3);
		int rc = rd ? read_reply(rd, ctx) : -1;
		if (rc == 0 && rd->pos != rd->len) {
			err_set("the reply to script %s has bytes after its end", sc->script->name);
			rc = -1;
		}
		if (rc == -2 && strncmp(err_msg(), "NOSCRIPT", 8) == 0 &&
		    all[0].len == 7 /* still EVALSHA */) {
			all[0] = (struct resp_arg){.p = "EVAL", .len = 4, .fd = -1};
			all[1] = (struct resp_arg){
				.p = sc->script->src, .len = sc->script->len, .fd = -1};
			rs->asking = asked;
			continue;
		}
		if (rc == -2 && follow_redirect(rs, err_msg(), &so))
			continue;
		if (rc == -2 && is_refusal(err_msg())) {
			err_at_server(rs, "the server refused us: ");
			break_connection(rs); /* it closes the connection after saying so */
			return -1;
		}
		if (rc == -2) {
			/* a server that wants a password we did not give */
			if (strstr(err_msg(), "NOAUTH") || strstr(err_msg(), "unauthenticated"))
				rs->base.refused = true;
			script_error(rs, sc, err_msg());
			if (rs->base.refused) {
				char why[512];
				snprintf(why, sizeof(why), "%s", err_msg());
				err_set("%s (the server wants a password: put it in the URL or "
					"CACHEFENCE_PASSWORD)",
					why);
			}
			return -1;
		}
		if (rc < 0) {
			err_at_server(rs, "");
			break_connection(rs);
		}
		return rc;
	}
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

static int is_string(const redisReply *r)
{
	return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

/* decode the META values of an HMGET or script reply, and the command
 * (cmd: its reply, nil when the entry has none, or NULL when not asked
 * for); 0, or -1 if they do not make an entry */
static int decode_meta(const redisReply *m, const redisReply *cmd, struct entry_meta *meta)
{
	const char *names[ENTRY_NFIELDS + 1], *values[ENTRY_NFIELDS + 1];
	size_t lens[ENTRY_NFIELDS + 1], n = ENTRY_NFIELDS;

	if (m->type != REDIS_REPLY_ARRAY || m->elements < ENTRY_NFIELDS)
		return -1;
	for (size_t i = 0; i < ENTRY_NFIELDS; i++) {
		names[i] = entry_field_names[i];
		values[i] = is_string(m->element[i]) ? m->element[i]->str : "";
		lens[i] = is_string(m->element[i]) ? m->element[i]->len : 0;
	}
	if (cmd && is_string(cmd)) {
		names[n] = ENTRY_CMD_FIELD;
		values[n] = cmd->str;
		lens[n++] = cmd->len;
	}
	return entry_meta_decode(meta, names, values, lens, n);
}

/* --- the streamed reply of lookup and get ------------------------------------------ */

/* Stored values up to INLINE_MAX (policy_names.h, lib.lua's) come inside the
 * script's reply and are read whole before any byte is written, so a
 * connection that breaks mid-value leaves nothing partial behind. Larger ones
 * come as nil there, with the entry's run id, and are streamed after with
 * one HMGET of the run id and both values: one command's reply is one
 * moment of the entry, so a run id that matches the metadata's proves the
 * bytes are the same run's, checked before any is written (a refresh in
 * between once gave one run's bytes with another's status). A break
 * mid-value is then reported as a cut output. */

static void piece_to_sink(void *ctx, const char *p, size_t n)
{
	struct sink *sink = ctx;

	sink_write(sink, SINK_OUT, p, n);
}

static void piece_to_sink_err(void *ctx, const char *p, size_t n)
{
	struct sink *sink = ctx;

	sink_write(sink, SINK_ERR, p, n);
}

static void entry_to_sink(void *ctx, const struct entry_meta *m)
{
	sink_start(ctx, m);
}

/* a reader of lookup and get replies that hands an entry's bytes to sink */
static struct entry_reply entry_reply_to(struct lookup *res, struct sink *sink)
{
	return (struct entry_reply){
		.res = res,
		.inline_max = INLINE_MAX,
		.out = piece_to_sink,
		.err = piece_to_sink_err,
		.start = entry_to_sink,
		.ctx = sink,
	};
}

/* send one plain command and read its reply with read_reply; 0 or -1 */
static int plain_command(struct redis_store *rs, const struct resp_arg *args, int n,
			 reply_fn read_reply, void *ctx)
{
	int rc;

	for (struct redirects so = routed(rs, n > 1 ? args[1].p : NULL, n > 1 ? args[1].len : 0);
	     ;) {
		struct resp_reader *rd = send_asking(rs) < 0 ? NULL : exchange_start(rs, args, n);
		rc = rd ? read_reply(rd, ctx) : -1;
		if (rc != -2 || !follow_redirect(rs, err_msg(), &so))
			break;
		/* a value read from a file goes again from its start */
		for (int i = 0; i < n; i++)
			if (args[i].fd >= 0 && lseek(args[i].fd, 0, SEEK_SET) < 0)
				return -1;
	}

	if (rc < 0) {
		err_at_server(rs, "");
		if (rc == -1)
			break_connection(rs);
		return -1;
	}
	return 0;
}

/* how often a read of a large entry starts again when another run replaced
 * the entry between its metadata and its bytes, before giving up */
#define BIG_READ_ATTEMPTS 8

/* after attempt reads of a large entry that another run replaced each
 * time: -1 with err_set() when that is enough, else 0 (read again) */
static int replaced_too_often(int attempt)
{
	if (attempt < BIG_READ_ATTEMPTS)
		return 0;
	err_set("the entry was replaced %d times while it was being read", attempt);
	return -1;
}

/* how many times a large entry's read that broke off is taken up again */
#define BIG_READ_RESUMES 5

/* A large entry's read broke off after bytes of it were handed on: can it
 * be read again from where it broke? Only when the server closed the
 * connection or it failed (a failover, a restart, a killed client), not
 * when it was too slow (it would be again), and only while each read gets
 * further than the one before (sink_resume) and a new connection comes
 * within --redis-timeout of the break. */
static bool resume_big_read(struct redis_store *rs, struct sink *sink, int resumed)
{
	enum conn_error e = rs->c->err;
	struct retry rt = {0}; /* each break its own bound: each read got further */

	if ((e != CONN_ERR_IO && e != CONN_ERR_EOF) || resumed == BIG_READ_RESUMES ||
	    !sink->partial || !sink_resume(sink))
		return false;
	uint64_t at = sink->resume_at[SINK_OUT] + sink->resume_at[SINK_ERR];
	if (!again(rs, &rt))
		return false;
	log_verbose("the read of a large entry broke off after %llu bytes; reading on from there",
		    (unsigned long long)at);
	return true;
}

/* Stream the stdout and stderr of a large entry (or round result) at name,
 * whose metadata m came with run id rid: one HMGET of the run id and both
 * values, a snapshot of one moment, checked before a byte is handed on; a
 * read that breaks off goes on from where it broke (resume_big_read) if
 * the entry is still the same run's. 1 written, 0 the entry is another
 * run's now (nothing written), -1. */
static int fetch_big(struct redis_store *rs, const struct buf *name, const struct entry_meta *m,
		     const char *rid, struct sink *sink)
{
	struct body_reply br = {
		.rid = rid,
		.out_len = m->out_len,
		.err_len = m->err_len,
		.out = piece_to_sink,
		.err = piece_to_sink_err,
		.ctx = sink,
	};
	struct resp_arg args[5] = {
		{.p = "HMGET", .len = 5, .fd = -1},
		{.p = name->data, .len = name->len, .fd = -1},
		{.p = FIELD_RUN_ID, .len = sizeof(FIELD_RUN_ID) - 1, .fd = -1},
		{.p = FIELD_OUT, .len = sizeof(FIELD_OUT) - 1, .fd = -1},
		{.p = FIELD_ERR, .len = sizeof(FIELD_ERR) - 1, .fd = -1},
	};
	int resumed = 0;

	sink_start(sink, m);
	while (plain_command(rs, args, 5, body_reply_read, &br) < 0)
		if (!resume_big_read(rs, sink, resumed++))
			return -1;
	if (br.changed && resumed) {
		err_set("the connection broke in its middle, and the entry was replaced since");
		return -1;
	}
	return br.changed ? 0 : 1;
}

static int redis_abandon(struct store *s, const char *key, size_t key_len, const char *token,
			 enum abandon_reason why, int64_t backoff_ms);

/* --- who holds a lock: takeover when its connection is gone -------------------------- */

/* Learn who the command connection is on the server, once per connection:
 * its CLIENT ID and the server's run id (INFO server), in one round trip.
 * A server that refuses either (an ACL user without CLIENT or INFO, a
 * command renamed away) leaves them unknown: locks are then judged by
 * their lease alone. 0, or -1 with err_set() when the connection failed. */
static int identity(struct redis_store *rs)
{
	const char *id[2] = {"CLIENT", "ID"}, *info[2] = {"INFO", "server"};
	size_t id_len[2] = {6, 2}, info_len[2] = {4, 6};

	if (rs->identified)
		return 0;
	if (rs->c->err) {
		conn_error(rs, rs->c, "redis");
		return -1;
	}
	conn_append(rs->c, 2, id, id_len);
	conn_append(rs->c, 2, info, info_len);
	int64_t deadline = deadline_for(rs, 0);
	redisReply *r = exchange(rs, rs->c, deadline);
	if (!r)
		return -1;
	rs->cid = r->type == REDIS_REPLY_INTEGER && r->integer > 0 ? r->integer : 0;
	freeReplyObject(r);
	r = exchange(rs, rs->c, deadline);
	if (!r)
		return -1;
	rs->run_id[0] = '\0';
	const char *v = r->type == REDIS_REPLY_STRING ? strstr(r->str, "run_id:") : NULL;
	if (v)
		sscanf(v + 7, "%40[0-9a-fA-F]", rs->run_id);
	freeReplyObject(r);
	rs->identified = true;
	return 0;
}

/* our lock's value: the token, the connection that holds it (for waiters
 * to see whether it is gone), the host and pid (for people), into out */
static void lock_value(struct redis_store *rs, struct buf *out, const char *token)
{
	out->len = 0;
	buf_append(out, token, TOKEN_LEN);
	buf_appendf(out, "%s", rs->lock_value_suffix);
	if (rs->identified && rs->cid > 0)
		buf_appendf(out, " cid=%lld run=%s", rs->cid, rs->run_id[0] ? rs->run_id : "-");
}

/* Whether the holder of a lock whose value is holder is gone: its client
 * id (cid=) is no longer connected, or is from another lifetime of the
 * server (run=: ids start again at a restart, so one that survived in the
 * lock may name someone else now; on a cluster or behind sentinels, see
 * below). 1 gone, 0
 * there or unknown (a lock without them, a server that refuses CLIENT
 * LIST: the lease decides), -1 with err_set() when the connection failed. */
static int holder_gone(struct redis_store *rs, const char *holder)
{
	const char *p = strstr(holder, " cid=");
	long long cid;
	char run[48] = "";

	if (rs->no_client_list || !p || sscanf(p + 5, "%lld", &cid) != 1 || cid <= 0)
		return 0;
	const char *q = strstr(holder, " run=");
	if (q)
		sscanf(q + 5, "%40[0-9a-fA-F-]", run);
	if (identity(rs) < 0)
		return -1;
	if (run[0] && strcmp(run, "-") != 0 && rs->run_id[0] && strcmp(run, rs->run_id) != 0) {
		/* On a cluster or behind sentinels, another server's run id
		 * says the lock came here by a slot migration or a failover
		 * (it may have been a replica's that a busy primary's
		 * sentinels promoted), not that its holder died: the holder
		 * names its connection here at its next renewal, and until
		 * then the lease decides. Its client id means nothing on this
		 * server. */
		return rs->cluster || rs->url.sentinel ? 0 : 1;
	}
	char id[24];
	snprintf(id, sizeof(id), "%lld", cid);
	const char *argv[4] = {"CLIENT", "LIST", "ID", id};
	size_t lens[4] = {6, 4, 2, strlen(id)};
	redisReply *r = raw_command(rs, rs->c, 4, argv, lens);
	if (!r)
		return -1;
	int gone = 0;
	if (r->type == REDIS_REPLY_ERROR) {
		/* an ACL user without CLIENT, a server before 5.0 (no ID filter) */
		log_verbose("CLIENT LIST ID is refused (%s): waiters wait out leases", r->str);
		rs->no_client_list = true;
	} else if (r->type == REDIS_REPLY_STRING) {
		char want[32];
		snprintf(want, sizeof(want), "id=%lld ", cid);
		gone = strncmp(r->str, want, strlen(want)) != 0;
	}
	freeReplyObject(r);
	return gone;
}

/* take the lock from a holder that is gone, if its value is still holder;
 * 1 ours, 0 it changed hands, -1 */
static int take_over(struct redis_store *rs, const struct lookup_req *req, const char *holder)
{
	struct buf lock = {0}, value = {0}, runs[MAX_TAGS] = {{0}};
	struct script_call sc = {.script = &lua_takeover, .nkeys = 2};
	int ntags = req->ntags < MAX_TAGS ? req->ntags : MAX_TAGS;
	char lease[24];

	use_key_slot(rs, req->key, req->key_len);
	redis_name(&lock, rs->ns, req->key, req->key_len, ":lock");
	lock_value(rs, &value, req->token);
	snprintf(lease, sizeof(lease), "%lld", (long long)req->lease_ms);
	call_push(&sc, lock.data, lock.len);
	call_push(&sc, rs->stats_key.data, rs->stats_key.len);
	push_tag_keys(&sc, runs, rs, req->tags, ntags, run_set_name);
	call_push_str(&sc, holder);
	call_push(&sc, value.data, value.len);
	call_push_str(&sc, lease);
	call_push(&sc, req->key, req->key_len);
	int rc = integer_reply(call_script(rs, &sc));
	buf_free(&lock);
	buf_free(&value);
	free_names(runs, ntags);
	return rc;
}

/* A waiter that reconnects to a server that restarted (the run id in the
 * lock it waited on is not the server's now): the lock went with the old
 * server's memory, but its leader is likely alive and still running
 * COMMAND. Put the lock back for what was left of its lease, unless
 * someone holds one already, so that the waiters do not all start COMMAND
 * again; the leader renews or stores under it as before. Put back without
 * its connection (cid, run): that one is gone with the old server, and
 * until the leader names its new one, only the lease can tell whether it
 * is alive. Best effort: on any failure the waiters take the lock as
 * before, and COMMAND runs once more. */
static void restore_lock(struct redis_store *rs, const struct lookup_req *req)
{
	const char *holder = rs->seen_holder, *run = strstr(holder, " run=");
	char old_run[48] = "";

	if (!req->awaited || !run || sscanf(run + 5, "%40[0-9a-fA-F]", old_run) != 1 ||
	    rs->seen_pttl_ms <= 0 || identity(rs) < 0 || !rs->run_id[0] ||
	    strcmp(old_run, rs->run_id) == 0)
		return;
	const char *cid = strstr(holder, " cid=");
	struct buf lock = {0}, value = {0};
	buf_append(&value, holder,
		   cid && cid < run ? (size_t)(cid - holder) : (size_t)(run - holder));
	redis_name(&lock, rs->ns, req->key, req->key_len, ":lock");
	char pttl[24];
	snprintf(pttl, sizeof(pttl), "%lld", (long long)rs->seen_pttl_ms);
	const char *argv[6] = {"SET", lock.data, value.data, "PX", pttl, "NX"};
	size_t lens[6] = {3, lock.len, value.len, 2, strlen(pttl), 2};
	redisReply *r = raw_command(rs, rs->c, 6, argv, lens);
	if (r && r->type == REDIS_REPLY_STATUS)
		log_verbose(
			"the server restarted: put the lock of the awaited leader back for %s ms",
			pttl);
	freeReplyObject(r);
	buf_free(&lock);
	buf_free(&value);
	rs->seen_holder[0] = '\0';
}

/* renew (and re-stamp) the lock of key; see redis_renew */
static int renew_once(struct redis_store *rs, const char *key, size_t key_len, const char *token,
		      int64_t lease_ms);

static void no_piece(void *ctx, const char *p, size_t n)
{
	(void)ctx;
	(void)p;
	(void)n;
}

/* read the reply a carried wake-up holds (after its token) into er: whether
 * it is one whole reply, and nothing after it */
static bool read_carried(struct resp_reader *rd, const struct buf *carried, struct entry_reply *er)
{
	size_t n = carried->len - TOKEN_LEN;

	resp_reader_init(rd, NULL, NULL);
	memset(er->res, 0, sizeof(*er->res));
	return resp_feed(rd, carried->data + TOKEN_LEN, n) == n && entry_reply_read(rd, er) == 0 &&
	       rd->pos == rd->len;
}

/* A waiter's lookup answered by the wake-up that carried its leader's
 * result (keep_carried, finish.lua), with no round trip: true with res
 * and sink as a lookup's 'done' reply fills them; false when no wake-up
 * carried one for the awaited leader (look up as usual). The reply is read
 * twice: the first time to nowhere, to see that it is whole and a 'done'
 * one before any byte reaches the sink. */
static bool carried_result(struct redis_store *rs, const struct lookup_req *req, struct lookup *res,
			   struct sink *sink)
{
	struct buf *carried = &rs->carried;

	if (!req->awaited || carried->len <= TOKEN_LEN ||
	    memcmp(carried->data, req->awaited, TOKEN_LEN) != 0)
		return false;
	struct resp_reader *rd = rs->carry_reader; /* there: carried is kept after a watch */
	struct entry_reply er = {
		.res = res, .inline_max = CARRY_MAX, .out = no_piece, .err = no_piece};
	bool ok = read_carried(rd, carried, &er) && res->verdict == VERDICT_DONE && !er.big;
	if (ok) {
		er = entry_reply_to(res, sink);
		er.inline_max = CARRY_MAX;
		ok = read_carried(rd, carried, &er);
	}
	carried->len = 0;
	if (!ok)
		memset(res, 0, sizeof(*res));
	/* a stored result (its run id is there) is a hit, as a lookup of it
	 * would have counted; a round's only result is not */
	rs->carried_hit = rs->carried_hit || (ok && er.rid[0]);
	return ok;
}

static int redis_lookup(struct store *s, const struct lookup_req *req, struct lookup *res,
			struct sink *sink)
{
	struct redis_store *rs = to_redis(s);
	struct buf entry = {0}, lock = {0}, done = {0}, lock_value = {0};
	struct script_call sc = {.script = &lua_lookup, .nkeys = 4};
	struct entry_reply er = entry_reply_to(res, sink);
	struct buf tags[MAX_TAGS] = {{0}};
	int ntags = req->ntags < MAX_TAGS ? req->ntags : MAX_TAGS;
	char lease[24], beta[ENTRY_XFETCH_ARG_MAX], draw[ENTRY_XFETCH_ARG_MAX];

	memset(res, 0, sizeof(*res));
	if (carried_result(rs, req, res, sink))
		return 0;
	use_key_slot(rs, req->key, req->key_len);
	redis_name(&entry, rs->ns, req->key, req->key_len, "");
	redis_name(&lock, rs->ns, req->key, req->key_len, ":lock");
	redis_name(&done, rs->ns, req->key, req->key_len, ":done:");
	buf_append(&done, req->awaited ? req->awaited : "-", req->awaited ? TOKEN_LEN : 1);
	buf_append(&lock_value, req->token, strlen(req->token));
	buf_append(&lock_value, rs->lock_value_suffix, strlen(rs->lock_value_suffix));
	dec_u64(lease, (uint64_t)req->lease_ms);
	entry_xfetch_args(req->beta, req->rand, beta, draw);
	call_push(&sc, entry.data, entry.len);
	call_push(&sc, lock.data, lock.len);
	call_push(&sc, done.data, done.len);
	call_push(&sc, rs->stats_key.data, rs->stats_key.len);
	rs->tags = req->tags;
	rs->ntags = ntags;
	push_tag_keys(&sc, tags, rs, req->tags, ntags, run_set_name);
	call_push_str(&sc, req->token);
	call_push_str(&sc, lease);
	call_push(&sc, lock_value.data, lock_value.len);
	call_push_str(&sc, req->awaited ? "1" : "0");
	call_push_str(&sc, req->force ? "1" : "0");
	call_push_str(&sc, beta);
	call_push_str(&sc, draw);
	call_push(&sc, req->key, req->key_len);
	bool locked = false; /* an attempt took the lock for a refresh, or took it over */
	bool took_over = false;
	struct retry rt = {0};
	int rc;
	for (int attempt = 1;; attempt++) {
		er = entry_reply_to(res, sink);
		rc = stream_script(rs, &sc, entry_reply_read, &er);
		if (rc == 0 && strcmp(er.verdict, "none") == 0) {
			err_set("the store's lookup reply is malformed");
			rc = -1;
		}
		if (rc < 0 && !sink->partial && again(rs, &rt)) {
			/* nothing reached the caller: look again (see "connections that break") */
			restore_lock(rs, req);
			memset(res, 0, sizeof(*res));
			continue;
		}
		/* a new holder is judged at once; the same one every
		 * HOLDER_POLL_MS, by redis_wait */
		bool judge = rc == 0 && res->verdict == VERDICT_WAIT &&
			     (strcmp(er.holder, rs->seen_holder) != 0 || !rs->waited);
		if (rc == 0 && res->verdict == VERDICT_WAIT) {
			rs->waited = false;
			snprintf(rs->seen_holder, sizeof(rs->seen_holder), "%s", er.holder);
			rs->seen_pttl_ms = res->lease_left_ms;
		}
		if (judge && !took_over && holder_gone(rs, er.holder) > 0) {
			/* the holder's connection is gone: no need to wait out its lease */
			int t = take_over(rs, req, er.holder);
			if (t == 1) {
				log_verbose(
					"key: the lock's holder is gone (%.*s); took the lock over",
					(int)strcspn(er.holder, " "), er.holder);
				took_over = locked = true;
				memset(res, 0, sizeof(*res));
				continue;
			}
		}
		if (rc < 0 || !er.big)
			break;
		locked = locked || res->refresh;
		rc = fetch_big(rs, res->verdict == VERDICT_DONE ? &done : &entry, &res->meta,
			       er.rid, sink);
		if (rc < 0 && !sink->partial && again(rs, &rt)) {
			memset(res, 0, sizeof(*res));
			continue;
		}
		if (rc != 0)
			break;
		if ((rc = replaced_too_often(attempt)) < 0)
			break;
		/* another run replaced the entry: look again, from the start */
		memset(res, 0, sizeof(*res));
	}
	rc = rc < 0 ? -1 : 0;
	/* a lock an earlier attempt took, that this one does not use, goes back */
	if (locked && (rc < 0 || (!res->refresh && res->verdict != VERDICT_LEAD)))
		redis_abandon(s, req->key, req->key_len, req->token, ABANDON_INTERRUPTED, 0);
	if (rc == 0 && (res->verdict == VERDICT_LEAD || res->refresh)) {
		rs->holding = true;
		rs->held_lease_ms = req->lease_ms;
		rs->held_key.len = 0;
		buf_append(&rs->held_key, req->key, req->key_len);
		snprintf(rs->held_token, sizeof(rs->held_token), "%s", req->token);
		rs->held_run[0] = '\0';
		/* a leader names its connection in the lock, so that waiters see
		 * at once when it is gone; a refresh does it from the process
		 * that runs it (redis_after_fork). Best effort: without it the
		 * lease decides. */
		if (res->verdict == VERDICT_LEAD && identity(rs) == 0)
			renew_once(rs, req->key, req->key_len, req->token, req->lease_ms);
	}
	buf_free(&entry);
	buf_free(&lock);
	buf_free(&done);
	buf_free(&lock_value);
	free_names(tags, ntags);
	return rc;
}

/* Listen on key's wake channel. A waiter that cannot (an ACL user without
 * SUBSCRIBE or the channels, a server out of connections) polls instead:
 * wait then sleeps to the next look, and the single flight still holds,
 * only the wake-up is up to a poll interval late. Silent: ping names the
 * missing permission. */
static int subscribe(struct redis_store *rs)
{
	rs->sub = connect_one(rs, 0);
	if (!rs->sub)
		return 0;
	const char *argv[2] = {"SUBSCRIBE", rs->sub_channel.data};
	size_t lens[2] = {9, rs->sub_channel.len};
	redisReply *r = command(rs, rs->sub, 2, argv, lens);
	if (!r) {
		conn_free(rs->sub);
		rs->sub = NULL;
		return 0;
	}
	freeReplyObject(r);
	return 0;
}

static void ready_for_carried(struct redis_store *rs);

static int redis_watch(struct store *s, const char *key, size_t key_len)
{
	struct redis_store *rs = to_redis(s);

	if (rs->sub)
		return 0;
	redis_name(&rs->sub_channel, rs->ns, key, key_len, ":wake");
	ready_for_carried(rs);
	return subscribe(rs);
}

/* A carried reply is longer than the values it carries by at most this:
 * its framing and metadata (ENTRY_NFIELDS fields, each shorter than
 * ENTRY_HOST_MAX). Whole, it fits a reader's buffer. */
#define CARRIED_META_MAX 8192
_Static_assert(TOKEN_LEN + CARRY_MAX + CARRIED_META_MAX <= sizeof(((struct resp_reader *)0)->buf),
	       "a carried wake-up fits a reader's buffer");

/* Make, before the wait, what reading a wake-up that carries a result
 * needs (carried_result): its buffer and its reader, their pages touched
 * now. When hundreds of waiters on a host wake at once, every page one of
 * them first touches after its wake-up (a page fault, some 20 us on the
 * 2-core machine of bench/RESULTS.md) delays all the waiters behind it;
 * before the wait, it delays nobody. */
static void ready_for_carried(struct redis_store *rs)
{
	size_t most = TOKEN_LEN + CARRY_MAX + CARRIED_META_MAX;

	if (rs->carry_reader)
		return;
	rs->carry_reader = xmalloc(sizeof(*rs->carry_reader));
	memset(rs->carry_reader->buf, 0, most);
	buf_append(&rs->carried, rs->carry_reader->buf, most);
	rs->carried.len = 0;
}

/* the wake-up a message on the subscription is, if it carries a result:
 * keep it in carried for the next lookup (carried_result) */
static void keep_carried(struct redis_store *rs, const redisReply *msg)
{
	if (msg->type != REDIS_REPLY_ARRAY || msg->elements != 3 || !is_string(msg->element[2]))
		return;
	const redisReply *body = msg->element[2];
	/* a bare token only wakes; the reply after it fits a reader's buffer */
	if (body->len <= TOKEN_LEN || body->len > CARRY_MAX + CARRIED_META_MAX)
		return;
	rs->carried.len = 0;
	buf_append(&rs->carried, body->str, body->len);
}

/* read every message already buffered on the subscription, keeping the
 * last that carried a result */
static int drain_messages(struct redis_store *rs)
{
	redisReply *msg;
	int rc;

	while ((rc = conn_buffered_reply(rs->sub, &msg)) > 0) {
		keep_carried(rs, msg);
		freeReplyObject(msg);
	}
	return rc;
}

/* how often a waiter on Redis asks whether the holder's connection is
 * gone: four commands a second with the lookups, under the bench's five */
#define HOLDER_POLL_MS 330

static int redis_wait_once(struct redis_store *rs, int64_t timeout_ms);

static int redis_wait(struct store *s, int64_t timeout_ms)
{
	struct redis_store *rs = to_redis(s);
	int n;

	if (timeout_ms < 0)
		timeout_ms = 0;
	/* Every HOLDER_POLL_MS, ask whether the holder's connection is still
	 * there (one CLIENT LIST ID, cheaper than a lookup): a killed leader
	 * costs its waiters a third of a second, not its lease. The lookup
	 * after we return takes the lock over. */
	int64_t end = monotonic_ms() + timeout_ms;
	while (timeout_ms > HOLDER_POLL_MS * 3 / 2 && rs->seen_holder[0]) {
		n = redis_wait_once(rs, HOLDER_POLL_MS);
		if (n != 0)
			return n;
		if (holder_gone(rs, rs->seen_holder) != 0) {
			/* gone, or the connection failed: look now, and let
			 * the lookup judge it again and take over */
			rs->waited = false;
			return 1;
		}
		rs->waited = true;
		timeout_ms = end - monotonic_ms();
	}
	return redis_wait_once(rs, timeout_ms < 0 ? 0 : timeout_ms);
}

/* redis_wait without the holder's checks */
static int redis_wait_once(struct redis_store *rs, int64_t timeout_ms)
{
	int n;

	if (!rs->sub && rs->sub_channel.len && monotonic_ms() >= rs->resubscribe_at) {
		/* the subscription broke (a restart): listen again; the
		 * lookup after this wait finds anything said meanwhile */
		rs->resubscribe_at = monotonic_ms() + 1000;
		subscribe(rs);
		return 1;
	}
	if (rs->sub) {
		n = conn_wait_input(rs->sub, timeout_ms);
	} else {
		/* without a subscription (see redis_watch) this only sleeps */
		n = poll(NULL, 0, timeout_ms > 60000 ? 60000 : (int)timeout_ms);
	}
	if (n < 0) {
		if (errno == EINTR)
			return 1; /* a signal: let the caller look again */
		err_set("poll: %s", strerror(errno));
		return -1;
	}
	if (n == 0)
		return 0;
	if (conn_read_ready(rs->sub) < 0 || drain_messages(rs) < 0) {
		/* the subscription broke: poll from now on; the next lookup
		 * tells whether the server itself is gone */
		conn_free(rs->sub);
		rs->sub = NULL;
		return 1;
	}
	return 1;
}

/* whether the server restarted (or failed over) since our lock was last
 * ours: then a lock that is gone went with the old server's memory, not
 * by invalidate or expiry, and it is ours to take back (renew.lua) */
static bool server_changed(struct redis_store *rs)
{
	return rs->holding && rs->held_run[0] && identity(rs) == 0 && rs->run_id[0] &&
	       strcmp(rs->run_id, rs->held_run) != 0;
}

/* after the lock was found ours: remember on which server lifetime */
static void held_on(struct redis_store *rs)
{
	if (rs->identified)
		snprintf(rs->held_run, sizeof(rs->held_run), "%s", rs->run_id);
}

static int renew_once(struct redis_store *rs, const char *key, size_t key_len, const char *token,
		      int64_t lease_ms)
{
	struct buf lock = {0}, value = {0}, tags[MAX_TAGS] = {{0}};
	struct script_call sc = {.script = &lua_renew, .nkeys = 1};
	char lease[24];

	bool retake = server_changed(rs);
	snprintf(lease, sizeof(lease), "%lld", (long long)lease_ms);
	use_key_slot(rs, key, key_len);
	redis_name(&lock, rs->ns, key, key_len, ":lock");
	lock_value(rs, &value, token);
	call_push(&sc, lock.data, lock.len);
	push_tag_keys(&sc, tags, rs, rs->tags, rs->ntags, run_set_name);
	call_push_str(&sc, token);
	call_push_str(&sc, lease);
	call_push(&sc, key, key_len);
	call_push(&sc, value.data, value.len);
	call_push_str(&sc, retake ? "1" : "0");
	int rc = integer_reply(call_script(rs, &sc));
	if (rc >= 0)
		forget_old(rs);
	if (rc == 1) {
		if (retake)
			log_verbose("the lock went with a restart of the server; took it back");
		held_on(rs);
	}
	buf_free(&lock);
	buf_free(&value);
	free_names(tags, rs->ntags);
	return rc;
}

/* renew, on a new connection if ours broke: a leader's lock outlives a
 * Redis restart when nobody took it meanwhile */
static int redis_renew(struct store *s, const char *key, size_t key_len, const char *token,
		       int64_t lease_ms)
{
	struct redis_store *rs = to_redis(s);
	struct retry rt = {0};
	int rc;

	while ((rc = renew_once(rs, key, key_len, token, lease_ms)) < 0 && again(rs, &rt))
		;
	return rc;
}

static int abandon_once(struct redis_store *rs, const char *key, size_t key_len, const char *token,
			enum abandon_reason why, int64_t backoff_ms)
{
	struct buf lock = {0}, channel = {0}, done = {0}, entry = {0}, runs[MAX_TAGS] = {{0}};
	struct script_call sc = {.script = &lua_abandon, .nkeys = 4};
	char mark_ms[24] = "", backoff[24] = "";

	use_key_slot(rs, key, key_len);
	redis_name(&lock, rs->ns, key, key_len, ":lock");
	redis_name(&channel, rs->ns, key, key_len, ":wake");
	redis_name(&done, rs->ns, key, key_len, ":done:");
	buf_append(&done, token, TOKEN_LEN);
	redis_name(&entry, rs->ns, key, key_len, "");
	call_push(&sc, lock.data, lock.len);
	call_push(&sc, rs->stats_key.data, rs->stats_key.len);
	call_push(&sc, done.data, done.len);
	call_push(&sc, entry.data, entry.len);
	push_tag_keys(&sc, runs, rs, rs->tags, rs->ntags, run_set_name);
	call_push_str(&sc, token);
	call_push(&sc, channel.data, channel.len);
	int counter = abandon_counter(why);
	call_push_str(&sc, counter >= 0 ? stat_names[counter] : "");
	call_push(&sc, key, key_len);
	/* the round's waiters run COMMAND themselves (VERDICT_BYPASS) */
	if (why == ABANDON_TOO_LARGE)
		snprintf(mark_ms, sizeof(mark_ms), "%d", BYPASS_MARK_MS);
	call_push_str(&sc, mark_ms);
	/* the callers after us serve the entry at once for a while (lookup.lua) */
	if (why == ABANDON_REFRESH_FAILED && backoff_ms > 0)
		snprintf(backoff, sizeof(backoff), "%lld", (long long)backoff_ms);
	call_push_str(&sc, backoff);
	int rc = integer_reply(call_script(rs, &sc));
	buf_free(&lock);
	buf_free(&channel);
	buf_free(&done);
	buf_free(&entry);
	free_names(runs, rs->ntags);
	return rc < 0 ? -1 : 0;
}

static int redis_abandon(struct store *s, const char *key, size_t key_len, const char *token,
			 enum abandon_reason why, int64_t backoff_ms)
{
	struct redis_store *rs = to_redis(s);
	struct retry rt = {0};
	int rc;

	while ((rc = abandon_once(rs, key, key_len, token, why, backoff_ms)) < 0 && again(rs, &rt))
		;
	rs->holding = false;
	forget_old(rs);
	return rc;
}

static int read_integer_reply(struct resp_reader *rd, void *ctx)
{
	return resp_number(rd, ':', ctx);
}

/* how long a staged result may wait for its finish script */
#define STAGE_TTL_MS "60000"

/* the most arguments entry_fields() makes */
#define ENTRY_ARGS (2 * ENTRY_NFIELDS + 8)

/* The whole result as the field and value arguments of an HSET, into args
 * (ENTRY_ARGS at most), the values as the spool files' bytes; f holds the
 * metadata's text. How many. */
static int entry_fields(struct resp_arg *args, struct entry_field f[ENTRY_NFIELDS],
			const char *token, const struct result *res)
{
	int n = 0;

	entry_meta_encode(&res->meta, f);
	for (int i = 0; i < ENTRY_NFIELDS; i++) {
		args[n++] = (struct resp_arg){.p = f[i].name, .len = strlen(f[i].name), .fd = -1};
		args[n++] = (struct resp_arg){.p = f[i].value, .len = strlen(f[i].value), .fd = -1};
	}
	/* the command, for inspect and list only: no hit reads it */
	if (res->meta.cmd[0]) {
		args[n++] = (struct resp_arg){
			.p = ENTRY_CMD_FIELD, .len = strlen(ENTRY_CMD_FIELD), .fd = -1};
		args[n++] = (struct resp_arg){
			.p = res->meta.cmd, .len = strlen(res->meta.cmd), .fd = -1};
	}
	/* the run id: a reader of a large entry checks its bytes are this run's */
	args[n++] = (struct resp_arg){.p = FIELD_RUN_ID, .len = sizeof(FIELD_RUN_ID) - 1, .fd = -1};
	args[n++] = (struct resp_arg){.p = token, .len = TOKEN_LEN, .fd = -1};
	args[n++] = (struct resp_arg){.p = FIELD_OUT, .len = sizeof(FIELD_OUT) - 1, .fd = -1};
	args[n++] = (struct resp_arg){.len = res->meta.out_len, .fd = res->out_fd};
	args[n++] = (struct resp_arg){.p = FIELD_ERR, .len = sizeof(FIELD_ERR) - 1, .fd = -1};
	args[n++] = res->err_fd >= 0
			    ? (struct resp_arg){.len = res->meta.err_len, .fd = res->err_fd}
			    : (struct resp_arg){.p = "", .len = 0, .fd = -1};
	return n;
}

/* Write the whole result, bytes included, to the stage key with one HSET,
 * the values streamed from the spool files, then give the stage a TTL so a
 * leader that dies here leaves nothing behind for long. */
static int write_stage(struct redis_store *rs, const struct buf *stage, const char *token,
		       const struct result *res)
{
	struct entry_field f[ENTRY_NFIELDS];
	struct resp_arg args[2 + ENTRY_ARGS];
	int64_t reply;

	args[0] = (struct resp_arg){.p = "HSET", .len = 4, .fd = -1};
	args[1] = (struct resp_arg){.p = stage->data, .len = stage->len, .fd = -1};
	int n = 2 + entry_fields(args + 2, f, token, res);
	if (plain_command(rs, args, n, read_integer_reply, &reply) < 0)
		return -1;
	struct resp_arg expire[3] = {
		{.p = "PEXPIRE", .len = 7, .fd = -1},
		{.p = stage->data, .len = stage->len, .fd = -1},
		{.p = STAGE_TTL_MS, .len = strlen(STAGE_TTL_MS), .fd = -1},
	};
	return plain_command(rs, expire, 3, read_integer_reply, &reply);
}

/* A result of at most CARRY_MAX stored bytes goes to the finish script
 * itself, which writes the stage: one round trip from COMMAND's exit to
 * the wake-up instead of three (the stage's HSET and PEXPIRE, then the
 * script). Larger ones are staged with plain commands, streamed, for
 * values that size cost seconds to pass through Lua. */
static bool finish_inline(const struct result *res)
{
	return res->meta.out_len + res->meta.err_len <= CARRY_MAX;
}

static int finish_once(struct redis_store *rs, const char *key, size_t key_len, const char *token,
		       const struct result *res)
{
	struct buf entry = {0}, lock = {0}, done = {0}, channel = {0}, stage = {0};
	struct script_call sc = {.script = &lua_finish, .nkeys = 5};
	struct buf tags[MAX_TAGS] = {{0}}, runs[MAX_TAGS] = {{0}};
	int ntags = res->ntags < MAX_TAGS ? res->ntags : MAX_TAGS;
	char ntags_arg[16], nfields[16];
	char expiry[24], handoff[24];
	struct entry_field f[ENTRY_NFIELDS];
	struct resp_arg fields[ENTRY_ARGS];
	int n = 0;
	int64_t stored = -1;

	int64_t expiry_ms = entry_lifetime(&res->meta);
	snprintf(expiry, sizeof(expiry), "%lld", (long long)(expiry_ms > 0 ? expiry_ms : 1));
	snprintf(handoff, sizeof(handoff), "%lld", (long long)res->handoff_ms);
	use_key_slot(rs, key, key_len);
	redis_name(&entry, rs->ns, key, key_len, "");
	redis_name(&lock, rs->ns, key, key_len, ":lock");
	redis_name(&done, rs->ns, key, key_len, ":done:");
	buf_append(&done, token, TOKEN_LEN);
	redis_name(&stage, rs->ns, key, key_len, ":stage:");
	buf_append(&stage, token, TOKEN_LEN);
	redis_name(&channel, rs->ns, key, key_len, ":wake");
	int rc = 0;
	if (finish_inline(res))
		n = entry_fields(fields, f, token, res);
	else if ((rc = write_stage(rs, &stage, token, res)) < 0)
		goto out;
	call_push(&sc, entry.data, entry.len);
	call_push(&sc, lock.data, lock.len);
	call_push(&sc, done.data, done.len);
	call_push(&sc, rs->stats_key.data, rs->stats_key.len);
	call_push(&sc, stage.data, stage.len);
	push_tag_keys(&sc, tags, rs, res->tags, ntags, tag_name);
	push_tag_keys(&sc, runs, rs, res->tags, ntags, run_set_name);
	snprintf(ntags_arg, sizeof(ntags_arg), "%d", ntags);
	call_push_str(&sc, token);
	call_push_str(&sc, res->cacheable ? "1" : "0");
	call_push_str(&sc, expiry);
	call_push_str(&sc, handoff);
	call_push(&sc, channel.data, channel.len);
	call_push(&sc, key, key_len);
	call_push_str(&sc, ntags_arg);
	call_push_str(&sc, server_changed(rs) ? "1" : "0");
	dec_u64(nfields, (uint64_t)n);
	call_push_str(&sc, nfields);
	for (int i = 0; i < n; i++)
		call_push_arg(&sc, fields[i]);
	rc = stream_script(rs, &sc, read_integer_reply, &stored);
out:
	buf_free(&entry);
	buf_free(&lock);
	buf_free(&done);
	buf_free(&stage);
	buf_free(&channel);
	free_names(tags, ntags);
	free_names(runs, ntags);
	return rc < 0 ? -1 : stored == 1;
}

/* finish, on a new connection if ours broke (the spools are read from
 * their start again) */
static int redis_finish(struct store *s, const char *key, size_t key_len, const char *token,
			const struct result *res)
{
	struct redis_store *rs = to_redis(s);
	struct retry rt = {0};
	int rc;

	for (;;) {
		rc = finish_once(rs, key, key_len, token, res);
		if (rc >= 0 || !again(rs, &rt))
			break;
		if (lseek(res->out_fd, 0, SEEK_SET) < 0 ||
		    (res->err_fd >= 0 && lseek(res->err_fd, 0, SEEK_SET) < 0)) {
			err_set("cannot read the spooled result again: %s", strerror(errno));
			break;
		}
	}
	if (rc >= 0) {
		rs->holding = false;
		forget_old(rs);
	}
	return rc;
}

static int get_once(struct redis_store *rs, const char *key, size_t key_len, bool fresh_only,
		    struct entry_meta *meta, struct sink *sink)
{
	struct buf entry = {0};
	struct script_call sc = {.script = &lua_get, .nkeys = 1};
	struct lookup res = {0};
	struct entry_reply er = entry_reply_to(&res, sink);

	redis_name(&entry, rs->ns, key, key_len, "");
	call_push(&sc, entry.data, entry.len);
	call_push_str(&sc, fresh_only ? "1" : "0");
	int rc;
	for (int attempt = 1;; attempt++) {
		er = entry_reply_to(&res, sink);
		rc = stream_script(rs, &sc, entry_reply_read, &er);
		if (rc < 0 || !er.big || strcmp(er.verdict, "none") == 0)
			break;
		rc = fetch_big(rs, &entry, &res.meta, er.rid, sink);
		if (rc != 0)
			break;
		if ((rc = replaced_too_often(attempt)) < 0)
			break;
	}
	buf_free(&entry);
	if (rc < 0)
		return -1;
	if (strcmp(er.verdict, "none") == 0)
		return 0;
	if (res.verdict != VERDICT_HIT && res.verdict != VERDICT_STALE) {
		err_set("the store's get reply is malformed");
		return -1;
	}
	*meta = res.meta;
	return 1;
}

/* get, on a new connection if ours broke before a byte reached the caller */
static int redis_get(struct store *s, const char *key, size_t key_len, bool fresh_only,
		     struct entry_meta *meta, struct sink *sink)
{
	struct redis_store *rs = to_redis(s);
	struct retry rt = {0};
	int rc;

	while ((rc = get_once(rs, key, key_len, fresh_only, meta, sink)) < 0 && !sink->partial &&
	       again(rs, &rt))
		;
	return rc;
}

static int invalidate_once(struct redis_store *rs, const char *key, size_t key_len)
{
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

/* invalidate, on a new connection if ours broke: deleting twice is
 * deleting once (a repeat whose first send ran answers 0, "absent") */
static int redis_invalidate(struct store *s, const char *key, size_t key_len)
{
	struct redis_store *rs = to_redis(s);
	struct retry rt = {0};
	int rc;

	while ((rc = invalidate_once(rs, key, key_len)) < 0 && again(rs, &rt))
		;
	return rc;
}

static void fill_info(struct entry_info *info, const struct entry_meta *meta, int64_t age)
{
	info->present = true;
	info->meta = *meta;
	info->age_ms = age;
	info->freshness = entry_freshness(meta, meta->created_ms + age);
}

static int redis_inspect(struct store *s, const char *key, size_t key_len, struct entry_info *info)
{
	struct redis_store *rs = to_redis(s);
	struct buf entry = {0}, lock = {0};
	struct script_call sc = {.script = &lua_inspect, .nkeys = 2};
	struct entry_meta meta;
	int rc = -1;

	memset(info, 0, sizeof(*info));
	redis_name(&entry, rs->ns, key, key_len, "");
	redis_name(&lock, rs->ns, key, key_len, ":lock");
	call_push(&sc, entry.data, entry.len);
	call_push(&sc, lock.data, lock.len);
	redisReply *r = call_script(rs, &sc);
	buf_free(&entry);
	buf_free(&lock);
	if (!r)
		return -1;
	redisReply **el = r->element;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 5 ||
	    el[0]->type != REDIS_REPLY_INTEGER || !is_string(el[2]) ||
	    el[3]->type != REDIS_REPLY_INTEGER || !is_string(el[4])) {
		err_set("the store's inspect reply is malformed");
		goto out;
	}
	if (el[0]->integer >= 0 && decode_meta(el[1], el[4], &meta) == 0)
		fill_info(info, &meta, el[0]->integer);
	if (el[2]->len > 0) {
		info->locked = true;
		snprintf(info->holder, sizeof(info->holder), "%.*s", (int)el[2]->len, el[2]->str);
		info->lease_left_ms = el[3]->integer;
	}
	rc = 0;
out:
	freeReplyObject(r);
	return rc;
}

/* MATCH pattern that narrows the walk to the glob's literal start: the
 * glob itself applies to user keys, and one escaped byte ("%7D") is three
 * bytes of the Redis name, so the exact match is fnmatch(3) on the user key.
 * The pattern is open after the key: it finds entries and their locks. */
static void scan_pattern(struct buf *out, const char *ns, const char *glob)
{
	size_t literal = glob ? strcspn(glob, "*?[\\") : 0;

	redis_name(out, ns, glob ? glob : "", literal, "");
	out->len--; /* drop the closing brace: the rest of the key is open */
	buf_append(out, "*", 1);
}

/* what a Redis name of the namespace is */
enum name_kind {
	NAME_OTHER, /* a round result, a stage, a tag set, the counters */
	NAME_ENTRY, /* NS:{K} */
	NAME_LOCK,  /* NS:{K}:lock */
};

/* the user key inside a Redis name NS:{K}suffix into out, and which part of
 * the entry the name is */
static enum name_kind user_key_of(struct buf *out, const char *ns, const char *name, size_t len)
{
	size_t pre = strlen(ns) + 2, i;

	out->len = 0;
	if (len < pre + 1 || memcmp(name, ns, pre - 2) != 0 || memcmp(name + pre - 2, ":{", 2) != 0)
		return NAME_OTHER;
	for (i = pre; i < len && name[i] != '}'; i++) {
		if (name[i] == '%' && i + 3 < len && memcmp(name + i, "%25", 3) == 0) {
			buf_append(out, "%", 1);
			i += 2;
		} else if (name[i] == '%' && i + 3 < len && memcmp(name + i, "%7D", 3) == 0) {
			buf_append(out, "}", 1);
			i += 2;
		} else if (name[i] == '%') {
			return NAME_OTHER; /* a tag set or the counters, not an escaped key */
		} else {
			buf_append(out, name + i, 1);
		}
	}
	if (!out->data)
		buf_append(out, "", 0);
	if (i == len - 1)
		return NAME_ENTRY;
	if (i + 6 == len && memcmp(name + i, "}:lock", 6) == 0)
		return NAME_LOCK;
	return NAME_OTHER;
}

/* server time in ms from a TIME reply; -1 if malformed */
static int64_t time_reply_ms(const redisReply *t)
{
	if (!t || t->type != REDIS_REPLY_ARRAY || t->elements != 2 || !is_string(t->element[0]) ||
	    !is_string(t->element[1]))
		return -1;
	return strtoll(t->element[0]->str, NULL, 10) * 1000 +
	       strtoll(t->element[1]->str, NULL, 10) / 1000;
}

/* One SCAN batch: report every lock whose key matches glob, then pipeline
 * TIME and an HMGET of every entry whose key matches and report each that
 * decodes; 0, 1 when fn asked to stop, or -1. */
static int list_batch(struct redis_store *rs, redisReply *names, const char *glob, list_fn fn,
		      void *ctx)
{
	/* the META fields, then the command */
	static const char *const hmget[] = {"HMGET", NULL,
					    ENTRY_META_LIST(POLICY_STRING) ENTRY_CMD_FIELD};
	const size_t nargs = sizeof(hmget) / sizeof(hmget[0]);
	struct buf user = {0};
	size_t *entries = xcalloc(names->elements + 1, sizeof(*entries)), nentries = 0;
	int rc = 0;

	for (size_t i = 0; i < names->elements; i++) {
		redisReply *n = names->element[i];
		if (!is_string(n))
			continue;
		enum name_kind kind = user_key_of(&user, rs->ns, n->str, n->len);
		/* keys hold no NUL, so the user key reads as a C string for fnmatch */
		if (kind == NAME_OTHER || (glob && fnmatch(glob, user.data, 0) != 0))
			continue;
		if (kind == NAME_ENTRY) {
			entries[nentries++] = i;
			continue;
		}
		struct entry_info lock = {.locked = true, .lease_left_ms = -1};
		if (rc == 0 && fn(ctx, user.data, user.len, &lock))
			rc = 1;
	}
	/* one deadline for the whole pipeline, with room for each reply (the
	 * numbers, host and command) */
	int64_t deadline =
		deadline_for(rs, (uint64_t)nentries * (ENTRY_HOST_MAX + ENTRY_CMD_MAX + 512));
	if (rc != 0 || nentries == 0)
		goto out;
	const char *time_argv[1] = {"TIME"};
	size_t time_len[1] = {4};
	if (!rs->c->err)
		conn_append(rs->c, 1, time_argv, time_len);
	for (size_t e = 0; e < nentries && !rs->c->err; e++) {
		redisReply *n = names->element[entries[e]];
		const char *argv[sizeof(hmget) / sizeof(hmget[0])];
		size_t lens[sizeof(hmget) / sizeof(hmget[0])];
		for (size_t j = 0; j < nargs; j++) {
			argv[j] = j == 1 ? n->str : hmget[j];
			lens[j] = j == 1 ? n->len : strlen(hmget[j]);
		}
		conn_append(rs->c, nargs, argv, lens);
	}
	redisReply *t = exchange(rs, rs->c, deadline);
	if (!t) {
		rc = -1;
		goto out;
	}
	int64_t now = time_reply_ms(t);
	freeReplyObject(t);
	for (size_t e = 0; e < nentries; e++) {
		struct entry_meta meta;
		struct entry_info info = {0};
		redisReply *m = exchange(rs, rs->c, deadline);
		if (!m) {
			rc = -1;
			break;
		}
		redisReply *n = names->element[entries[e]];
		if (rc == 0 && now >= 0 && m->type == REDIS_REPLY_ARRAY &&
		    m->elements == ENTRY_NFIELDS + 1 &&
		    decode_meta(m, m->element[ENTRY_NFIELDS], &meta) == 0 &&
		    user_key_of(&user, rs->ns, n->str, n->len) == NAME_ENTRY) {
			int64_t age = now > meta.created_ms ? now - meta.created_ms : 0;
			fill_info(&info, &meta, age);
			if (info.freshness != ENTRY_EXPIRED && fn(ctx, user.data, user.len, &info))
				rc = 1; /* keep reading the pipelined replies, report no more */
		}
		freeReplyObject(m);
	}
out:
	free(entries);
	buf_free(&user);
	return rc;
}

/* One step of a SCAN-family walk: send the command (whose cursor argument
 * is cursor), check the reply, and move cursor on. The reply, whose
 * element[1] is the batch, or NULL with err_set(); the caller frees it. */
static redisReply *scan_step(struct redis_store *rs, int argc, const char **argv,
			     const size_t *lens, char cursor[32])
{
	/* the names found may have sent c to other nodes meanwhile */
	if (rs->scan_host && go_to_node(rs, rs->scan_host, rs->scan_port) < 0)
		return NULL;
	redisReply *r = command(rs, rs->c, argc, argv, lens);

	if (!r)
		return NULL;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !is_string(r->element[0]) ||
	    r->element[1]->type != REDIS_REPLY_ARRAY) {
		err_set("the store's %s reply is malformed", argv[0]);
		freeReplyObject(r);
		return NULL;
	}
	snprintf(cursor, 32, "%.*s", (int)r->element[0]->len, r->element[0]->str);
	return r;
}

struct list_walk {
	const struct buf *pattern;
	const char *glob;
	list_fn fn;
	void *ctx;
};

/* list the entries of the server c is on */
static int list_here(struct redis_store *rs, void *arg)
{
	const struct list_walk *w = arg;
	char cursor[32] = "0";
	int rc = 0;

	do {
		const char *argv[6] = {"SCAN", cursor, "MATCH", w->pattern->data, "COUNT", "1000"};
		size_t lens[6] = {4, strlen(cursor), 5, w->pattern->len, 5, 4};
		redisReply *r = scan_step(rs, 6, argv, lens, cursor);
		if (!r)
			return -1;
		rc = list_batch(rs, r->element[1], w->glob, w->fn, w->ctx);
		freeReplyObject(r);
	} while (rc == 0 && strcmp(cursor, "0") != 0);
	return rc;
}

static int redis_list(struct store *s, const char *glob, list_fn fn, void *ctx)
{
	struct redis_store *rs = to_redis(s);
	struct buf pattern = {0};

	scan_pattern(&pattern, rs->ns, glob);
	struct list_walk w = {&pattern, glob, fn, ctx};
	int rc = each_primary(rs, list_here, &w);
	buf_free(&pattern);
	return rc < 0 ? -1 : 0;
}

struct scan {
	const struct buf *pattern;
	const char *type;
	int (*fn)(struct redis_store *, const char *, size_t, void *);
	void *ctx;
};

/* the scan on the server c is on */
static int scan_here(struct redis_store *rs, void *arg)
{
	const struct scan *sc = arg;
	char cursor[32] = "0";
	int rc = 0;

	do {
		const char *argv[8] = {"SCAN",  cursor, "MATCH", sc->pattern->data,
				       "COUNT", "1000", "TYPE",  sc->type};
		size_t lens[8] = {4, strlen(cursor),  5, sc->pattern->len, 5, 4,
				  4, strlen(sc->type)};
		redisReply *r = scan_step(rs, 8, argv, lens, cursor);
		if (!r)
			return -1;
		redisReply *names = r->element[1];
		for (size_t i = 0; i < names->elements && rc == 0; i++)
			if (is_string(names->element[i]))
				rc = sc->fn(rs, names->element[i]->str, names->element[i]->len,
					    sc->ctx);
		freeReplyObject(r);
	} while (rc == 0 && strcmp(cursor, "0") != 0);
	return rc;
}

/* Call fn with every name of type type (a set, a hash) that matches the
 * SCAN pattern, on every primary, until it returns non-zero; 0 (fn's stop
 * included), or -1 with err_set(). */
static int scan_each(struct redis_store *rs, const struct buf *pattern, const char *type,
		     int (*fn)(struct redis_store *, const char *, size_t, void *), void *ctx)
{
	struct scan sc = {pattern, type, fn, ctx};

	return each_primary(rs, scan_here, &sc) < 0 ? -1 : 0;
}

/* append the n bytes at p to a SCAN pattern, its glob characters escaped */
static void append_glob_literal(struct buf *out, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (strchr("*?[]\\", p[i]))
			buf_append(out, "\\", 1);
		buf_append(out, p + i, 1);
	}
}

/* the SCAN pattern of every slot's tag sets (what "tag") or run sets ("run")
 * whose escaped tag name is the n bytes at p, then "*" when open */
static void tag_pattern(struct buf *out, const char *ns, const char *what, const char *p, size_t n,
			bool open)
{
	struct buf escaped = {0};

	append_escaped(&escaped, p, n);
	out->len = 0;
	/* NS:{%W}: the namespace has no glob character (options.c) */
	buf_appendf(out, "%s:{%%*}:%s:", ns, what);
	append_glob_literal(out, escaped.data, escaped.len);
	if (open)
		buf_append(out, "*", 1);
	buf_free(&escaped);
}

/* the tag name of a Redis name NS:{%W}:tag:escaped tag into out; 0 when the
 * name is not one */
static int tag_of(struct buf *out, const char *ns, const char *name, size_t len)
{
	size_t pre = strlen(ns) + 3, i;
	const char *end = name + len;

	out->len = 0;
	if (len < pre + 1 || memcmp(name, ns, pre - 3) != 0 ||
	    memcmp(name + pre - 3, ":{%", 3) != 0)
		return 0;
	const char *close = memchr(name + pre, '}', len - pre);
	if (!close || (size_t)(end - close) < 6 || memcmp(close, "}:tag:", 6) != 0)
		return 0;
	for (i = (size_t)(close + 6 - name); i < len; i++) {
		if (name[i] == '}' || name[i] == '\0')
			return 0;
		if (name[i] != '%') {
			buf_append(out, name + i, 1);
			continue;
		}
		if (i + 3 > len)
			return 0;
		if (memcmp(name + i, "%25", 3) == 0)
			buf_append(out, "%", 1);
		else if (memcmp(name + i, "%7D", 3) == 0)
			buf_append(out, "}", 1);
		else
			return 0;
		i += 2;
	}
	return out->len > 0;
}

struct tags_walk {
	const char *glob;
	tag_fn fn;
	void *ctx;
	struct buf tag;
};

static int tag_found(struct redis_store *rs, const char *name, size_t len, void *ctx)
{
	struct tags_walk *w = ctx;

	if (tag_of(&w->tag, rs->ns, name, len) &&
	    (!w->glob || fnmatch(w->glob, w->tag.data, 0) == 0))
		return w->fn(w->ctx, w->tag.data, w->tag.len);
	return 0;
}

/* every slot's tag sets; a tag filed in many slots comes many times (the
 * caller keeps one) */
static int redis_list_tags(struct store *s, const char *glob, tag_fn fn, void *ctx)
{
	struct redis_store *rs = to_redis(s);
	struct tags_walk w = {.glob = glob, .fn = fn, .ctx = ctx};
	struct buf pattern = {0};

	/* narrowed to the glob's literal start, as scan_pattern does for keys */
	tag_pattern(&pattern, rs->ns, "tag", glob ? glob : "", glob ? strcspn(glob, "*?[\\") : 0,
		    true);
	int rc = scan_each(rs, &pattern, "set", tag_found, &w);
	buf_free(&pattern);
	buf_free(&w.tag);
	return rc;
}

/* invalidate every member of the set named set (and delete it); the count
 * of entries deleted, or -1 */
static long invalidate_members(struct store *s, const struct buf *set)
{
	struct redis_store *rs = to_redis(s);
	char cursor[32] = "0";
	long deleted = 0;

	do {
		const char *argv[5] = {"SSCAN", set->data, cursor, "COUNT", "1000"};
		size_t lens[5] = {5, set->len, strlen(cursor), 5, 4};
		redisReply *r = scan_step(rs, 5, argv, lens, cursor);
		if (!r)
			return -1;
		redisReply *members = r->element[1];
		for (size_t i = 0; i < members->elements && deleted >= 0; i++) {
			int one = s->ops->invalidate(s, members->element[i]->str,
						     members->element[i]->len);
			deleted = one < 0 ? -1 : deleted + one;
		}
		freeReplyObject(r);
	} while (deleted >= 0 && strcmp(cursor, "0") != 0);
	if (deleted >= 0) {
		const char *argv[2] = {"DEL", set->data};
		size_t lens[2] = {3, set->len};
		redisReply *r = command(rs, rs->c, 2, argv, lens);
		if (!r)
			deleted = -1;
		freeReplyObject(r);
	}
	return deleted;
}

static int invalidate_set(struct redis_store *rs, const char *name, size_t len, void *ctx)
{
	long *count = ctx;
	struct buf set = {0};

	buf_append(&set, name, len);
	long n = invalidate_members(&rs->base, &set);
	buf_free(&set);
	if (n < 0)
		return -1;
	*count += n;
	return 0;
}

/* the entries filed under tag, and the leaders running with it (whose
 * locks invalidate deletes: they store nothing), in every slot: the run
 * sets first, so that no leader stores after its entry was deleted */
static long redis_invalidate_tag(struct store *s, const char *tag)
{
	struct redis_store *rs = to_redis(s);
	struct buf pattern = {0};
	long count = 0;

	tag_pattern(&pattern, rs->ns, "run", tag, strlen(tag), false);
	int rc = scan_each(rs, &pattern, "set", invalidate_set, &count);
	if (rc == 0) {
		tag_pattern(&pattern, rs->ns, "tag", tag, strlen(tag), false);
		rc = scan_each(rs, &pattern, "set", invalidate_set, &count);
	}
	buf_free(&pattern);
	return rc < 0 ? -1 : count;
}

struct stats_sum {
	uint64_t *c;
	bool reset;
};

/* add the counters of one slot's hash (name) to the sum; zero them with reset */
static int add_slot_stats(struct redis_store *rs, const char *name, size_t len, void *ctx)
{
	struct stats_sum *sum = ctx;
	struct script_call sc = {.script = &lua_stats, .nkeys = 1};

	call_push(&sc, name, len);
	call_push_str(&sc, sum->reset ? "1" : "0");
	redisReply *r = call_script(rs, &sc);
	if (!r)
		return -1;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		for (int k = 0; k < STAT_COUNT; k++) {
			if (is_string(r->element[i]) &&
			    strcmp(r->element[i]->str, stat_names[k]) == 0 &&
			    is_string(r->element[i + 1]))
				sum->c[k] += strtoull(r->element[i + 1]->str, NULL, 10);
		}
	}
	freeReplyObject(r);
	return 0;
}

/* the namespace's counters: the sum of every slot's (see use_key_slot) */
static int redis_stats(struct store *s, uint64_t c[STAT_COUNT], bool reset)
{
	struct redis_store *rs = to_redis(s);
	struct stats_sum sum = {c, reset};
	struct buf pattern = {0};

	memset(c, 0, STAT_COUNT * sizeof(*c));
	buf_appendf(&pattern, "%s:{%%*}:stats", rs->ns);
	int rc = scan_each(rs, &pattern, "hash", add_slot_stats, &sum);
	buf_free(&pattern);
	return rc;
}

/* HINCRBY of counter which in the stats of the key in use, on the command
 * connection; answered: wait for the reply, else only send the command
 * (count_leaving) */
static void send_count(struct redis_store *rs, enum counter which, bool answered)
{
	/* a connection that failed would only make the caller wait again */
	if (!rs->c || rs->c->err)
		return;
	route(rs, rs->stats_key.data, rs->stats_key.len);
	if (!rs->c || rs->c->err)
		return;
	const char *argv[4] = {"HINCRBY", rs->stats_key.data, stat_names[which], "1"};
	size_t lens[4] = {7, rs->stats_key.len, strlen(stat_names[which]), 1};
	if (answered) {
		freeReplyObject(raw_command(rs, rs->c, 4, argv, lens));
		return;
	}
	conn_append(rs->c, 4, argv, lens);
	(void)conn_flush(rs->c, monotonic_ms() + rs->timeout_ms);
}

static void redis_count(struct store *s, enum counter which)
{
	send_count(to_redis(s), which, true);
}

/* A waiter that a carried result served counts its hit itself, as it
 * leaves, as its lookup would have: sent, not waited for (the server runs
 * a command it has read even when the connection closes right behind it),
 * so that it costs the waiters still to be served nothing. Counted by the
 * waiter, not by the leader for every waiter its wake-up reached: one
 * whose once-a-second lookup fell right on the wake-up was counted by that
 * lookup too. */
static void count_leaving(struct redis_store *rs, enum counter which)
{
	send_count(rs, which, false);
}

/* --- ping: every permission a run needs ----------------------------------------------- */

/* err_set() the line ping prints when the probe of cmd failed with the
 * server's text: a command renamed away, or an ACL without the command, the
 * keys or the channels, and what a run would suffer for it */
static void probe_failed(const struct redis_store *rs, const char *cmd, const char *text,
			 const char *consequence)
{
	const char *ns = rs->ns;

	if (strstr(text, "unknown command"))
		err_set("the server has no %s command (renamed or disabled): %s", cmd, consequence);
	else if (strstr(text, "NOPERM") && strstr(text, "keys"))
		err_set("the ACL user cannot access keys %s:* (add ~%s:* to it): %s", ns, ns,
			consequence);
	else if (strstr(text, "can't access") && strstr(text, "keys"))
		err_set("the ACL user cannot access keys %s:* with %s (add ~%s:* to it): %s", ns,
			cmd, ns, consequence);
	else if ((strstr(text, "NOPERM") || strstr(text, "can't")) && strstr(text, "channel"))
		err_set("the ACL user cannot run %s (channels %s:*): %s", cmd, ns, consequence);
	else if (strstr(text, "NOPERM") || strstr(text, "can't"))
		err_set("the ACL user cannot run %s: %s", cmd, consequence);
	else
		err_set("%s failed: %.300s: %s", cmd, text, consequence);
}

/* one probe: send argv on c; 0 when it ran (any reply but an error), else
 * -1 with probe_failed()'s line (or the I/O failure) */
static int probe(struct redis_store *rs, struct conn *c, int argc, const char **argv,
		 const char *consequence)
{
	size_t lens[8];

	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	redisReply *r = raw_command(rs, c, argc, argv, lens);
	if (!r)
		return -1;
	int rc = 0;
	if (r->type == REDIS_REPLY_ERROR) {
		probe_failed(rs, argv[0], r->str, consequence);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

/* The probe script (ping.lua) with EVAL, then EVALSHA: runs call EVALSHA,
 * and EVAL when the server has lost the script (a restart, SCRIPT FLUSH).
 * The script runs every command of the others, with the keys and the
 * channel a run uses. 0, or -1 with the line that names what is missing. */
static int probe_scripts(struct redis_store *rs, const char *key, const char *key2,
			 const char *channel)
{
	static const char fail_open[] = "every run would fail open";
	const char *ev[6] = {"EVAL", lua_ping.src, "2", key, key2, channel};
	size_t lens[6] = {4, lua_ping.len, 1, strlen(key), strlen(key2), strlen(channel)};

	for (int pass = 0; pass < 2; pass++) {
		redisReply *r = raw_command(rs, rs->c, 6, ev, lens);
		if (!r)
			return -1;
		int rc = 0;
		if (r->type == REDIS_REPLY_ERROR) {
			probe_failed(rs, ev[0], r->str, fail_open);
			rc = -1;
		} else if (is_string(r) && r->len > 0) {
			/* "COMMAND\nerror": a command inside the scripts */
			char cmd[32];
			const char *nl = memchr(r->str, '\n', r->len);
			snprintf(cmd, sizeof(cmd), "%.*s", nl ? (int)(nl - r->str) : 0, r->str);
			if (strcmp(cmd, "PUBLISH") == 0)
				probe_failed(rs, cmd, nl ? nl + 1 : "",
					     "waiters would not be woken");
			else
				probe_failed(rs, cmd, nl ? nl + 1 : "", fail_open);
			rc = -1;
		} else if (!is_string(r)) {
			err_set("the probe script's reply is malformed");
			rc = -1;
		}
		freeReplyObject(r);
		if (rc < 0)
			return -1;
		ev[0] = "EVALSHA";
		ev[1] = lua_ping.sha;
		lens[0] = 7;
		lens[1] = 40;
	}
	return 0;
}

/* the commands runs and the operator subcommands send outside scripts */
static int probe_commands(struct redis_store *rs, const char *key, const char *pattern)
{
	struct {
		int argc;
		const char *argv[6];
		const char *consequence;
	} steps[] = {
		{4, {"HSET", key, "f", "v"}, "no result could be stored"},
		{3, {"PEXPIRE", key, "10000"}, "no result could be stored"},
		{3, {"HMGET", key, "f"}, "hits over 1 MiB, list and invalidate --match would fail"},
		{4, {"HINCRBY", key, "n", "1"}, "stats would miss the fail-open runs"},
		{2, {"DEL", key}, "invalidate --tag would fail"},
		{1, {"TIME"}, "list and invalidate --match would fail"},
		{6,
		 {"SCAN", "0", "MATCH", pattern, "COUNT", "10"},
		 "list and invalidate --match would fail"},
		{3, {"SSCAN", key, "0"}, "invalidate --tag would fail"},
	};

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		if (probe(rs, rs->c, steps[i].argc, steps[i].argv, steps[i].consequence) < 0)
			return -1;
	return 0;
}

/* SUBSCRIBE on a connection of its own, as a waiter does */
static int probe_subscribe(struct redis_store *rs, const char *channel)
{
	const char *argv[2] = {"SUBSCRIBE", channel};
	struct conn *c = connect_one(rs, 0);

	if (!c)
		return -1;
	int rc = probe(rs, c, 2, argv, "waiters would not be woken");
	conn_free(c);
	return rc;
}

/* for ping: how a waiter will learn that a leader died, which needs CLIENT
 * ID and CLIENT LIST ID (an ACL user without +client has neither); a
 * static phrase, or NULL with err_set() when the connection failed */
static const char *takeover_probe(struct redis_store *rs)
{
	if (identity(rs) < 0)
		return NULL;
	if (rs->cid <= 0)
		return "a dead leader is taken over after its lease (CLIENT ID is refused)";
	char id[24];
	snprintf(id, sizeof(id), "%lld", rs->cid);
	const char *argv[4] = {"CLIENT", "LIST", "ID", id};
	size_t lens[4] = {6, 4, 2, strlen(id)};
	redisReply *r = raw_command(rs, rs->c, 4, argv, lens);
	if (!r)
		return NULL;
	bool refused = r->type == REDIS_REPLY_ERROR;
	freeReplyObject(r);
	return refused ? "a dead leader is taken over after its lease (CLIENT LIST is refused)"
		       : "a dead leader is taken over at once";
}

/* what ping learns of one server or cluster node */
struct node_ping {
	char version[64];
	const char *loaded; /* whether the scripts are loaded there */
	double rtt_ms;
};

/* PING (timed), the version (INFO server) and SCRIPT LOAD of every script
 * on the node c is on; 0, or -1 with err_set() when the connection failed */
static int ping_node(struct redis_store *rs, struct node_ping *np)
{
	const char *ping[1] = {"PING"}, *info[2] = {"INFO", "server"};
	size_t ping_len[1] = {4}, info_len[2] = {4, 6};
	int64_t a = monotonic_us();
	redisReply *r = command(rs, rs->c, 1, ping, ping_len);

	if (!r)
		return -1;
	np->rtt_ms = (double)(monotonic_us() - a) / 1e3;
	freeReplyObject(r);
	snprintf(np->version, sizeof(np->version), "unknown");
	r = raw_command(rs, rs->c, 2, info, info_len);
	if (r && r->type == REDIS_REPLY_STRING) {
		const char *v = strstr(r->str, "redis_version:");
		if (v)
			sscanf(v + 14, "%63[^\r\n]", np->version);
	}
	freeReplyObject(r);
	/* load them all now; a user who may not run SCRIPT still has them
	 * loaded by EVAL on first use */
	np->loaded = "scripts loaded";
	for (const struct lua_script *const *sp = lua_all; *sp; sp++) {
		const char *argv[3] = {"SCRIPT", "LOAD", (*sp)->src};
		size_t lens[3] = {6, 4, (*sp)->len};
		r = raw_command(rs, rs->c, 3, argv, lens);
		if (!r)
			return -1;
		if (r->type == REDIS_REPLY_ERROR)
			np->loaded = "scripts load on first use (SCRIPT LOAD is refused)";
		freeReplyObject(r);
	}
	return 0;
}

/* the probes of ping: every script, command and channel a run uses, with
 * names of their own (NS:{%ping}...: no escaped key spells them), on the
 * node of their slot; then how a dead leader is found. The takeover phrase,
 * or NULL with err_set(). */
static const char *probe_all(struct redis_store *rs)
{
	char *key = xasprintf("%s:{%%ping}", rs->ns), *key2 = xasprintf("%s:{%%ping}:2", rs->ns);
	char *channel = xasprintf("%s:{%%ping}:wake", rs->ns),
	     *pattern = xasprintf("%s:{%%ping}*", rs->ns);

	route(rs, key, strlen(key));
	int rc = probe_scripts(rs, key, key2, channel);
	if (rc == 0)
		rc = probe_commands(rs, key, pattern);
	if (rc == 0)
		rc = probe_subscribe(rs, channel);
	free(key);
	free(key2);
	free(channel);
	free(pattern);
	return rc < 0 ? NULL : takeover_probe(rs);
}

/* append the slots nodes[node] serves to out: "N slots (a-b, c-d, ...)",
 * the first few ranges only (a resharded map can hold thousands) */
static void append_slot_ranges(struct buf *out, const struct slot_map *m, size_t node)
{
	struct buf ranges = {0};
	unsigned n = 0, shown = 0;

	for (unsigned s = 0; s < CLUSTER_SLOTS; s++) {
		if (slot_map_index(m, s) != node)
			continue;
		unsigned e = s;
		while (e + 1 < CLUSTER_SLOTS && slot_map_index(m, e + 1) == node)
			e++;
		n += e - s + 1;
		if (shown++ < 4)
			buf_appendf(&ranges, "%s%u-%u", shown > 1 ? ", " : "", s, e);
		else if (shown == 5)
			buf_appendf(&ranges, ", ...");
		s = e;
	}
	buf_appendf(out, "%u slots (%s)", n, ranges.data ? ranges.data : "");
	buf_free(&ranges);
}

/* ping's line for each primary, appended to out; the first that does not
 * answer gets its line too, and its message goes to failed */
static void ping_primaries(struct redis_store *rs, struct buf *out, char *failed, size_t size)
{
	for (size_t i = 0; i < rs->map.n_nodes; i++) {
		const struct cluster_node *n = &rs->map.nodes[i];
		struct node_ping np;
		if (!serves_slots(&rs->map, i))
			continue;
		buf_appendf(out, strchr(n->host, ':') ? "\n  [%s]:%d: " : "\n  %s:%d: ", n->host,
			    n->port);
		if (go_to_node(rs, n->host, n->port) < 0 || ping_node(rs, &np) < 0) {
			buf_appendf(out, "FAILED: %s", err_msg());
			if (!failed[0])
				snprintf(failed, size, "%s", err_msg());
			continue;
		}
		buf_appendf(out, "Redis %s, ", np.version);
		append_slot_ranges(out, &rs->map, i);
		buf_appendf(out, ", %s, round trip %.3f ms", np.loaded, np.rtt_ms);
	}
}

/* ping on a cluster: a line for each primary, then the probes. A primary
 * that does not answer makes the result -1 and is the error named, even
 * when the probes failed too: once the cluster marks it failed, every
 * node answers CLUSTERDOWN, which says less than the node that is gone. */
static int ping_cluster(struct redis_store *rs, struct buf *out)
{
	size_t primaries = 0;
	char failed[512] = "";
	struct buf nodes = {0};

	for (size_t i = 0; i < rs->map.n_nodes; i++)
		primaries += serves_slots(&rs->map, i);
	ping_primaries(rs, &nodes, failed, sizeof(failed));
	const char *takeover = probe_all(rs);
	if (takeover) {
		char tls[128];
		conn_tls_desc(rs->c, tls, sizeof(tls));
		buf_appendf(out, "%s: Redis Cluster of %zu primaries, %s%s%s", rs->base.desc,
			    primaries, tls, *tls ? ", " : "", takeover);
	} else {
		buf_appendf(out, "%s: Redis Cluster of %zu primaries", rs->base.desc, primaries);
	}
	buf_append(out, nodes.data ? nodes.data : "", nodes.len);
	buf_free(&nodes);
	if (failed[0])
		err_set("%s", failed); /* out keeps every node's line */
	return failed[0] || !takeover ? -1 : 0;
}

/* for ping on a sentinel URL: a line saying what each sentinel answered,
 * and one for the primary's role check */
static void sentinel_report(struct redis_store *rs, struct buf *out)
{
	char *host = xstrdup(rs->primary_host ? rs->primary_host : "?");
	int port = rs->primary_port;

	buf_appendf(out, "\n  sentinels:");
	for (int i = 0; i <= rs->url.n_more; i++) {
		const char *h;
		int p;
		url_host(&rs->url, i, &h, &p);
		char why[512] = "";
		int rc = ask_sentinel(rs, h, p, 0, why, sizeof(why));
		buf_appendf(out, "%s %s:%d ", i ? "," : "", h, p);
		if (rc == 1)
			buf_appendf(out, "names %s:%d", rs->primary_host, rs->primary_port);
		else if (rc == 0)
			buf_appendf(out, "knows no service \"%s\"", rs->url.service);
		else
			buf_appendf(out, "did not answer (%s)", why);
	}
	/* the primary in use is the one checked when connecting */
	forget_primary(rs);
	rs->primary_host = host;
	rs->primary_port = port;
	buf_appendf(out, "\n  primary %s:%d: ROLE master", host, port);
}

static int redis_ping(struct store *s, struct buf *out)
{
	struct redis_store *rs = to_redis(s);
	struct node_ping np;

	/* the server reached first (a refusal at connect shows here, named) */
	if (ping_node(rs, &np) < 0)
		return -1;
	detect_cluster(rs);
	if (rs->cluster)
		return ping_cluster(rs, out);
	const char *takeover = probe_all(rs);
	if (!takeover)
		return -1;
	char tls[128];
	conn_tls_desc(rs->c, tls, sizeof(tls));
	buf_appendf(out, "%s: Redis %s, %s%s%s, %s, round trip %.3f ms", rs->base.desc, np.version,
		    tls, *tls ? ", " : "", np.loaded, takeover, np.rtt_ms);
	if (rs->url.sentinel)
		sentinel_report(rs, out);
	return 0;
}

static int redis_after_fork(struct store *s, bool child)
{
	struct redis_store *rs = to_redis(s);

	if (!child) {
		rs->holding = false; /* the child holds it now */
		return 0;
	}
	/* the parent goes on using these connections, their TLS sessions
	 * too: drop our copies without a word on the wire, open our own */
	conn_drop(rs->sub);
	rs->sub = NULL;
	conn_drop(rs->old);
	rs->old = NULL;
	unpark_all(rs, conn_drop);
	conn_drop(rs->c);
	rs->identified = false;
	rs->c = connect_one(rs, 0);
	if (!rs->c)
		return -1;
	/* a background refresh names its own connection in the lock it
	 * carries: the parent's closes when the parent exits */
	if (rs->holding && identity(rs) == 0)
		renew_once(rs, rs->held_key.data, rs->held_key.len, rs->held_token,
			   rs->held_lease_ms);
	return 0;
}

static void count_leaving(struct redis_store *rs, enum counter which);

static void redis_close(struct store *s)
{
	struct redis_store *rs = to_redis(s);

	if (!rs)
		return;
	if (rs->carried_hit)
		count_leaving(rs, STAT_HITS);
	conn_free(rs->c);
	conn_free(rs->old);
	conn_free(rs->sub);
	unpark_all(rs, conn_free);
	slot_map_free(&rs->map);
	free(rs->map_path);
	free(rs->at_host);
	free(rs->scan_host);
	conn_tls_free(rs->tls);
	url_free(&rs->url);
	free(rs->ns);
	free(rs->lock_value_suffix);
	buf_free(&rs->stats_key);
	buf_free(&rs->sub_channel);
	buf_free(&rs->carried);
	free(rs->carry_reader);
	buf_free(&rs->held_key);
	if (rs->password)
		memset(rs->password, 0, strlen(rs->password));
	free(rs->password);
	if (rs->sentinel_password)
		memset(rs->sentinel_password, 0, strlen(rs->sentinel_password));
	free(rs->sentinel_password);
	free(rs->primary_host);
	free(rs->primary_path);
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
	.inspect = redis_inspect,
	.list = redis_list,
	.list_tags = redis_list_tags,
	.invalidate_tag = redis_invalidate_tag,
	.stats = redis_stats,
	.count = redis_count,
	.ping = redis_ping,
	.after_fork = redis_after_fork,
	.close = redis_close,
};

/* a deep copy of a parsed URL, so the store owns its strings */
/* The first connection of a call, retried like a broken one (SPEC 9.5): a
 * call that starts while Redis restarts or fails over waits for it, up to
 * --redis-timeout from its start, rather than running COMMAND uncached. A
 * server that refused us, a TLS or TLS-file failure, or a name that does
 * not resolve would say the same again. 0, or -1 with err_set(). */
static int connect_first(struct redis_store *rs)
{
	int64_t start = monotonic_ms();

	rs->c = connect_one(rs, 0);
	if (rs->c)
		return 0;
	if (rs->refused || (rs->connect_err != CONN_ERR_IO && rs->connect_err != CONN_ERR_EOF))
		return -1;
	rs->c = conn_of_fd(-1);
	conn_fail(rs->c, CONN_ERR_IO, err_msg());
	struct retry rt = {.deadline = start + rs->timeout_ms, .pause_ms = RETRY_PAUSE_MIN_MS};
	return again(rs, &rt) ? 0 : -1;
}

/* With a cached map, the first connection of a run goes straight to the
 * node of its key's slot (a hit is then one connection, one round trip);
 * a node that is gone (a failover since the map was saved) is skipped for
 * the seeds. Otherwise as connect_first. */
static int connect_first_key(struct redis_store *rs, const char *key, size_t len)
{
	const struct cluster_node *n =
		rs->cluster && key ? slot_map_owner(&rs->map, key_slot(key, len)) : NULL;

	if (n) {
		rs->at_host = xstrdup(n->host);
		rs->at_port = n->port;
		rs->c = connect_one(rs, 0);
		if (rs->c || rs->refused)
			return rs->c ? 0 : -1;
		log_verbose("%s; asking the other nodes", err_msg());
		if (remap_elsewhere(rs, monotonic_ms() + rs->timeout_ms) == 0 || rs->refused)
			return rs->c ? 0 : -1;
		free(rs->at_host);
		rs->at_host = NULL;
	}
	return connect_first(rs);
}

struct store *store_redis_open(const struct store_config *cfg, bool *refused)
{
	struct redis_store *rs = xcalloc(1, sizeof(*rs));
	char host[256] = "unknown";

	rs->base.ops = &redis_ops;
	if (strchr(cfg->ns, '{')) {
		/* the first '{' must end the namespace, or names could collide */
		err_set("--namespace: \"%s\" holds a '{', which Redis key names use to end it",
			cfg->ns);
		*refused = true;
		free(rs);
		return NULL;
	}
	url_copy(&rs->url, cfg->url);
	rs->base.desc = url_display(&rs->url);
	rs->ns = xstrdup(cfg->ns);
	rs->password = cfg->password ? xstrdup(cfg->password) : NULL;
	rs->sentinel_password = cfg->sentinel_password ? xstrdup(cfg->sentinel_password) : NULL;
	cluster_slot_tag(0, rs->slot_tag);
	buf_appendf(&rs->stats_key, "%s:{%s}:stats", rs->ns, rs->slot_tag);
	rs->timeout_ms = cfg->timeout_ms;
	if (rs->url.kind == URL_REDIS_TLS) {
		static const struct tls_options none = {0};
		const struct tls_options *tls = cfg->tls ? cfg->tls : &none;
		rs->tls = conn_tls_new(tls);
		if (!rs->tls) {
			/* a file that does not load will not load by retrying */
			*refused = true;
			redis_close(&rs->base);
			return NULL;
		}
		if (tls->insecure)
			log_warn(
				"--tls-insecure: the server's certificate is not verified: anyone on the "
				"path can read and change what is cached");
	}
	gethostname(host, sizeof(host) - 1);
	rs->lock_value_suffix = xasprintf(" host=%s pid=%ld", host, (long)getpid());
	slot_map_init(&rs->map);
	if (rs->url.sentinel && cfg->first_key) {
		/* a run keeps the primary for the next runs; an operator's
		 * command always asks the sentinels */
		rs->primary_path = primary_path_of(&rs->url);
		rs->try_cache = rs->primary_path != NULL;
	} else if (rs->url.kind != URL_REDIS_UNIX && !rs->url.sentinel) {
		rs->map_path = map_path_of(&rs->url);
		/* a map of the seeds cached by an earlier run: route at once */
		rs->cluster = rs->map_path && slot_map_load(&rs->map, rs->map_path) == 0;
	}
	if (connect_first_key(rs, cfg->first_key, cfg->first_key_len) < 0) {
		*refused = rs->refused;
		redis_close(&rs->base);
		return NULL;
	}
	return &rs->base;
}
