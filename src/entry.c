/* entry: the metadata codec shared by both stores, and the freshness rule. */
#include "entry.h"

#include <math.h> /* frexp, which libc itself exports */
#include <stdio.h>
#include <string.h>

#include "key.h"
#include "util.h"

/* the field names, in the order they are written (policy_names.h) */
const char *const entry_field_names[ENTRY_NFIELDS] = {ENTRY_META_LIST(POLICY_TEXT)};

int parse_decimal(const char *p, size_t len, int64_t max, int64_t *out)
{
	int64_t v = 0;

	if (len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		int d = p[i] - '0';
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

void entry_meta_encode(const struct entry_meta *m, struct entry_field f[ENTRY_NFIELDS])
{
	for (int i = 0; i < ENTRY_NFIELDS; i++)
		f[i].name = entry_field_names[i];
	snprintf(f[0].value, sizeof(f[0].value), "%d", ENTRY_VERSION);
	snprintf(f[1].value, sizeof(f[1].value), "%d", m->status);
	snprintf(f[2].value, sizeof(f[2].value), "%lld", (long long)m->created_ms);
	snprintf(f[3].value, sizeof(f[3].value), "%lld", (long long)m->ttl_ms);
	snprintf(f[4].value, sizeof(f[4].value), "%lld", (long long)m->stale_ms);
	snprintf(f[5].value, sizeof(f[5].value), "%lld", (long long)m->sie_ms);
	snprintf(f[6].value, sizeof(f[6].value), "%lld", (long long)m->compute_ms);
	snprintf(f[7].value, sizeof(f[7].value), "%llu", (unsigned long long)m->out_len);
	snprintf(f[8].value, sizeof(f[8].value), "%llu", (unsigned long long)m->err_len);
	snprintf(f[9].value, sizeof(f[9].value), "%s", m->host);
	snprintf(f[10].value, sizeof(f[10].value), "%s", m->sig);
	entry_codec_text(m, f[11].value);
}

void entry_codec_text(const struct entry_meta *m, char out[64])
{
	if (m->zstd)
		snprintf(out, 64, "zstd:%llu:%llu", (unsigned long long)m->raw_out_len,
			 (unsigned long long)m->raw_err_len);
	else
		out[0] = '\0';
}

/* decode the "z" field at p (len bytes): none, or "zstd:RAWOUT:RAWERR";
 * 0, or -1 with err_set() for a codec this build does not read */
static int decode_codec(struct entry_meta *m, const char *p, size_t len)
{
	const char *c1, *c2;
	int64_t o, e;

	if (len == 0)
		return 0;
	if (len < 8 || memcmp(p, "zstd:", 5) != 0 || !(c1 = memchr(p + 5, ':', len - 5)) ||
	    (c2 = memchr(c1 + 1, ':', p + len - (c1 + 1))) ||
	    parse_decimal(p + 5, c1 - (p + 5), INT64_MAX, &o) < 0 ||
	    parse_decimal(c1 + 1, p + len - (c1 + 1), INT64_MAX, &e) < 0) {
		err_set("entry field z names no codec this build reads");
		return -1;
	}
	m->zstd = true;
	m->raw_out_len = (uint64_t)o;
	m->raw_err_len = (uint64_t)e;
	return 0;
}

/* copy len bytes to out as printable ASCII ('?' for any other byte) and
 * NUL-terminate: what a header line or a terminal line may hold */
static void printable_copy(char *out, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		out[i] = p[i] >= 0x20 && p[i] <= 0x7e ? p[i] : '?';
	out[len] = '\0';
}

static int find_field(const char *name, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	return -1;
}

/* decode the named numeric field into *out, which must lie in [0, max] */
static int decode_number(const char *name, int64_t max, int64_t *out, const char *const *names,
			 const char *const *values, const size_t *lens, size_t n)
{
	int i = find_field(name, names, n);

	if (i < 0) {
		err_set("entry has no field %s", name);
		return -1;
	}
	if (parse_decimal(values[i], lens[i], max, out) < 0) {
		err_set("entry field %s is not a number in range", name);
		return -1;
	}
	return 0;
}

/* whether the len bytes at p are hex digits and colons only, as a signature's */
static bool is_sig_text(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f') || p[i] == ':'))
			return false;
	return true;
}

int entry_meta_decode(struct entry_meta *m, const char *const *names, const char *const *values,
		      const size_t *lens, size_t n)
{
	int64_t version, status, olen, elen;

	memset(m, 0, sizeof(*m));
	if (decode_number("v", 1000000, &version, names, values, lens, n) < 0)
		return -1;
	if (version != ENTRY_VERSION) {
		err_set("entry has format version %lld, this build reads %d", (long long)version,
			ENTRY_VERSION);
		return -1;
	}
	if (decode_number("st", 255, &status, names, values, lens, n) < 0 ||
	    decode_number("ct", MS_MAX, &m->created_ms, names, values, lens, n) < 0 ||
	    decode_number("ttl", MS_MAX, &m->ttl_ms, names, values, lens, n) < 0 ||
	    decode_number("sw", MS_MAX, &m->stale_ms, names, values, lens, n) < 0 ||
	    decode_number("se", MS_MAX, &m->sie_ms, names, values, lens, n) < 0 ||
	    decode_number("dt", MS_MAX, &m->compute_ms, names, values, lens, n) < 0 ||
	    decode_number("olen", INT64_MAX, &olen, names, values, lens, n) < 0 ||
	    decode_number("elen", INT64_MAX, &elen, names, values, lens, n) < 0)
		return -1;
	m->status = (int)status;
	m->out_len = (uint64_t)olen;
	m->err_len = (uint64_t)elen;
	int h = find_field("host", names, n);
	if (h >= 0) {
		size_t hl = lens[h] < ENTRY_HOST_MAX - 1 ? lens[h] : ENTRY_HOST_MAX - 1;
		memcpy(m->host, values[h], hl);
		m->host[hl] = '\0';
	}
	/* optional (an entry written before signing existed has none); a
	 * value that cannot be a signature is none */
	int g = find_field(entry_field_names[META_SIG], names, n);
	if (g >= 0 && lens[g] <= SIG_MAX && is_sig_text(values[g], lens[g])) {
		memcpy(m->sig, values[g], lens[g]);
		m->sig[lens[g]] = '\0';
	}
	int z = find_field(entry_field_names[META_CODEC], names, n);
	if (z >= 0 && decode_codec(m, values[z], lens[z]) < 0)
		return -1;
	int c = find_field(ENTRY_CMD_FIELD, names, n);
	if (c >= 0)
		printable_copy(m->cmd, values[c],
			       lens[c] < ENTRY_CMD_MAX ? lens[c] : ENTRY_CMD_MAX);
	return 0;
}

/* --- the command's display form ---------------------------------------------- */

/* a display form being built: pieces (one character, or one escape) are
 * appended whole; the first that does not fit ends it with "..." at the
 * last piece boundary that leaves room for it */
struct display {
	char *out;
	size_t len;
	size_t cut; /* where "..." goes if the rest does not fit */
	bool full;
};

static void piece(struct display *d, const char *p, size_t n)
{
	if (d->full)
		return;
	if (d->len + n > ENTRY_CMD_MAX) {
		memcpy(d->out + d->cut, "...", 3);
		d->len = d->cut + 3;
		d->full = true;
		return;
	}
	memcpy(d->out + d->len, p, n);
	d->len += n;
	if (d->len <= ENTRY_CMD_MAX - 3)
		d->cut = d->len;
}

static bool shell_safe(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr("_@%+=:,./-", c) != NULL;
}

/* one word of COMMAND, quoted as it needs */
static void display_word(struct display *d, const char *w, bool first)
{
	bool bare = *w != '\0', printable = true;

	for (const unsigned char *c = (const unsigned char *)w; *c; c++) {
		if (!shell_safe(*c) || (first && *c == '='))
			bare = false;
		if (*c < 0x20 || *c > 0x7e)
			printable = false;
	}
	if (bare) {
		for (; *w; w++)
			piece(d, w, 1);
		return;
	}
	if (printable) {
		piece(d, "'", 1);
		for (; *w; w++)
			piece(d, *w == '\'' ? "'\\''" : w, *w == '\'' ? 4 : 1);
		piece(d, "'", 1);
		return;
	}
	piece(d, "$'", 2);
	for (const unsigned char *c = (const unsigned char *)w; *c; c++) {
		char esc[8];
		const char *named = *c == '\n'   ? "\\n"
				    : *c == '\t' ? "\\t"
				    : *c == '\r' ? "\\r"
				    : *c == '\\' ? "\\\\"
				    : *c == '\'' ? "\\'"
						 : NULL;
		if (named)
			piece(d, named, 2);
		else if (*c < 0x20 || *c > 0x7e)
			piece(d, esc, (size_t)snprintf(esc, sizeof(esc), "\\x%02x", *c));
		else
			piece(d, (const char *)c, 1);
	}
	piece(d, "'", 1);
}

void entry_command_display(char out[ENTRY_CMD_MAX + 1], char *const *argv)
{
	struct display d = {.out = out};

	for (char *const *a = argv; *a && !d.full; a++) {
		if (a != argv)
			piece(&d, " ", 1);
		display_word(&d, *a, a == argv);
	}
	out[d.len] = '\0';
}

int64_t entry_lifetime(const struct entry_meta *m)
{
	return m->ttl_ms + (m->stale_ms > m->sie_ms ? m->stale_ms : m->sie_ms);
}

enum freshness entry_freshness(const struct entry_meta *m, int64_t now_ms)
{
	int64_t age = now_ms - m->created_ms;

	if (age < m->ttl_ms)
		return ENTRY_FRESH;
	if (age < m->ttl_ms + m->stale_ms)
		return ENTRY_STALE;
	if (age < m->ttl_ms + m->sie_ms)
		return ENTRY_STALE_IF_ERROR;
	return ENTRY_EXPIRED;
}

double entry_neg_ln(double r)
{
	int e;
	double m = frexp(r, &e);

	/* m in [sqrt(1/2), sqrt(2)): s is small, and r = 1 gives exactly 0 */
	if (m < 0.70710678118654752440) {
		m *= 2;
		e--;
	}
	double s = (m - 1) / (m + 1), s2 = s * s, term = s, sum = 0;
	for (int k = 1; k < 40; k += 2) {
		sum += term / k;
		term *= s2;
	}
	return -(e * 0.69314718055994530942 + 2 * sum);
}

bool entry_xfetch_fires(const struct entry_meta *m, int64_t age_ms, double beta, double rand)
{
	if (beta <= 0 || m->compute_ms <= 0 || rand <= 0 || rand > 1)
		return false;
	return (double)age_ms + (double)m->compute_ms * beta * entry_neg_ln(rand) >=
	       (double)m->ttl_ms;
}

void entry_xfetch_args(double beta, double rand, char beta_out[ENTRY_XFETCH_ARG_MAX],
		       char draw_out[ENTRY_XFETCH_ARG_MAX])
{
	const double steps = 9007199254740992.0; /* 2^53 */

	if (beta >= 0 && beta <= 1e15 && beta == (double)(uint64_t)beta)
		dec_u64(beta_out, (uint64_t)beta);
	else
		snprintf(beta_out, ENTRY_XFETCH_ARG_MAX, "%.17g", beta);
	if (!(rand > 0 && rand <= 1)) {
		dec_u64(draw_out, 0); /* out of range: no early refresh */
		return;
	}
	double n = rand * steps;
	uint64_t up = (uint64_t)n;
	if ((double)up < n)
		up++;
	dec_u64(draw_out, up);
}

void entry_header_sum(char out[ENTRY_SUM_LEN + 1], const char *p, size_t len)
{
	char hex[KEY_HASH_HEX];

	key_hash_hex(hex, p, len);
	memcpy(out, hex, ENTRY_SUM_LEN);
	out[ENTRY_SUM_LEN] = '\0';
}

void entry_header_write(struct buf *b, const struct entry_meta *m)
{
	struct entry_field f[ENTRY_NFIELDS];
	size_t start = b->len;
	char sum[ENTRY_SUM_LEN + 1];

	entry_meta_encode(m, f);
	buf_append(b, ENTRY_MAGIC, sizeof(ENTRY_MAGIC) - 1);
	for (int i = 0; i < ENTRY_NFIELDS; i++) {
		/* a newline in the host name would end the header early */
		for (char *c = f[i].value; *c; c++)
			if (*c == '\n' || *c == '=')
				*c = '_';
		buf_appendf(b, "%s=%s\n", f[i].name, f[i].value);
	}
	if (m->cmd[0]) {
		char cmd[ENTRY_CMD_MAX + 1];
		size_t len = strnlen(m->cmd, ENTRY_CMD_MAX);
		printable_copy(cmd, m->cmd, len);
		buf_appendf(b, "%s=%s\n", ENTRY_CMD_FIELD, cmd);
	}
	entry_header_sum(sum, b->data + start, b->len - start);
	buf_appendf(b, "sum=%s\n\n", sum);
}

/* the "sum=" line of line_len bytes, pos bytes into the header at p, is
 * well formed, is followed by the empty line that ends the header, and
 * matches the bytes before it; 0, or -1 with err_set() */
static int check_sum(const char *p, size_t len, size_t pos, size_t line_len)
{
	char want[ENTRY_SUM_LEN + 1];

	if (line_len != 4 + ENTRY_SUM_LEN || len - pos < line_len + 2 ||
	    p[pos + line_len + 1] != '\n') {
		err_set("entry header's checksum line is malformed or not last");
		return -1;
	}
	entry_header_sum(want, p, pos);
	if (memcmp(p + pos + 4, want, ENTRY_SUM_LEN) != 0) {
		err_set("entry header does not match its checksum");
		return -1;
	}
	return 0;
}

int entry_header_parse(const char *p, size_t len, struct entry_meta *m, size_t *hdr_len)
{
	const char *names[ENTRY_NFIELDS * 2], *values[ENTRY_NFIELDS * 2];
	size_t lens[ENTRY_NFIELDS * 2], n = 0, pos = sizeof(ENTRY_MAGIC) - 1;
	/* names are compared with strcmp, so they are copied out NUL-terminated */
	char name_store[ENTRY_NFIELDS * 2][16];

	if (len < pos || memcmp(p, ENTRY_MAGIC, pos) != 0) {
		err_set("entry file does not start with the cachefence header");
		return -1;
	}
	for (;;) {
		const char *nl = memchr(p + pos, '\n', len - pos);
		if (!nl) {
			err_set("entry header is truncated");
			return -1;
		}
		size_t line_len = nl - (p + pos);
		if (line_len == 0) {
			err_set("entry header has no checksum");
			return -1;
		}
		if (line_len >= 4 && memcmp(p + pos, "sum=", 4) == 0) {
			if (check_sum(p, len, pos, line_len) < 0)
				return -1;
			pos += line_len + 2;
			break;
		}
		const char *eq = memchr(p + pos, '=', line_len);
		if (!eq || n == ENTRY_NFIELDS * 2) {
			err_set("entry header has a malformed line");
			return -1;
		}
		size_t nl_len = eq - (p + pos);
		if (nl_len >= sizeof(name_store[0]) || memchr(p + pos, '\0', nl_len)) {
			err_set("entry header has a malformed line");
			return -1;
		}
		memcpy(name_store[n], p + pos, nl_len);
		name_store[n][nl_len] = '\0';
		names[n] = name_store[n];
		values[n] = eq + 1;
		lens[n] = nl - (eq + 1);
		n++;
		pos += line_len + 1;
	}
	if (entry_meta_decode(m, names, values, lens, n) < 0)
		return -1;
	*hdr_len = pos;
	return 0;
}
