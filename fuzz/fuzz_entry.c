/* fuzz_entry: the entry codec on hostile bytes. Each input is tried three
 * ways: as a local store file (entry_header_parse, as it is and with its
 * checksum line made to match), as "name=value" lines
 * (entry_meta_decode with any names), and as the ENTRY_NFIELDS values of
 * the Redis store's HMGET/script reply (entry_meta_decode with the fixed names). Values
 * are copied to buffers of their exact length, so reading past a length is
 * caught. Whatever decodes must be in range and survive encoding again. */
#define _GNU_SOURCE /* memmem */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "fuzz.h"

/* the range entry.c allows for times (MS_MAX there) */
#define TIME_MAX ((int64_t)1 << 52)
#define MAX_LINES 64

static void check_meta(const struct entry_meta *m)
{
	CHECK(m->status >= 0 && m->status <= 255);
	CHECK(m->created_ms >= 0 && m->created_ms <= TIME_MAX);
	CHECK(m->ttl_ms >= 0 && m->ttl_ms <= TIME_MAX);
	CHECK(m->stale_ms >= 0 && m->stale_ms <= TIME_MAX);
	CHECK(m->sie_ms >= 0 && m->sie_ms <= TIME_MAX);
	CHECK(m->compute_ms >= 0 && m->compute_ms <= TIME_MAX);
	CHECK(m->out_len <= INT64_MAX && m->err_len <= INT64_MAX);
	CHECK(memchr(m->host, '\0', sizeof(m->host)) != NULL);
	/* the command goes to terminals and header lines: printable ASCII only */
	CHECK(memchr(m->cmd, '\0', sizeof(m->cmd)) != NULL);
	for (const char *c = m->cmd; *c; c++)
		CHECK(*c >= 0x20 && *c <= 0x7e);
	/* the sums the freshness rule makes cannot overflow */
	CHECK(entry_lifetime(m) >= m->ttl_ms);
	(void)entry_freshness(m, INT64_MAX / 2);
}

static bool same_numbers(const struct entry_meta *a, const struct entry_meta *b)
{
	return a->status == b->status && a->created_ms == b->created_ms && a->ttl_ms == b->ttl_ms &&
	       a->stale_ms == b->stale_ms && a->sie_ms == b->sie_ms &&
	       a->compute_ms == b->compute_ms && a->out_len == b->out_len &&
	       a->err_len == b->err_len && a->zstd == b->zstd && a->raw_out_len == b->raw_out_len &&
	       a->raw_err_len == b->raw_err_len && strcmp(a->sig, b->sig) == 0;
}

/* what decoded encodes to fields and to a file header that decode to the same */
static void check_round_trip(const struct entry_meta *m)
{
	struct entry_field f[ENTRY_NFIELDS];
	const char *names[ENTRY_NFIELDS], *values[ENTRY_NFIELDS];
	size_t lens[ENTRY_NFIELDS], hdr_len = 0;
	struct entry_meta back;
	struct buf h = {0};
	char host[ENTRY_HOST_MAX];

	entry_meta_encode(m, f);
	for (int i = 0; i < ENTRY_NFIELDS; i++) {
		names[i] = f[i].name;
		values[i] = f[i].value;
		lens[i] = strlen(f[i].value);
	}
	CHECK(entry_meta_decode(&back, names, values, lens, ENTRY_NFIELDS) == 0);
	CHECK(same_numbers(m, &back));
	CHECK(strcmp(m->host, back.host) == 0);

	/* the header form turns '\n' and '=' in values into '_' */
	strcpy(host, m->host);
	for (char *c = host; *c; c++)
		if (*c == '\n' || *c == '=')
			*c = '_';
	entry_header_write(&h, m);
	buf_append(&h, "tail", 4);
	CHECK(entry_header_parse(h.data, h.len, &back, &hdr_len) == 0);
	CHECK(hdr_len == h.len - 4);
	CHECK(same_numbers(m, &back));
	CHECK(strcmp(host, back.host) == 0);
	CHECK(strcmp(m->cmd, back.cmd) == 0);
	buf_free(&h);
}

/* the input as a local store file */
static void try_header(const uint8_t *data, size_t size)
{
	struct entry_meta m;
	size_t hdr_len = (size_t)-1;

	if (entry_header_parse((const char *)data, size, &m, &hdr_len) < 0) {
		CHECK(one_line(err_msg()));
		return;
	}
	CHECK(hdr_len >= 2 + 4 + ENTRY_SUM_LEN + 1 && hdr_len <= size);
	CHECK(data[hdr_len - 1] == '\n' && data[hdr_len - 2] == '\n');
	CHECK(memcmp(data + hdr_len - 2 - ENTRY_SUM_LEN - 4, "sum=", 4) == 0);
	check_meta(&m);
	check_round_trip(&m);
}

/* the input with the digits after its first "\nsum=" made the checksum of
 * what comes before that line, so the fuzzer reaches the field checks
 * behind the checksum, which it would seldom get right by mutation */
static void try_resealed(const uint8_t *data, size_t size)
{
	static const char mark[] = "\nsum=";
	const uint8_t *at = memmem(data, size, mark, sizeof(mark) - 1);

	if (!at || (size_t)(at - data) + sizeof(mark) - 1 + ENTRY_SUM_LEN > size)
		return;
	size_t line = at - data + 1;
	char *copy = xmemdup(data, size);
	char sum[ENTRY_SUM_LEN + 1];
	entry_header_sum(sum, copy, line);
	memcpy(copy + line + 4, sum, ENTRY_SUM_LEN);
	try_header((const uint8_t *)copy, size);
	free(copy);
}

/* exact-length copies of the input's lines, at most MAX_LINES */
struct lines {
	size_t n;
	char *text[MAX_LINES];
	size_t len[MAX_LINES];
};

static void split_lines(struct lines *l, const uint8_t *data, size_t size)
{
	size_t pos = 0;

	l->n = 0;
	while (pos < size && l->n < MAX_LINES) {
		const uint8_t *nl = memchr(data + pos, '\n', size - pos);
		size_t len = nl ? (size_t)(nl - (data + pos)) : size - pos;
		l->text[l->n] = xmalloc(len ? len : 1);
		memcpy(l->text[l->n], data + pos, len);
		l->len[l->n] = len;
		l->n++;
		pos += len + 1;
	}
}

static void free_lines(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->text[i]);
}

static void decoded(int rc, const struct entry_meta *m)
{
	if (rc < 0) {
		CHECK(one_line(err_msg()));
		return;
	}
	check_meta(m);
	check_round_trip(m);
}

/* the lines as name=value pairs, any names */
static void try_pairs(const struct lines *l)
{
	const char *names[MAX_LINES], *values[MAX_LINES];
	char *name_copies[MAX_LINES];
	size_t lens[MAX_LINES];
	struct entry_meta m;

	for (size_t i = 0; i < l->n; i++) {
		const char *eq = memchr(l->text[i], '=', l->len[i]);
		size_t nlen = eq ? (size_t)(eq - l->text[i]) : l->len[i];
		name_copies[i] = xmemdup(l->text[i], nlen);
		names[i] = name_copies[i];
		values[i] = eq ? eq + 1 : l->text[i] + l->len[i];
		lens[i] = eq ? l->len[i] - nlen - 1 : 0;
	}
	decoded(entry_meta_decode(&m, names, values, lens, l->n), &m);
	for (size_t i = 0; i < l->n; i++)
		free(name_copies[i]);
}

/* the first ten lines as the values of the Redis store's fields, in order */
static void try_redis_values(const struct lines *l)
{
	const char *values[ENTRY_NFIELDS];
	size_t lens[ENTRY_NFIELDS];
	struct entry_meta m;

	for (size_t i = 0; i < ENTRY_NFIELDS; i++) {
		values[i] = i < l->n ? l->text[i] : "";
		lens[i] = i < l->n ? l->len[i] : 0;
	}
	decoded(entry_meta_decode(&m, entry_field_names, values, lens, ENTRY_NFIELDS), &m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lines l;

	try_header(data, size);
	try_resealed(data, size);
	split_lines(&l, data, size);
	try_pairs(&l);
	try_redis_values(&l);
	free_lines(&l);
	return 0;
}
