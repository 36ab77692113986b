/* subcmd: operator subcommands, on any store through the store interface. */
#include "subcmd.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "key.h"
#include "run.h"
#include "sign.h"
#include "store.h"
#include "util.h"

/* open the store for a subcommand; NULL after printing why */
static struct store *open_for(const struct options *o)
{
	struct store_config cfg = run_store_config(o);
	bool refused;
	struct store *s = store_open(&cfg, &refused);

	if (!s)
		log_error("%s", err_msg());
	else
		log_verbose("store %s", s->desc);
	return s;
}

/* check every operand is a key; 0, or -1 after printing why */
static int check_keys(const struct options *o, const char *cmd)
{
	for (int i = 0; i < o->nargs; i++) {
		if (key_validate(o->args[i], strlen(o->args[i])) < 0) {
			log_error("%s: %s", cmd, err_msg());
			return -1;
		}
	}
	return 0;
}

/* write b to stdout through the one output path (a non-blocking stdout is
 * waited on, a reader gone away is quiet: main's out_status() gives the
 * exit); 0, or 125 after any other write error */
static int put(const struct buf *b)
{
	if (b->len && out_write(STDOUT_FILENO, b->data, b->len) < 0 && errno != EPIPE)
		return 125;
	return 0;
}

/* The user key run would use for o's command line: --key, or derived by
 * key_derive() from COMMAND and the same scopes, standard input hashed (and
 * not kept) for --stdin; 0, or -1 with err_set() */
static int command_key(const struct options *o, struct buf *key)
{
	unsigned char digest[32];

	if (!o->key && o->use_stdin && key_digest_read(STDIN_FILENO, NULL, NULL, digest) < 0)
		return -1;
	return run_user_key(o, o->use_stdin ? digest : NULL, key);
}

int subcmd_key(const struct options *o)
{
	struct buf key = {0}, b = {0};

	if (command_key(o, &key) < 0) {
		log_error("key: %s", err_msg());
		buf_free(&key);
		return 125;
	}
	key_printable(&b, key.data, key.len);
	buf_append(&b, "\n", 1);
	int rc = put(&b);
	buf_free(&key);
	buf_free(&b);
	return rc;
}

/* as run says it: an entry that did not decode whole or is not authentic
 * (sign_sink_settle's rc: 0 none of it printed, -1 some was) */
static void say_not_whole(struct store *s, const struct sink *sink, const struct entry_meta *m,
			  int rc)
{
	if (sink->damaged && rc == 0)
		log_warn("get: the entry does not decode (%s): not printed", err_msg());
	else if (sink->damaged)
		log_error("get: the stored output was cut off: %s", err_msg());
	else if (rc == 0)
		log_warn("get: the entry is not authentic (%s): not printed", sign_why_not(m));
	else
		log_error("get: the stored output is not authentic (its signature does not match, "
			  "checked at its end): do not trust what was printed");
	if (!sink->damaged)
		s->ops->count(s, STAT_NOT_AUTHENTIC);
}

int subcmd_get(const struct options *o)
{
	if (check_keys(o, "get") < 0)
		return 125;
	struct store *s = open_for(o);
	if (!s)
		return 125;
	struct sink sink = {.out_fd = STDOUT_FILENO, .err_fd = -1};
	struct sign_digest seen;
	struct entry_meta meta;
	const char *key = o->args[0];
	sign_sink_init(&sink, o->sign, &seen);
	int rc = s->ops->get(s, key, strlen(key), o->fresh, &meta, &sink);
	if (rc < 0)
		log_error("get: %s", err_msg());
	if (rc == 1 &&
	    (rc = sign_sink_settle(&sink, o->sign, &seen, o->ns, key, strlen(key), &meta)) != 1) {
		say_not_whole(s, &sink, &meta, rc);
		rc = rc == 0 ? 0 : -1;
	}
	sink_drop(&sink);
	store_close(s);
	return rc < 0 ? 125 : rc == 1 ? 0 : 1;
}

/* --- how entries read ------------------------------------------------------- */

/* an entry's command as list and inspect print it; an entry written before
 * commands were kept has none (a display form is never "(unknown)": its
 * parentheses would be quoted) */
static const char *command_of(const struct entry_info *i)
{
	return i->meta.cmd[0] ? i->meta.cmd : "(unknown)";
}

/* the command as a JSON value: a string, or null when unknown */
static void command_json(struct buf *b, const struct entry_info *i)
{
	if (i->meta.cmd[0])
		json_string(b, i->meta.cmd, strlen(i->meta.cmd));
	else
		buf_append(b, "null", 4);
}

static const char *state_of(const struct entry_info *info)
{
	if (info->future)
		return "future";
	if (!info->present)
		return info->locked ? "locked" : "absent";
	return info->freshness == ENTRY_FRESH ? "fresh" : "stale";
}

static int64_t ttl_left(const struct entry_info *i)
{
	int64_t left = i->meta.ttl_ms - i->age_ms;
	return left > 0 ? left : 0;
}

/* how much longer the entry may be served stale (stale and stale-if-error
 * windows), counted from its expiry or from now if that has passed */
static int64_t stale_left(const struct entry_info *i)
{
	const struct entry_meta *m = &i->meta;
	int64_t from = i->age_ms > m->ttl_ms ? i->age_ms : m->ttl_ms;
	int64_t left = entry_lifetime(m) - from;
	return left > 0 ? left : 0;
}

/* a duration for people: 850ms, 12.3s, 4m05s, 2h10m, 3d04h; negative
 * (an entry from the future) with a '-' */
static const char *human(char *out, size_t len, int64_t ms)
{
	if (ms < 0 && len > 1) {
		out[0] = '-';
		human(out + 1, len - 1, ms == INT64_MIN ? INT64_MAX : -ms);
		return out;
	}
	int64_t s = ms / 1000;

	if (ms < 1000)
		snprintf(out, len, "%lldms", (long long)ms);
	else if (s < 60)
		snprintf(out, len, "%lld.%llds", (long long)s, (long long)(ms % 1000 / 100));
	else if (s < 3600)
		snprintf(out, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
	else if (s < 86400)
		snprintf(out, len, "%lldh%02lldm", (long long)(s / 3600),
			 (long long)(s % 3600 / 60));
	else
		snprintf(out, len, "%lldd%02lldh", (long long)(s / 86400),
			 (long long)(s % 86400 / 3600));
	return out;
}

/* ISO 8601 UTC with milliseconds */
static const char *iso_time(char *out, size_t len, int64_t ms)
{
	time_t t = ms / 1000;
	struct tm tm;

	gmtime_r(&t, &tm);
	size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, len - n, ".%03lldZ", (long long)(ms % 1000));
	return out;
}

/* the bytes a hit writes */
static uint64_t size_of(const struct entry_info *i)
{
	if (i->meta.zstd)
		return i->meta.raw_out_len + i->meta.raw_err_len;
	return i->meta.out_len + i->meta.err_len;
}

/* the bytes the store holds for them */
static uint64_t stored_size_of(const struct entry_info *i)
{
	return i->meta.out_len + i->meta.err_len;
}

/* --- inspect -------------------------------------------------------------------- */

static void inspect_json(struct buf *b, const char *key, const struct entry_info *i)
{
	char when[64];

	buf_append(b, "{\"key\":", 7);
	json_string(b, key, strlen(key));
	buf_appendf(b, ",\"state\":\"%s\"", state_of(i));
	if (i->present) {
		buf_appendf(
			b,
			",\"age_ms\":%lld,\"ttl_ms\":%lld,\"stale_ms\":%lld,\"size\":%llu,"
			"\"exit_status\":%d,\"compute_ms\":%lld,\"created_at\":\"%s\",\"host\":",
			(long long)i->age_ms, (long long)ttl_left(i), (long long)stale_left(i),
			(unsigned long long)size_of(i), i->meta.status,
			(long long)i->meta.compute_ms,
			iso_time(when, sizeof(when), i->meta.created_ms));
		json_string(b, i->meta.host, strlen(i->meta.host));
		buf_append(b, ",\"command\":", 11);
		command_json(b, i);
		buf_appendf(b, ",\"stored_size\":%llu,\"compression\":%s,\"signed\":%s",
			    (unsigned long long)stored_size_of(i),
			    i->meta.zstd ? "\"zstd\"" : "null", i->meta.sig[0] ? "true" : "false");
	} else {
		buf_appendf(b, ",\"age_ms\":null,\"ttl_ms\":null,\"stale_ms\":null,\"size\":null,"
			       "\"exit_status\":null,\"compute_ms\":null,\"created_at\":null,"
			       "\"host\":null,\"command\":null,\"stored_size\":null,"
			       "\"compression\":null,\"signed\":null");
	}
	buf_append(b, ",\"lock\":", 8);
	if (i->locked) {
		buf_append(b, "{\"holder\":", 10);
		json_string(b, i->holder, strlen(i->holder));
		if (i->lease_left_ms >= 0)
			buf_appendf(b, ",\"lease_ms\":%lld}", (long long)i->lease_left_ms);
		else
			buf_appendf(b, ",\"lease_ms\":null}");
	} else {
		buf_append(b, "null", 4);
	}
	buf_append(b, "}\n", 2);
}

static void inspect_text(struct buf *b, const char *key, const struct entry_info *i)
{
	char t[64];
	struct buf p = {0};

	buf_appendf(b, "key:         %s\n", key_printable(&p, key, strlen(key)));
	buf_appendf(b, "state:       %s\n", state_of(i));
	if (i->present) {
		buf_appendf(b, "age:         %s\n", human(t, sizeof(t), i->age_ms));
		buf_appendf(b, "ttl left:    %s\n", human(t, sizeof(t), ttl_left(i)));
		buf_appendf(b, "stale left:  %s\n", human(t, sizeof(t), stale_left(i)));
		buf_appendf(b, "size:        %llu bytes\n", (unsigned long long)size_of(i));
		if (i->meta.zstd)
			buf_appendf(b, "stored:      %llu bytes, zstd (%.3f of the size)\n",
				    (unsigned long long)stored_size_of(i),
				    size_of(i) ? (double)stored_size_of(i) / (double)size_of(i)
					       : 1.0);
		if (i->meta.sig[0])
			buf_appendf(b, "signed:      key %.*s\n", SIGN_KEY_ID_LEN, i->meta.sig);
		buf_appendf(b, "exit status: %d\n", i->meta.status);
		buf_appendf(b, "compute:     %s\n", human(t, sizeof(t), i->meta.compute_ms));
		buf_appendf(b, "created at:  %s\n", iso_time(t, sizeof(t), i->meta.created_ms));
		buf_appendf(b, "host:        %s\n", i->meta.host);
		buf_appendf(b, "command:     %s\n", command_of(i));
	}
	if (i->locked && i->lease_left_ms >= 0)
		buf_appendf(b, "lock:        %s (lease %s left)\n", i->holder,
			    human(t, sizeof(t), i->lease_left_ms));
	else if (i->locked)
		buf_appendf(b, "lock:        %s\n", i->holder);
	else
		buf_appendf(b, "lock:        none\n");
	buf_free(&p);
}

int subcmd_inspect(const struct options *o)
{
	struct entry_info info;
	struct buf b = {0};

	if (check_keys(o, "inspect") < 0)
		return 125;
	struct store *s = open_for(o);
	if (!s)
		return 125;
	const char *key = o->args[0];
	int rc = s->ops->inspect(s, key, strlen(key), &info);
	store_close(s);
	if (rc < 0) {
		log_error("inspect: %s", err_msg());
		return 125;
	}
	if (o->json)
		inspect_json(&b, key, &info);
	else
		inspect_text(&b, key, &info);
	rc = put(&b);
	buf_free(&b);
	return rc ? rc : info.present || info.locked ? 0 : 1;
}

/* --- list ------------------------------------------------------------------------ */

struct list_ctx {
	const struct options *o;
	struct buf out;
	struct buf printable;
	long count;
	bool failed;
};

/* write out what has piled up, so 10,000 entries need no 10,000-line buffer */
static int flush_list(struct list_ctx *c)
{
	if (put(&c->out) != 0) {
		c->failed = true;
		return 1;
	}
	if (out_failed(STDOUT_FILENO))
		return 1; /* the reader went away: no use walking on */
	c->out.len = 0;
	return 0;
}

static int list_one(void *arg, const char *key, size_t len, const struct entry_info *i)
{
	struct list_ctx *c = arg;
	char a[32], t[32];

	if (!i->present)
		return 0; /* a lock without an entry is no entry to list */
	c->count++;
	if (c->o->json) {
		buf_append(&c->out, "{\"key\":", 7);
		json_string(&c->out, key, len);
		buf_appendf(&c->out,
			    ",\"state\":\"%s\",\"age_ms\":%lld,\"ttl_ms\":%lld,\"size\":%llu,"
			    "\"command\":",
			    state_of(i), (long long)i->age_ms, (long long)ttl_left(i),
			    (unsigned long long)size_of(i));
		command_json(&c->out, i);
		buf_append(&c->out, "}\n", 2);
	} else {
		buf_appendf(&c->out, "%s\t%s\t%s\t%s\t%llu\t%s\n",
			    key_printable(&c->printable, key, len), state_of(i),
			    human(a, sizeof(a), i->age_ms), human(t, sizeof(t), ttl_left(i)),
			    (unsigned long long)size_of(i), command_of(i));
	}
	return c->out.len > 65536 ? flush_list(c) : 0;
}

/* the tag names list --tags collects, to print sorted and once each */
struct tag_set {
	char **names;
	size_t n, cap;
};

static int collect_tag(void *arg, const char *tag, size_t len)
{
	struct tag_set *t = arg;

	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 64;
		t->names = xrealloc(t->names, t->cap * sizeof(*t->names));
	}
	t->names[t->n] = xmalloc(len + 1);
	memcpy(t->names[t->n], tag, len);
	t->names[t->n++][len] = '\0';
	return 0;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* list --tags: one tag a line (or a JSON object a line), sorted */
static int list_tags(const struct options *o, struct store *s)
{
	struct tag_set t = {0};
	struct buf out = {0}, printable = {0};
	int rc = s->ops->list_tags(s, o->nargs ? o->args[0] : NULL, collect_tag, &t);

	if (rc < 0)
		log_error("list --tags: %s", err_msg());
	if (t.n)
		qsort(t.names, t.n, sizeof(*t.names), compare_names);
	for (size_t i = 0; i < t.n; i++) {
		const char *name = t.names[i];
		if (rc == 0 && (i == 0 || strcmp(name, t.names[i - 1]) != 0)) {
			if (o->json) {
				buf_append(&out, "{\"tag\":", 7);
				json_string(&out, name, strlen(name));
				buf_append(&out, "}\n", 2);
			} else {
				buf_appendf(&out, "%s\n",
					    key_printable(&printable, name, strlen(name)));
			}
		}
	}
	for (size_t i = 0; i < t.n; i++)
		free(t.names[i]);
	free(t.names);
	if (rc == 0)
		rc = put(&out);
	buf_free(&out);
	buf_free(&printable);
	return rc < 0 ? 125 : rc;
}

int subcmd_list(const struct options *o)
{
	struct list_ctx c = {.o = o};

	struct store *s = open_for(o);
	if (!s)
		return 125;
	if (o->list_tags) {
		int status = list_tags(o, s);
		store_close(s);
		return status;
	}
	int rc = s->ops->list(s, o->nargs ? o->args[0] : NULL, list_one, &c);
	store_close(s);
	if (rc < 0)
		log_error("list: %s", err_msg());
	if (rc == 0 && !c.failed)
		flush_list(&c);
	buf_free(&c.out);
	buf_free(&c.printable);
	return rc < 0 || c.failed ? 125 : 0;
}

/* --- invalidate -------------------------------------------------------------------- */

struct key_list {
	struct buf *keys;
	size_t n;
};

static int collect_key(void *arg, const char *key, size_t len, const struct entry_info *info)
{
	struct key_list *l = arg;

	(void)info;
	l->keys = xrealloc(l->keys, (l->n + 1) * sizeof(*l->keys));
	memset(&l->keys[l->n], 0, sizeof(l->keys[l->n]));
	buf_append(&l->keys[l->n++], key, len);
	return 0;
}

/* invalidate every entry whose key matches glob, and fence out every
 * leader of such a key already running (the walk also reports locks):
 * walk first, then delete, so the walk does not see its own deletions */
static long invalidate_matching(struct store *s, const char *glob)
{
	struct key_list l = {0};
	long deleted = 0;

	/* first the leaders running for a matching key, entry or not yet */
	if (s->ops->fence && s->ops->fence(s, glob) < 0)
		return -1;
	if (s->ops->list(s, glob, collect_key, &l) < 0)
		deleted = -1;
	for (size_t i = 0; i < l.n; i++) {
		int one = deleted < 0 ? 0 : s->ops->invalidate(s, l.keys[i].data, l.keys[i].len);
		deleted = one < 0 ? -1 : deleted + one;
		buf_free(&l.keys[i]);
	}
	free(l.keys);
	return deleted;
}

int subcmd_invalidate(const struct options *o)
{
	long deleted = 0;
	struct buf derived = {0};

	if (check_keys(o, "invalidate") < 0)
		return 125;
	/* -- COMMAND: the key run derives, found before the store is opened */
	if (o->command && command_key(o, &derived) < 0) {
		log_error("invalidate: %s", err_msg());
		buf_free(&derived);
		return 125;
	}
	struct store *s = open_for(o);
	if (!s) {
		buf_free(&derived);
		return 125;
	}
	if (o->command) {
		struct buf shown = {0};
		log_verbose("invalidate key=%s", key_printable(&shown, derived.data, derived.len));
		buf_free(&shown);
		int rc = s->ops->invalidate(s, derived.data, derived.len);
		deleted = rc < 0 ? -1 : rc;
	} else if (o->match)
		deleted = invalidate_matching(s, o->match);
	else if (o->tag)
		deleted = s->ops->invalidate_tag(s, o->tag);
	for (int i = 0; i < o->nargs && deleted >= 0; i++) {
		int rc = s->ops->invalidate(s, o->args[i], strlen(o->args[i]));
		deleted = rc < 0 ? -1 : deleted + rc;
	}
	if (deleted < 0)
		log_error("invalidate: %s", err_msg());
	store_close(s);
	buf_free(&derived);
	if (deleted < 0)
		return 125;
	printf("%ld\n", deleted);
	return 0;
}

/* --- stats ------------------------------------------------------------------------ */

static const char *const stat_help[STAT_COUNT] = {
	[STAT_HITS] = "Fresh entries served.",
	[STAT_MISSES] = "Lookups that found no usable entry and ran COMMAND.",
	[STAT_STALE] = "Stale entries served (stale-while-revalidate, stale-if-error).",
	[STAT_EARLY] = "XFetch early refreshes started.",
	[STAT_BACKGROUND] = "Background refreshes of stale entries started.",
	[STAT_WAITS] = "Callers that waited for another process's result.",
	[STAT_TAKEOVERS] = "Waiters that took over from a leader whose lease ran out.",
	[STAT_FAIL_OPEN] = "Runs without the store after it failed mid-run.",
	[STAT_TOO_LARGE] = "Results not stored: larger than --max-size.",
	[STAT_LOST_LOCK] = "Results not stored: the lock was lost (fencing).",
	[STAT_STORE_FAILED] = "Results not stored: the store refused or failed the write.",
	[STAT_TAKEOVERS_GONE] =
		"Waiters that took over at once from a leader whose connection was gone.",
	[STAT_REFRESH_FAILED] = "Stale-if-error refreshes that failed; the old entry was served.",
	[STAT_NOT_AUTHENTIC] = "Entries refused: unsigned or wrongly signed (--sign-key-file).",
};

static void stats_prometheus(struct buf *b, const char *ns, const uint64_t c[STAT_COUNT])
{
	struct buf label = {0};

	/* label values escape backslash, quote and newline */
	for (const char *p = ns; *p; p++) {
		if (*p == '\\' || *p == '"')
			buf_append(&label, "\\", 1);
		buf_append(&label, p, 1);
	}
	for (int i = 0; i < STAT_COUNT; i++) {
		buf_appendf(b, "# HELP cachefence_%s_total %s\n", stat_names[i], stat_help[i]);
		buf_appendf(b, "# TYPE cachefence_%s_total counter\n", stat_names[i]);
		buf_appendf(b, "cachefence_%s_total{namespace=\"%s\"} %llu\n", stat_names[i],
			    label.data ? label.data : "", (unsigned long long)c[i]);
	}
	buf_free(&label);
}

int subcmd_stats(const struct options *o)
{
	uint64_t c[STAT_COUNT];
	struct buf b = {0};

	struct store *s = open_for(o);
	if (!s)
		return 125;
	int rc = s->ops->stats(s, c, o->reset);
	store_close(s);
	if (rc < 0) {
		log_error("stats: %s", err_msg());
		return 125;
	}
	if (o->prometheus) {
		stats_prometheus(&b, o->ns, c);
	} else if (o->json) {
		for (int i = 0; i < STAT_COUNT; i++)
			buf_appendf(&b, "%s\"%s\":%llu", i ? "," : "{", stat_names[i],
				    (unsigned long long)c[i]);
		buf_append(&b, "}\n", 2);
	} else {
		for (int i = 0; i < STAT_COUNT; i++)
			buf_appendf(&b, "%-26s %llu\n", stat_names[i], (unsigned long long)c[i]);
	}
	rc = put(&b);
	buf_free(&b);
	return rc;
}

/* --- ping ------------------------------------------------------------------------- */

int subcmd_ping(const struct options *o)
{
	struct buf b = {0};

	struct store *s = open_for(o);
	if (!s)
		return 125;
	int rc = s->ops->ping(s, &b);
	store_close(s);
	if (rc < 0) {
		/* a cluster's nodes that answered, before the one that did not */
		if (b.len) {
			buf_append(&b, "\n", 1);
			put(&b);
		}
		log_error("ping: %s", err_msg());
		buf_free(&b);
		return 125;
	}
	buf_append(&b, "\n", 1);
	rc = put(&b);
	buf_free(&b);
	return rc;
}
