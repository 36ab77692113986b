/* fuzz_resp: our own RESP reader (src/resp.c) on hostile bytes, read the
 * way the Redis store reads a lookup's reply, with the same code
 * (src/reply.c): the script's reply, then, for an entry too large to
 * inline, the HMGET reply of its run id and bytes, streamed with resp_stream.
 *
 * The bytes reach the reader through a pipe, in pieces whose sizes follow
 * from the input (a packet-mode pipe makes each read return one piece), so
 * splits of a header, a number or a value across reads are tried, and a
 * crash reproduces from its input alone. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <unistd.h>

#include "entry.h"
#include "fuzz.h"
#include "reply.h"
#include "resp.h"
#include "store.h"

/* values up to this size come inside the script's reply, larger ones come
 * as nil and are fetched with HGET; store_redis.c draws the line at 1 MiB,
 * here it is lower so that inputs of a fuzzer's size reach both paths */
#define INLINE_MAX 256

/* --- the pipe ------------------------------------------------------------------ */

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

/* a pipe holding the input, its write end closed, so the reader meets the
 * end of the input as a closed connection. In packet mode each write is one
 * packet and each read returns at most one, so the pieces below are what
 * the reader gets; a packet takes a page of the pipe, so when the pages run
 * short the rest goes in whole packets. */
static int pipe_of(const uint8_t *data, size_t size)
{
	int fds[2];
	bool packets = true;

	if (pipe2(fds, O_CLOEXEC | O_DIRECT) < 0) {
		packets = false;
		if (pipe2(fds, O_CLOEXEC) < 0) {
			perror("pipe2");
			abort();
		}
	}
	/* 1 MiB is what an unprivileged process may ask for by default */
	int cap = fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
	if (cap < 0)
		cap = fcntl(fds[1], F_GETPIPE_SZ);
	if (cap < 0) {
		perror("F_GETPIPE_SZ");
		abort();
	}
	if (!packets && size > (size_t)cap)
		size = cap; /* a kernel without packet pipes: the rest would block */
	size_t slots = (size_t)cap / PIPE_BUF, used = 0, pos = 0;
	uint32_t state = fnv1a(data, size);
	while (pos < size) {
		uint32_t r = next_rand(&state);
		size_t n, rest = size - pos;
		switch (r % 4) {
		case 0: n = 1 + (r >> 2) % 3; break;    /* a byte or three: split everything */
		case 1: n = 1 + (r >> 2) % 64; break;
		case 2: n = 1 + (r >> 2) % PIPE_BUF; break;
		default: n = rest; break;                /* all that is left */
		}
		if (n > rest)
			n = rest;
		size_t need = (n + PIPE_BUF - 1) / PIPE_BUF + (rest - n + PIPE_BUF - 1) / PIPE_BUF;
		if (packets && used + need > slots)
			n = rest;
		if (write_all(fds[1], data + pos, n) < 0) {
			perror("write to the pipe");
			abort();
		}
		used += (n + PIPE_BUF - 1) / PIPE_BUF;
		pos += n;
	}
	close(fds[1]);
	return fds[0];
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

/* a reader for each command, as plain_command() starts one; the bytes the
 * previous one read ahead are handed on as its seed */
static struct resp_reader readers[2];

/* the HMGET of a large entry's run id and bytes; *changed when the run id
 * is not the metadata's */
static int fetch_big(int fd, const char *rid, const struct entry_meta *m, struct counted *c,
		     bool *changed)
{
	struct body_reply br = {
		.rid = rid, .out_len = m->out_len, .err_len = m->err_len,
		.out = count_out, .err = count_err, .ctx = c,
	};

	resp_reader_init(&readers[1], fd, readers[0].buf + readers[0].pos,
			 readers[0].len - readers[0].pos);
	int rc = body_reply_read(&readers[1], &br);
	*changed = br.changed;
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lookup res;
	struct counted c = {0, 0};
	struct entry_reply er = {
		.res = &res, .inline_max = INLINE_MAX, .out = count_out, .err = count_err, .ctx = &c,
	};
	int fd = pipe_of(data, size);

	memset(&res, 0, sizeof(res));
	resp_reader_init(&readers[0], fd, NULL, 0);
	int rc = entry_reply_read(&readers[0], &er);
	CHECK(readers[0].pos <= readers[0].len && readers[0].len <= sizeof(readers[0].buf));
	if (rc == 0 && strcmp(er.verdict, "none") != 0) {
		switch (res.verdict) {
		case VERDICT_HIT:
		case VERDICT_STALE:
		case VERDICT_DONE:
			CHECK(res.meta.status >= 0 && res.meta.status <= 255);
			bool changed = false;
			if (er.big) {
				CHECK(res.meta.out_len + res.meta.err_len > INLINE_MAX);
				CHECK(c.out == 0 && c.err == 0);
				rc = fetch_big(fd, er.rid, &res.meta, &c, &changed);
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
	close(fd);
	return 0;
}
