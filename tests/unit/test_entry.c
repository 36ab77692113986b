/* Unit tests of the entry codec: encode/decode round trips, strict decoding,
 * the freshness rule, and the local store's header form. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "entry.h"
#include "tap.h"

static struct entry_meta sample(void)
{
	struct entry_meta m = {
		.status = 7,
		.created_ms = 1700000000123,
		.ttl_ms = 60000,
		.stale_ms = 5000,
		.sie_ms = 10000,
		.compute_ms = 42,
		.out_len = 1048576,
		.err_len = 3,
	};
	strcpy(m.host, "web-1.example");
	return m;
}

/* decode fields[] with one value replaced (or the field dropped when value is NULL) */
static int decode_with(const char *name, const char *value, struct entry_meta *out)
{
	struct entry_meta m = sample();
	struct entry_field f[ENTRY_NFIELDS];
	const char *names[ENTRY_NFIELDS], *values[ENTRY_NFIELDS];
	size_t lens[ENTRY_NFIELDS], n = 0;

	entry_meta_encode(&m, f);
	for (int i = 0; i < ENTRY_NFIELDS; i++) {
		const char *v = f[i].value;
		if (name && strcmp(f[i].name, name) == 0) {
			if (!value)
				continue;
			v = value;
		}
		names[n] = f[i].name;
		values[n] = v;
		lens[n] = strlen(v);
		n++;
	}
	return entry_meta_decode(out, names, values, lens, n);
}

static void test_round_trip(void)
{
	struct entry_meta a = sample(), b;

	ok(decode_with(NULL, NULL, &b) == 0, "an encoded entry decodes");
	ok(memcmp(&a, &b, sizeof(a)) == 0, "every field survives the round trip");
}

static void test_strict_decoding(void)
{
	struct entry_meta m;

	ok(decode_with("v", "2", &m) < 0, "an entry of another format version is rejected");
	ok(decode_with("v", NULL, &m) < 0, "an entry without a version is rejected");
	ok(decode_with("st", NULL, &m) < 0, "an entry without a status is rejected");
	ok(decode_with("st", "256", &m) < 0, "a status above 255 is rejected");
	ok(decode_with("st", "-1", &m) < 0, "a negative status is rejected");
	ok(decode_with("st", "1x", &m) < 0, "a status with trailing junk is rejected");
	ok(decode_with("st", "", &m) < 0, "an empty status is rejected");
	ok(decode_with("ttl", "99999999999999999999999", &m) < 0, "an overflowing ttl is rejected");
	ok(decode_with("olen", " 5", &m) < 0, "a size with a leading space is rejected");
	ok(decode_with("host", NULL, &m) == 0 && m.host[0] == '\0',
	   "a missing host is allowed and empty");
	ok(decode_with("st", "0", &m) == 0 && m.status == 0, "status 0 decodes");
}

static void test_freshness(void)
{
	struct entry_meta m = sample(); /* ttl 60s, stale 5s, sie 10s */
	int64_t c = m.created_ms;

	ok(entry_freshness(&m, c) == ENTRY_FRESH, "an entry is fresh when just created");
	ok(entry_freshness(&m, c + 59999) == ENTRY_FRESH, "an entry is fresh 1ms before its ttl");
	ok(entry_freshness(&m, c + 60000) == ENTRY_STALE, "an entry is stale at its ttl");
	ok(entry_freshness(&m, c + 65000) == ENTRY_STALE_IF_ERROR,
	   "an entry past its stale window is stale-if-error");
	ok(entry_freshness(&m, c + 69999) == ENTRY_STALE_IF_ERROR,
	   "stale-if-error lasts until sie past the TTL");
	ok(entry_freshness(&m, c + 70000) == ENTRY_EXPIRED,
	   "an entry past every window is expired");
	ok(entry_lifetime(&m) == 70000, "the lifetime is the TTL plus the longer window");
	m.sie_ms = 1000;
	ok(entry_freshness(&m, c + 65000) == ENTRY_EXPIRED,
	   "a stale-if-error window shorter than the stale window adds nothing");
}

static void test_xfetch_args(void)
{
	char beta[ENTRY_XFETCH_ARG_MAX], draw[ENTRY_XFETCH_ARG_MAX];

	entry_xfetch_args(1.0, 1.0, beta, draw);
	ok(strcmp(beta, "1") == 0 && strcmp(draw, "9007199254740992") == 0,
	   "beta 1 and a draw of 1: '%s' '%s'", beta, draw);
	entry_xfetch_args(0.5, 0.5, beta, draw);
	ok(strcmp(beta, "0.5") == 0 && strcmp(draw, "4503599627370496") == 0,
	   "beta 0.5 and a draw of 1/2: '%s' '%s'", beta, draw);
	entry_xfetch_args(1e9, 3.0 / 9007199254740992.0, beta, draw);
	ok(strcmp(beta, "1000000000") == 0 && strcmp(draw, "3") == 0,
	   "a draw in 2^-53 steps is its step count: '%s' '%s'", beta, draw);
	entry_xfetch_args(0.0, 1e-300, beta, draw);
	ok(strcmp(beta, "0") == 0 && strcmp(draw, "1") == 0,
	   "a draw below one step rounds up to one: '%s' '%s'", beta, draw);
	entry_xfetch_args(1.0, 0.0, beta, draw);
	ok(strcmp(draw, "0") == 0, "a draw of 0 (out of range) is 0: '%s'", draw);
}

static void test_xfetch(void)
{
	struct entry_meta m = sample(); /* ttl 60s, compute 42ms */

	ok(!entry_xfetch_fires(&m, 1000, 0.0, 0.0001), "beta 0 never refreshes early");
	ok(!entry_xfetch_fires(&m, 1000, 1.0, 1.0), "a draw of 1 never refreshes early");
	ok(entry_xfetch_fires(&m, 1000, 1e9, 0.5), "a huge beta refreshes early on the first hit");
	ok(!entry_xfetch_fires(&m, 1000, 1.0, 0.5), "a normal beta far from expiry does not");
	ok(entry_xfetch_fires(&m, 59990, 1.0, 0.5), "a normal beta right before expiry does");
	m.compute_ms = 0;
	ok(!entry_xfetch_fires(&m, 59990, 1e9, 0.5),
	   "an entry with no compute time never refreshes early");
}

/* entry_neg_ln agrees with libm's -log over (0, 1]: at the ends, at the
 * powers of two where frexp's exponent steps, and at many draws between */
static void test_neg_ln(void)
{
	static const double fixed[] = {1.0,
				       0.5,
				       0.25,
				       0.75,
				       0.999999999,
				       1e-3,
				       1e-300,
				       5e-324,
				       2.2250738585072014e-308,
				       0.70710678118654752};
	double worst = 0;
	uint64_t x = 88172645463325252u;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]) + 100000; i++) {
		double r;
		if (i < sizeof(fixed) / sizeof(fixed[0])) {
			r = fixed[i];
		} else {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			r = (double)((x >> 11) + 1) / 9007199254740992.0; /* (0, 1] */
		}
		double want = -log(r), got = entry_neg_ln(r);
		double err = fabs(got - want) / (want > 1 ? want : 1);
		if (err > worst)
			worst = err;
	}
	ok(worst < 1e-14, "entry_neg_ln is -log to within 1e-14 over (0, 1] (worst %g)", worst);
	ok(entry_neg_ln(1.0) == 0, "entry_neg_ln(1) is exactly 0");
}

/* append the len header bytes at p and their checksum line to b */
static void seal(struct buf *b, const char *p, size_t len)
{
	char sum[ENTRY_SUM_LEN + 1];

	entry_header_sum(sum, p, len);
	buf_append(b, p, len);
	buf_appendf(b, "sum=%s\n\n", sum);
}

static void test_header(void)
{
	struct entry_meta a = sample(), b;
	struct buf h = {0};
	size_t hdr_len = 0;

	strcpy(a.host, "evil\nhost=x");
	entry_header_write(&h, &a);
	buf_append(&h, "payload", 7);
	ok(entry_header_parse(h.data, h.len, &b, &hdr_len) == 0, "a written header parses back");
	ok(hdr_len == h.len - 7 && memcmp(h.data + hdr_len, "payload", 7) == 0,
	   "the header length points at the stored bytes");
	ok(b.status == a.status && b.out_len == a.out_len, "header fields survive the round trip");
	ok(strchr(b.host, '\n') == NULL, "a newline in the host name cannot end the header early");
	ok(entry_header_parse(h.data, hdr_len - 1, &b, &hdr_len) < 0,
	   "a truncated header is rejected");
	ok(entry_header_parse("garbage\n\n", 9, &b, &hdr_len) < 0,
	   "a file without the magic line is rejected");
	/* found by fuzzing: a NUL in a name must not make "v\0junk" read as "v" */
	static const char nul_name[] = "cachefence-entry\nv\0junk=1\nst=0\nct=1\nttl=1\nsw=0\n"
				       "se=0\ndt=0\nolen=0\nelen=0\n";
	struct buf sealed = {0};
	seal(&sealed, nul_name, sizeof(nul_name) - 1);
	ok(entry_header_parse(sealed.data, sealed.len, &b, &hdr_len) < 0,
	   "a field name holding a NUL byte is rejected");
	buf_free(&sealed);
	buf_free(&h);
}

/* the header of a sample entry with olen and elen as given, ending in the
 * sum line "sum=SUM" as given, or (sum NULL) in its own checksum */
static void sizes_header(struct buf *b, const char *olen, const char *elen, const char *sum)
{
	struct buf fields = {0};

	buf_appendf(&fields,
		    "%sv=1\nst=0\nct=1000\nttl=60000\nsw=0\nse=0\ndt=5\n"
		    "olen=%s\nelen=%s\nhost=h\n",
		    ENTRY_MAGIC, olen, elen);
	if (sum) {
		buf_append(b, fields.data, fields.len);
		buf_appendf(b, "sum=%s\n\n", sum);
	} else {
		seal(b, fields.data, fields.len);
	}
	buf_free(&fields);
}

static void test_header_checksum(void)
{
	struct entry_meta m;
	struct buf h = {0}, moved = {0};
	size_t hdr_len;
	char sum[ENTRY_SUM_LEN + 1];

	sizes_header(&h, "10", "5", NULL);
	ok(entry_header_parse(h.data, h.len, &m, &hdr_len) == 0 && m.out_len == 10 &&
		   m.err_len == 5,
	   "a sealed header parses");
	/* the sum of all before "sum=SUM\n\n" is the sum the header holds */
	entry_header_sum(sum, h.data, h.len - (4 + ENTRY_SUM_LEN + 2));
	ok(memcmp(h.data + h.len - (ENTRY_SUM_LEN + 2), sum, ENTRY_SUM_LEN) == 0,
	   "the sum line holds the checksum of the header before it");
	/* the sizes moved by 3 but still add up to the same 15 bytes */
	sizes_header(&moved, "7", "8", sum);
	ok(entry_header_parse(moved.data, moved.len, &m, &hdr_len) < 0,
	   "sizes that were changed but still add up do not match the checksum");
	buf_free(&moved);
	sizes_header(&moved, "7", "8", NULL);
	ok(entry_header_parse(moved.data, moved.len, &m, &hdr_len) == 0 && m.out_len == 7,
	   "the same sizes sealed anew parse: the checksum is what told them apart");

	static const char unsealed[] = ENTRY_MAGIC "v=1\nst=0\nct=1\nttl=1\nsw=0\nse=0\n"
						   "dt=0\nolen=0\nelen=0\nhost=h\n\n";
	ok(entry_header_parse(unsealed, sizeof(unsealed) - 1, &m, &hdr_len) < 0,
	   "a header without a checksum is rejected");
	buf_free(&moved);
	buf_append(&moved, h.data, h.len - 1);
	buf_append(&moved, "x=1\n\n", 5);
	ok(entry_header_parse(moved.data, moved.len, &m, &hdr_len) < 0,
	   "a checksum that is not the last line is rejected");
	buf_free(&moved);
	sizes_header(&moved, "10", "5", "0123");
	ok(entry_header_parse(moved.data, moved.len, &m, &hdr_len) < 0,
	   "a checksum of the wrong length is rejected");
	buf_free(&h);
	buf_free(&moved);
}

/* the display form of argv, as a string */
static const char *shown(char *const *argv)
{
	static char out[ENTRY_CMD_MAX + 1];

	entry_command_display(out, argv);
	return out;
}

static void test_command_display(void)
{
	char *plain[] = {"ls", "-l", "/tmp/a_b@c%d+e=f:g,h.i", NULL};
	char *quoted[] = {"echo", "a b", "", "it's", "a\\b", "~x", "$HOME", NULL};
	char *escaped[] = {"printf", "new\nline", "\xff\x01", "tab\there\r", "q'b\\\x02", NULL};
	char *assign[] = {"A=b", "x=y", NULL};

	ok(strcmp(shown(plain), "ls -l /tmp/a_b@c%d+e=f:g,h.i") == 0,
	   "words of safe characters are shown bare");
	ok(strcmp(shown(quoted), "echo 'a b' '' 'it'\\''s' 'a\\b' '~x' '$HOME'") == 0,
	   "words with spaces, quotes or shell characters are single-quoted, an empty one as ''");
	ok(strcmp(shown(escaped),
		  "printf $'new\\nline' $'\\xff\\x01' $'tab\\there\\r' $'q\\'b\\\\\\x02'") == 0,
	   "words with bytes outside printable ASCII are shown as $'...' with escapes");
	ok(strcmp(shown(assign), "'A=b' x=y") == 0,
	   "a first word with '=' is quoted, so a shell does not read it as an assignment");

	/* 10,000 words: cut at the bound, with the mark */
	static char *many[10001];
	for (int i = 0; i < 10000; i++)
		many[i] = "abcdefgh";
	many[10000] = NULL;
	const char *m = shown(many);
	size_t len = strlen(m);
	ok(len <= ENTRY_CMD_MAX && len > ENTRY_CMD_MAX - 12 && strcmp(m + len - 3, "...") == 0,
	   "a long command is cut at %d bytes and ends with ... (got %zu)", ENTRY_CMD_MAX, len);

	/* a cut falls between two escapes, never inside one */
	static char ctl[2001];
	memset(ctl, 1, 2000);
	char *ctl_argv[] = {ctl, NULL};
	m = shown(ctl_argv);
	len = strlen(m);
	ok(len <= ENTRY_CMD_MAX && strcmp(m + len - 7, "\\x01...") == 0,
	   "a cut never splits an escape");

	/* exactly at the bound: nothing cut; one byte more: cut */
	static char word[ENTRY_CMD_MAX + 2];
	memset(word, 'a', ENTRY_CMD_MAX);
	char *fit[] = {word, NULL};
	m = shown(fit);
	ok(strlen(m) == ENTRY_CMD_MAX && strchr(m, '.') == NULL,
	   "a command of exactly the bound is whole");
	word[ENTRY_CMD_MAX] = 'a';
	m = shown(fit);
	ok(strlen(m) == ENTRY_CMD_MAX && strcmp(m + ENTRY_CMD_MAX - 4, "a...") == 0,
	   "a command one byte over the bound is cut");
}

static void test_command_field(void)
{
	struct entry_meta a = sample(), b;
	struct buf h = {0};
	size_t hdr_len = 0;
	struct entry_field f[ENTRY_NFIELDS];
	const char *names[ENTRY_NFIELDS + 1], *values[ENTRY_NFIELDS + 1];
	size_t lens[ENTRY_NFIELDS + 1];

	strcpy(a.cmd, "curl -s 'https://x/?a=1&b=2'");
	entry_header_write(&h, &a);
	ok(strstr(h.data, "\ncmd=curl -s 'https://x/?a=1&b=2'\nsum=") != NULL,
	   "the header holds the command, '=' included, before its checksum");
	ok(entry_header_parse(h.data, h.len, &b, &hdr_len) == 0 && strcmp(b.cmd, a.cmd) == 0,
	   "the command survives the header round trip");
	buf_free(&h);

	a.cmd[0] = '\0';
	entry_header_write(&h, &a);
	ok(strstr(h.data, "cmd=") == NULL, "an entry without a command writes no cmd line");
	ok(entry_header_parse(h.data, h.len, &b, &hdr_len) == 0 && b.cmd[0] == '\0',
	   "a header without a cmd line (an older entry) decodes, the command unknown");
	buf_free(&h);

	entry_meta_encode(&a, f);
	for (int i = 0; i < ENTRY_NFIELDS; i++) {
		names[i] = f[i].name;
		values[i] = f[i].value;
		lens[i] = strlen(f[i].value);
	}
	names[ENTRY_NFIELDS] = ENTRY_CMD_FIELD;
	values[ENTRY_NFIELDS] = "rm -rf\n\x1b[2J\xc3\xa9";
	lens[ENTRY_NFIELDS] = strlen(values[ENTRY_NFIELDS]);
	ok(entry_meta_decode(&b, names, values, lens, ENTRY_NFIELDS + 1) == 0 &&
		   strcmp(b.cmd, "rm -rf??[2J??") == 0,
	   "a stored command's bytes outside printable ASCII decode as '?'");
	static char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	values[ENTRY_NFIELDS] = big;
	lens[ENTRY_NFIELDS] = sizeof(big) - 1;
	ok(entry_meta_decode(&b, names, values, lens, ENTRY_NFIELDS + 1) == 0 &&
		   strlen(b.cmd) == ENTRY_CMD_MAX,
	   "an oversized stored command decodes cut to the bound");
}

int main(void)
{
	test_round_trip();
	test_strict_decoding();
	test_freshness();
	test_xfetch();
	test_xfetch_args();
	test_neg_ln();
	test_header();
	test_header_checksum();
	test_command_display();
	test_command_field();
	return done_testing();
}
