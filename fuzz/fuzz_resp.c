/* fuzz_resp: our own RESP reader (src/resp.c) on hostile bytes, read the
 * way the Redis store reads a lookup's reply, with the same code
 * (src/reply.c): the script's reply, then, for an entry too large to
 * inline, the HMGET reply of its run id and bytes, streamed with resp_stream.
 *
 * The reader does no I/O: it pulls bytes through a callback, which here
 * hands out the input in pieces whose sizes follow from the input, so
 * splits of a header, a number or a value across reads are tried, and a
 * crash reproduces from its input alone. The end of the input is the
 * connection closing. */
#include <stdbool.h>
#include <string.h>

#include "entry.h"
#include "fuzz.h"
#include "reply.h"
#include "resp.h"
#include "store.h"

/* values up to this size come inside the script's reply, larger ones come
 * as nil and are fetched with HGET; store_redis.c draws the line at 1 MiB,
 * here it is lower so that inputs of a fuzzer's size reach both paths */
#define FUZZ_INLINE_MAX 256

/* --- the input, in pieces ----------------------------------------------------------- */

/* xorshift32: the piece sizes, seeded from the input */
static uint32_t next_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static uint32_t fnv1a(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h ? h : 1;
}

struct source {
	const uint8_t *data;
	size_t size, pos;
	uint32_t state;
};

/* the reader's pull: the next piece of the input, at most n bytes; 0 at its end */
static ssize_t pull_piece(void *ctx, void *p, size_t n, int64_t deadline)
{
	struct source *src = ctx;
	uint32_t r = next_rand(&src->state);
	size_t take, rest = src->size - src->pos;

	(void)deadline;
	switch (r % 4) {
	case 0:
		take = 1 + (r >> 2) % 3;
		break; /* a byte or three: split everything */
	case 1:
		take = 1 + (r >> 2) % 64;
		break;
	case 2:
		take = 1 + (r >> 2) % 4096;
		break;
	default:
		take = rest;
		break; /* all that is left */
	}
	if (take > rest)
		take = rest;
	if (take > n)
		take = n;
	memcpy(p, src->data + src->pos, take);
	src->pos += take;
	return (ssize_t)take;
}

/* --- the caller's output, counted ---------------------------------------------- */

struct counted {
	uint64_t out, err;
};

static void touch(const char *p, size_t n)
{
	volatile char c;

	if (n) {
		c = p[0];
		c = p[n - 1];
		(void)c;
	}
}

static void count_out(void *ctx, const char *p, size_t n)
{
	touch(p, n);
	((struct counted *)ctx)->out += n;
}

static void count_err(void *ctx, const char *p, size_t n)
{
	touch(p, n);
	((struct counted *)ctx)->err += n;
}

/* --- the harness ----------------------------------------------------------------- */

/* one reader for both replies, as a connection's input buffer is: bytes
 * the first reply's reading pulled past its end are the second's */
static struct resp_reader reader;

/* the HMGET of a large entry's run id and bytes; *changed when the run id
 * is not the metadata's */
static int fetch_big(const char *rid, const struct entry_meta *m, struct counted *c, bool *changed)
{
	struct body_reply br = {
		.rid = rid,
		.out_len = m->out_len,
		.err_len = m->err_len,
		.out = count_out,
		.err = count_err,
		.ctx = c,
	};

	int rc = body_reply_read(&reader, &br);
	*changed = br.changed;
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lookup res;
	struct counted c = {0, 0};
	struct entry_reply er = {
		.res = &res,
		.inline_max = FUZZ_INLINE_MAX,
		.out = count_out,
		.err = count_err,
		.ctx = &c,
	};
	struct source src = {.data = data, .size = size, .state = fnv1a(data, size)};

	memset(&res, 0, sizeof(res));
	resp_reader_init(&reader, pull_piece, &src);
	int rc = entry_reply_read(&reader, &er);
	CHECK(reader.pos <= reader.len && reader.len <= sizeof(reader.buf));
	if (rc == 0 && strcmp(er.verdict, "none") != 0) {
		switch (res.verdict) {
		case VERDICT_HIT:
		case VERDICT_STALE:
		case VERDICT_DONE:
			CHECK(res.meta.status >= 0 && res.meta.status <= 255);
			bool changed = false;
			if (er.big) {
				CHECK(res.meta.out_len + res.meta.err_len > FUZZ_INLINE_MAX);
				CHECK(c.out == 0 && c.err == 0);
				rc = fetch_big(er.rid, &res.meta, &c, &changed);
			}
			/* another run's bytes never reach the caller, not one */
			if (changed)
				CHECK(c.out == 0 && c.err == 0);
			/* on success the caller got exactly the entry's bytes */
			else if (rc == 0)
				CHECK(c.out == res.meta.out_len && c.err == res.meta.err_len);
			break;
		case VERDICT_WAIT:
			CHECK(strlen(res.holder) <= TOKEN_LEN);
			break;
		case VERDICT_LEAD:
			break;
		case VERDICT_BYPASS:
			/* the round's output was too large: no bytes come with it */
			CHECK(c.out == 0 && c.err == 0);
			break;
		}
	}
	CHECK(src.pos <= src.size);
	return 0;
}
