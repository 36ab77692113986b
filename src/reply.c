/* reply: reading the replies that carry an entry; see reply.h */
#include "reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "util.h"

/* a bulk string of at most max - 1 bytes into out (NUL-terminated); its
 * length, -1 for a nil, or -2 on failure */
static int64_t small_bulk(struct resp_reader *rd, char *out, size_t max)
{
	int64_t len;

	if (resp_number(rd, '$', &len) < 0)
		return -2;
	if (len < 0) {
		out[0] = '\0';
		return -1;
	}
	if ((uint64_t)len >= max) {
		err_set("a reply field is longer than expected");
		return -2;
	}
	if (resp_read(rd, out, len) < 0 || resp_crlf(rd) < 0)
		return -2;
	out[len] = '\0';
	return len;
}

static int read_meta(struct resp_reader *rd, struct entry_meta *meta)
{
	char values[ENTRY_NFIELDS][ENTRY_HOST_MAX];
	const char *vp[ENTRY_NFIELDS];
	size_t lens[ENTRY_NFIELDS];
	int64_t n;

	if (resp_number(rd, '*', &n) < 0 || n != ENTRY_NFIELDS) {
		err_set("the entry's metadata is malformed");
		return -1;
	}
	for (int i = 0; i < ENTRY_NFIELDS; i++) {
		int64_t len = small_bulk(rd, values[i], sizeof(values[i]));
		if (len == -2)
			return -1;
		vp[i] = values[i];
		lens[i] = len < 0 ? 0 : len;
	}
	return entry_meta_decode(meta, entry_field_names, vp, lens, ENTRY_NFIELDS);
}

/* read an inlined value of exactly want bytes into *held (malloc'ed, the
 * caller frees it); or, when !inlined, the nil that stands for it */
static int read_value(struct resp_reader *rd, uint64_t want, bool inlined, char **held)
{
	int64_t len;

	if (resp_number(rd, '$', &len) < 0)
		return -1;
	if (!inlined && len == -1)
		return 0;
	if (!inlined || len < 0 || (uint64_t)len != want) {
		err_set("the stored entry's sizes do not match its bytes");
		return -1;
	}
	*held = xmalloc(want + 1);
	if (resp_read(rd, *held, want) < 0)
		return -1;
	return resp_crlf(rd);
}

/* the entry part of a hit: age, meta, stdout, stderr, refresh flag, run id */
static int read_entry_body(struct resp_reader *rd, struct entry_reply *er)
{
	struct lookup *res = er->res;
	char *out = NULL, *err = NULL;
	int64_t age, refresh;
	int rc = -1;

	if (resp_number(rd, ':', &age) < 0 || read_meta(rd, &res->meta) < 0)
		return -1;
	res->age_ms = age;
	/* olen and elen are each below 2^63 (entry_meta_decode), so no overflow */
	bool inlined = res->meta.out_len + res->meta.err_len <= er->inline_max;
	if (inlined) /* the value comes in this reply: allow its time */
		resp_reader_extend(rd, res->meta.out_len + res->meta.err_len);
	if (read_value(rd, res->meta.out_len, inlined, &out) < 0 ||
	    read_value(rd, res->meta.err_len, inlined, &err) < 0 ||
	    resp_number(rd, ':', &refresh) < 0 || small_bulk(rd, er->rid, sizeof(er->rid)) == -2)
		goto out;
	er->big = !inlined;
	res->refresh = refresh == 1;
	if (inlined) {
		if (er->start)
			er->start(er->ctx, &res->meta);
		er->out(er->ctx, out, res->meta.out_len);
		er->err(er->ctx, err, res->meta.err_len);
	}
	rc = 0;
out:
	free(out);
	free(err);
	return rc;
}

/* is w the name of verdict v (policy_names.h)? */
static bool is_verdict(const char *w, enum verdict v)
{
	return strcmp(w, policy_verdict_name(v)) == 0;
}

int entry_reply_read(struct resp_reader *rd, void *ctx)
{
	struct entry_reply *er = ctx;
	struct lookup *res = er->res;
	int64_t n, v;
	char holder[512];

	int rc = resp_number(rd, '*', &n);
	if (rc < 0)
		return rc;
	if (n < 1 || small_bulk(rd, er->verdict, sizeof(er->verdict)) < 0)
		goto malformed;
	const char *w = er->verdict;
	if (strcmp(w, "none") == 0 && n == 1)
		return 0;
	if (is_verdict(w, VERDICT_BYPASS) && n == 1) {
		res->verdict = VERDICT_BYPASS;
		return 0;
	}
	if (is_verdict(w, VERDICT_LEAD) && n == 2) {
		if (resp_number(rd, ':', &v) < 0)
			return -1;
		res->verdict = VERDICT_LEAD;
		res->fallback = v == 1;
		return 0;
	}
	if (is_verdict(w, VERDICT_WAIT) && n == 3) {
		if (resp_number(rd, ':', &v) < 0 ||
		    small_bulk(rd, holder, sizeof(holder)) < TOKEN_LEN)
			goto malformed;
		res->verdict = VERDICT_WAIT;
		res->lease_left_ms = v;
		memcpy(res->holder, holder, TOKEN_LEN);
		res->holder[TOKEN_LEN] = '\0';
		snprintf(er->holder, sizeof(er->holder), "%s", holder);
		return 0;
	}
	if (n == 7 && (is_verdict(w, VERDICT_HIT) || is_verdict(w, VERDICT_STALE) ||
		       is_verdict(w, VERDICT_DONE))) {
		res->verdict = is_verdict(w, VERDICT_HIT)     ? VERDICT_HIT
			       : is_verdict(w, VERDICT_STALE) ? VERDICT_STALE
							      : VERDICT_DONE;
		return read_entry_body(rd, er);
	}
malformed:
	err_set("the store's reply is malformed");
	return -1;
}

static void discard(void *ctx, const char *p, size_t n)
{
	(void)ctx;
	(void)p;
	(void)n;
}

/* one bulk string of the body: exactly want bytes to fn, or with
 * skip any length (or nil) to nowhere */
static int body_value(struct resp_reader *rd, uint64_t want, bool skip, resp_piece_fn fn, void *ctx)
{
	int64_t len;

	int rc = resp_number(rd, '$', &len);
	if (rc < 0)
		return rc;
	if (skip && len < 0)
		return 0;
	if (!skip && (len < 0 || (uint64_t)len != want)) {
		err_set("the stored entry's sizes do not match its bytes");
		return -1;
	}
	resp_reader_extend(rd, (uint64_t)len);
	if (resp_stream(rd, (uint64_t)len, skip ? discard : fn, ctx) < 0)
		return -1;
	return resp_crlf(rd);
}

int body_reply_read(struct resp_reader *rd, void *ctx)
{
	struct body_reply *br = ctx;
	char rid[64];
	int64_t n;

	int rc = resp_number(rd, '*', &n);
	if (rc < 0)
		return rc;
	if (n != 3 || small_bulk(rd, rid, sizeof(rid)) == -2) {
		err_set("the store's reply is malformed");
		return -1;
	}
	br->changed = strcmp(rid, br->rid) != 0;
	rc = body_value(rd, br->out_len, br->changed, br->out, br->ctx);
	if (rc == 0)
		rc = body_value(rd, br->err_len, br->changed, br->err, br->ctx);
	return rc;
}
