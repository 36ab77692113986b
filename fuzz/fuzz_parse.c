/* fuzz_parse: the number grammars of the command line (parse_duration,
 * parse_size, parse_nonneg_double) on any string, each checked against a
 * reference written here from the documented grammar: DIGITS[.DIGITS] and
 * a unit (for durations, one or more such terms added up), rounded to the nearest integer with halves up, accepted iff the
 * value is within its limit. The reference works in 128-bit integers on up to
 * 18 fraction digits; with more, it allows the one-off its truncation may
 * cause. parse_nonneg_double reads at most 22 decimals and stops adding
 * digits past 2^53, so it is checked against strtod to within those. Every
 * rejection must leave a one-line error. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "parse.h"

typedef unsigned __int128 u128;

#define DURATION_MAX_MS ((uint64_t)36525 * 86400000)

struct unit {
	const char *name;
	uint64_t scale;
};

static const struct unit duration_units[] = {
	{"", 1000},           {"ms", 1},          {"msec", 1},        {"s", 1000},
	{"sec", 1000},        {"second", 1000},   {"seconds", 1000},  {"m", 60000},
	{"min", 60000},       {"minute", 60000},  {"minutes", 60000}, {"h", 3600000},
	{"hr", 3600000},      {"hour", 3600000},  {"hours", 3600000}, {"d", 86400000},
	{"day", 86400000},    {"days", 86400000}, {"w", 604800000},   {"week", 604800000},
	{"weeks", 604800000},
};

static const struct unit size_units[] = {
	{"", 1},         {"B", 1},       {"k", 1 << 10},  {"K", 1 << 10},  {"kB", 1 << 10},
	{"KB", 1 << 10}, {"m", 1 << 20}, {"M", 1 << 20},  {"mB", 1 << 20}, {"MB", 1 << 20},
	{"g", 1 << 30},  {"G", 1 << 30}, {"gB", 1 << 30}, {"GB", 1 << 30},
};

/* DIGITS[.DIGITS] at the start of s */
struct number {
	u128 ip; /* saturates at 2^100: far beyond any limit */
	const char *frac;
	size_t nfrac;
	const char *rest; /* what follows the number */
};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool scan(const char *s, struct number *n)
{
	const u128 cap = (u128)1 << 100;

	memset(n, 0, sizeof(*n));
	if (!is_digit(*s))
		return false;
	for (; is_digit(*s); s++)
		n->ip = n->ip >= cap ? cap : n->ip * 10 + (unsigned)(*s - '0');
	if (*s == '.') {
		s++;
		if (!is_digit(*s))
			return false;
		n->frac = s;
		while (is_digit(*s))
			s++;
		n->nfrac = s - n->frac;
	}
	n->rest = s;
	return true;
}

static const struct unit *find(const struct unit *units, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(units[i].name, name) == 0)
			return &units[i];
	return NULL;
}

/* n times scale rounded half up, from at most 18 fraction digits, into *v;
 * *exact is false when later digits could have rounded it one up */
static void reference(const struct number *n, uint64_t scale, u128 *v, bool *exact)
{
	size_t k = n->nfrac < 18 ? n->nfrac : 18;
	u128 p10 = 1, f = 0;

	for (size_t i = 0; i < k; i++) {
		p10 *= 10;
		f = f * 10 + (unsigned)(n->frac[i] - '0');
	}
	/* value = ip*scale + f*scale/p10; round the second part half up */
	u128 t = 2 * f * scale + p10;
	*v = n->ip * scale + t / (2 * p10);
	/* the dropped digits add less than scale/p10 to f*scale/p10 */
	*exact = n->nfrac <= 18 || 2 * p10 - t % (2 * p10) > 2 * (u128)scale;
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* check one parse_duration of s: terms NUMBER[UNIT] added up, each rounded
 * on its own; a lone number is seconds, every term of more needs its unit */
static void check_duration(const char *s, int rc, uint64_t got)
{
	const size_t nunits = sizeof(duration_units) / sizeof(*duration_units);
	const char *p = s;
	u128 sum = 0;
	unsigned slack = 0, terms = 0;

	do {
		struct number n;
		char name[32];
		size_t len = 0;

		if (!scan(p, &n)) {
			CHECK(rc < 0);
			return;
		}
		while (is_alpha(n.rest[len]))
			len++;
		const struct unit *u = NULL;
		if (len < sizeof(name) && (len > 0 || (!*n.rest && terms == 0))) {
			memcpy(name, n.rest, len);
			name[len] = '\0';
			u = find(duration_units, nunits, name);
		}
		/* an integer part this large is too long whatever follows */
		if (!u || n.ip > DURATION_MAX_MS) {
			CHECK(rc < 0);
			return;
		}
		u128 v;
		bool exact;
		reference(&n, u->scale, &v, &exact);
		sum += v;
		slack += !exact;
		p = n.rest + len;
		terms++;
	} while (*p);
	if (slack == 0) {
		CHECK(rc == (sum <= DURATION_MAX_MS ? 0 : -1));
		if (rc == 0)
			CHECK(got == sum);
	} else if (rc == 0) {
		CHECK(got >= sum && got <= sum + slack);
	} else {
		CHECK(sum + slack > DURATION_MAX_MS);
	}
}

/* check one parse of s with units against max: *got and rc from the parser */
static void check_scaled(const char *s, const struct unit *units, size_t nunits, u128 max, int rc,
			 uint64_t got)
{
	struct number n;
	const struct unit *u = NULL;

	if (scan(s, &n))
		u = find(units, nunits, n.rest);
	if (!u || n.ip > max) {
		CHECK(rc < 0);
		return;
	}
	u128 v;
	bool exact;
	reference(&n, u->scale, &v, &exact);
	if (exact) {
		CHECK(rc == (v <= max ? 0 : -1));
		if (rc == 0)
			CHECK(got == v);
	} else if (rc == 0) {
		CHECK(got == v || got == v + 1);
	} else {
		CHECK(v + 1 > max);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	int64_t ms = -1;
	uint64_t bytes = 0;
	double x = -1;
	int rc;

	rc = parse_duration(s, &ms);
	if (rc < 0)
		CHECK(one_line(err_msg()));
	else
		CHECK(ms >= 0 && (uint64_t)ms <= DURATION_MAX_MS);
	check_duration(s, rc, (uint64_t)ms);

	rc = parse_size(s, &bytes);
	if (rc < 0)
		CHECK(one_line(err_msg()));
	check_scaled(s, size_units, sizeof(size_units) / sizeof(*size_units), UINT64_MAX, rc,
		     bytes);

	rc = parse_nonneg_double(s, &x);
	struct number n;
	bool valid = scan(s, &n) && *n.rest == '\0' && n.ip <= UINT64_MAX;
	CHECK((rc == 0) == valid);
	if (rc < 0) {
		CHECK(one_line(err_msg()));
	} else {
		double ref = strtod(s, NULL);
		CHECK(isfinite(x) && x >= 0);
		CHECK(fabs(x - ref) <= ref * 2e-15 + 1e-22);
	}
	free(s);
	return 0;
}
