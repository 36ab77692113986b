/* parse: durations, sizes, plain numbers and store URLs, read by hand.
 * strtod() and friends accept signs, hex, exponents, "inf" and "nan" and follow
 * the locale; none of that belongs on a cachefence command line. Error lines
 * quote the user's value with control bytes escaped and any password hidden. */
#include "parse.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "util.h"

/* 100 years of 365.25 days: longer than any cache should live, and far
 * from the edge of int64 milliseconds */
#define DURATION_MAX_MS ((uint64_t)36525 * 86400000)
/* how much of a value an error line quotes before cutting it with "..." */
#define QUOTE_MAX 80
#define REDIS_PORT 6379
#define SENTINEL_PORT 26379
#define SERVICE_MAX 255

static const char duration_hint[] = "try 30s, 5m, 1h";
static const char size_hint[] = "try 512k, 64M, 1G";
static const char number_hint[] = "try 0, 0.5 or 1.0";
static const char url_hint[] = "use redis://HOST[:PORT][/DB], "
			       "redis+sentinel://HOST[:PORT]/SERVICE[/DB], unix:///PATH or "
			       "file:///DIR";

struct unit {
	const char *name;
	uint64_t scale;
};

/* systemd's and bkt's spellings as well as the short ones; no months or
 * years, whose length is not one number */
static const struct unit duration_units[] = {
	{"ms", 1},
	{"msec", 1},
	{"s", 1000},
	{"sec", 1000},
	{"second", 1000},
	{"seconds", 1000},
	{"m", 60 * 1000},
	{"min", 60 * 1000},
	{"minute", 60 * 1000},
	{"minutes", 60 * 1000},
	{"h", 60 * 60 * 1000},
	{"hr", 60 * 60 * 1000},
	{"hour", 60 * 60 * 1000},
	{"hours", 60 * 60 * 1000},
	{"d", 24 * 60 * 60 * 1000},
	{"day", 24 * 60 * 60 * 1000},
	{"days", 24 * 60 * 60 * 1000},
	{"w", 7 * 24 * 60 * 60 * 1000},
	{"week", 7 * 24 * 60 * 60 * 1000},
	{"weeks", 7 * 24 * 60 * 60 * 1000},
};

static const struct unit size_units[] = {
	{"", 1},        {"B", 1},       {"k", 1 << 10}, {"K", 1 << 10},
	{"m", 1 << 20}, {"M", 1 << 20}, {"g", 1 << 30}, {"G", 1 << 30},
};

/* a decimal number as written: DIGITS[.DIGITS] */
struct decimal {
	uint64_t ip;      /* the integer part; meaningless when too_big */
	int too_big;      /* the integer part does not fit in 64 bits */
	const char *frac; /* the digits after the point, not NUL-terminated */
	size_t nfrac;
};

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int to_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int hex_value(int c)
{
	if (is_digit(c))
		return c - '0';
	c = to_lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* s past an ASCII case-insensitive prefix, or NULL if s does not start with it */
static const char *skip_prefix(const char *s, const char *prefix)
{
	for (; *prefix; s++, prefix++) {
		if (to_lower((unsigned char)*s) != *prefix)
			return NULL;
	}
	return s;
}

/* the secrets an error line may not show: at most this many ranges, then
 * the rest of the value is hidden whole */
#define SECRETS_MAX 8

struct secrets {
	const char *start[SECRETS_MAX], *end[SECRETS_MAX];
	int n;
};

static void add_secret(struct secrets *sc, const char *start, const char *end)
{
	if (start >= end)
		return;
	if (sc->n == SECRETS_MAX) {
		sc->end[SECRETS_MAX - 1] = end + strlen(end); /* hide all that is left */
		return;
	}
	sc->start[sc->n] = start;
	sc->end[sc->n++] = end;
}

/* the password of USER:PASSWORD in the n bytes of user info at p (no ':',
 * no password) */
static void userinfo_secret(struct secrets *sc, const char *p, const char *at)
{
	const char *colon = memchr(p, ':', at - p);

	if (colon)
		add_secret(sc, colon + 1, at);
}

/* where the secrets of a URL-like string are, so error lines can hide them:
 * the password of redis://USER:PASSWORD@HOST (the last '@' ends it: no host
 * holds one); and in unix: and file: URLs, which take neither, whatever a
 * user may still have put there: the password of unix://USER:PASSWORD@/PATH
 * and the value of every query parameter but a numeric db (?password=...,
 * also when typed into the db value: ?db=0?password=...). Hiding too
 * much is harmless here, showing a password is not. */
static void find_secrets(const char *s, struct secrets *sc)
{
	const char *rest = skip_prefix(s, "unix:");

	sc->n = 0;
	if (!rest)
		rest = skip_prefix(s, "file:");
	if (!rest) {
		const char *p = strstr(s, "://"), *at;

		p = p ? p + 3 : s;
		at = strrchr(p, '@');
		if (at)
			userinfo_secret(sc, p, at);
		return;
	}
	for (int i = 0; i < 2 && *rest == '/'; i++)
		rest++; /* "unix://", or a mistyped "unix:/" */
	if (*rest != '/') {
		const char *at = strrchr(rest, '@');
		if (at) {
			/* no user name is known here: all of it may be the secret */
			if (memchr(rest, ':', at - rest))
				userinfo_secret(sc, rest, at);
			else
				add_secret(sc, rest, at);
			rest = at + 1;
		}
	}
	/* a query parameter follows a '?', or an '&' even with no '?' before it */
	const char *q = rest + strcspn(rest, "?&");
	while (*q) {
		const char *param = q + 1, *next = strchr(param, '&');
		const char *param_end = next ? next : param + strlen(param);
		const char *eq = memchr(param, '=', param_end - param);
		/* db=N shows, and a bad db that is one word; one with more in it
		 * may hold a mistyped "?db=0?password=..." */
		bool db = param_end - param >= 3 && strncmp(param, "db=", 3) == 0;
		if (!db || strspn(param + 3, "0123456789abcdefghijklmnopqrstuvwxyz"
					     "ABCDEFGHIJKLMNOPQRSTUVWXYZ_-") !=
				   (size_t)(param_end - param - 3))
			add_secret(sc, eq ? eq + 1 : param, param_end);
		q = param_end;
	}
}

/* a printable copy of a user's value for an error line: control bytes
 * escaped, long values cut, and with mask a URL's secrets shown as "***" */
static char *quote(const char *s, int mask)
{
	struct buf b = {0};
	struct secrets sc = {.n = 0};
	size_t shown = 0;
	int next = 0;

	if (mask)
		find_secrets(s, &sc);
	buf_append(&b, "", 0);
	for (const char *p = s; *p; p++) {
		unsigned char c = *p;

		if (next < sc.n && p == sc.start[next]) {
			buf_append(&b, "***", 3);
			p = sc.end[next++] - 1;
			continue;
		}
		if (shown++ == QUOTE_MAX) {
			buf_append(&b, "...", 3);
			break;
		}
		if (c < 0x20 || c == 0x7f)
			buf_appendf(&b, "\\x%02x", c);
		else
			buf_append(&b, p, 1);
	}
	return b.data;
}

/* err_set() a line that quotes the value s and then says what is wrong */
static void bad_value(const char *s, int mask, const char *fmt, ...) ATTR_PRINTF(3, 4);
static void bad_value(const char *s, int mask, const char *fmt, ...)
{
	char msg[512];
	char *q = quote(s, mask);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	err_set("\"%s\" %s", q, msg);
	free(q);
}

/* read DIGITS[.DIGITS] at *p and move *p past it; -1 if there is no such
 * number there ("", "-1", ".5", "5." and "x" have none) */
static int scan_decimal(const char **p, struct decimal *d)
{
	const char *s = *p;

	memset(d, 0, sizeof(*d));
	if (!is_digit(*s))
		return -1;
	for (; is_digit(*s); s++) {
		unsigned v = *s - '0';

		if (d->ip > (UINT64_MAX - v) / 10)
			d->too_big = 1;
		else
			d->ip = d->ip * 10 + v;
	}
	if (*s == '.') {
		s++;
		if (!is_digit(*s))
			return -1;
		d->frac = s;
		while (is_digit(*s))
			s++;
		d->nfrac = s - d->frac;
	}
	*p = s;
	return 0;
}

/* d times scale (at most 2^30), rounded to the nearest integer with halves
 * up, into *out; -1 if that exceeds max. The fraction is multiplied digit by
 * digit from the right, so the rounding is exact however many digits it has. */
static int scale_decimal(const struct decimal *d, uint64_t scale, uint64_t max, uint64_t *out)
{
	uint64_t carry = 0, first = 0, whole, add;

	if (d->too_big || d->ip > max / scale)
		return -1;
	for (size_t i = d->nfrac; i-- > 0;) {
		uint64_t t = (uint64_t)(d->frac[i] - '0') * scale + carry;

		first = t % 10;
		carry = t / 10;
	}
	/* carry is now the integer part of fraction * scale and first the
	 * digit after its point */
	whole = d->ip * scale;
	add = carry + (first >= 5);
	if (add > max - whole)
		return -1;
	*out = whole + add;
	return 0;
}

/* the unit named exactly s in the table, or NULL */
static const struct unit *find_unit(const struct unit *units, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(units[i].name, s) == 0)
			return &units[i];
	}
	return NULL;
}

/* the unit at *p (letters up to the next digit), moving *p past it; the
 * unit, or NULL with the letters copied into name */
static const struct unit *scan_duration_unit(const char **p, char *name, size_t max)
{
	size_t n = 0;

	while (is_alpha((unsigned char)(*p)[n]))
		n++;
	snprintf(name, max, "%.*s", (int)n, *p);
	*p += n;
	if (n >= max)
		return NULL;
	return find_unit(duration_units, sizeof(duration_units) / sizeof(*duration_units), name);
}

int parse_duration(const char *s, int64_t *ms)
{
	const char *p = s;
	uint64_t total = 0;
	int terms = 0;

	if (*s == '-') {
		bad_value(s, 0, "is not a duration: it cannot be negative (%s)", duration_hint);
		return -1;
	}
	/* one or more NUMBER[UNIT] terms added up (1h30m); a lone number is
	 * seconds, every term of a longer one needs its unit */
	do {
		const struct unit *unit = &duration_units[2]; /* seconds */
		struct decimal d;
		char name[16];
		uint64_t v;

		if (scan_decimal(&p, &d) < 0) {
			bad_value(s, 0, "is not a duration (%s)", duration_hint);
			return -1;
		}
		if (is_alpha((unsigned char)*p)) {
			unit = scan_duration_unit(&p, name, sizeof(name));
			if (!unit && !*p) {
				bad_value(s, 0,
					  "has an unknown unit \"%s\" (use ms, s, m, h, d or w)",
					  name);
				return -1;
			}
			if (!unit) { /* 1e3, 0x10 */
				bad_value(s, 0, "is not a duration (%s)", duration_hint);
				return -1;
			}
		} else if (*p || terms > 0) {
			bad_value(s, 0, "is not a duration: every part needs a unit (%s, 1h30m)",
				  duration_hint);
			return -1;
		}
		if (scale_decimal(&d, unit->scale, DURATION_MAX_MS - total, &v) < 0) {
			bad_value(s, 0, "is too long a duration (at most 36525d, about 100 years)");
			return -1;
		}
		total += v;
		terms++;
	} while (*p);
	*ms = (int64_t)total;
	return 0;
}

int parse_size(const char *s, uint64_t *bytes)
{
	const char *p = s;
	const struct unit *unit = NULL;
	struct decimal d;
	char suffix[3] = "";

	if (*s == '-') {
		bad_value(s, 0, "is not a size: it cannot be negative (%s)", size_hint);
		return -1;
	}
	/* the unit is one of the table's names with an optional 'B' after it */
	if (scan_decimal(&p, &d) == 0 && strlen(p) <= 2) {
		memcpy(suffix, p, strlen(p) + 1);
		if (suffix[0] != 'B' && suffix[1] == 'B')
			suffix[1] = '\0';
		unit = find_unit(size_units, sizeof(size_units) / sizeof(*size_units), suffix);
	}
	if (!unit) {
		bad_value(s, 0, "is not a size (%s)", size_hint);
		return -1;
	}
	if (scale_decimal(&d, unit->scale, UINT64_MAX, bytes) < 0) {
		bad_value(s, 0, "is too large a size (the limit is 16 EiB)");
		return -1;
	}
	return 0;
}

/* d as a double: exact up to 2^53 and 22 decimals, where one division of
 * two exact doubles rounds correctly; later digits are below that precision */
static double decimal_value(const struct decimal *d)
{
	uint64_t m = d->ip;
	double p10 = 1.0;

	for (size_t i = 0; i < d->nfrac && i < 22; i++) {
		if (m > (((uint64_t)1 << 53) - 9) / 10)
			break;
		m = m * 10 + (d->frac[i] - '0');
		p10 *= 10.0;
	}
	return (double)m / p10;
}

int parse_nonneg_double(const char *s, double *out)
{
	const char *p = s;
	struct decimal d;

	if (*s == '-') {
		bad_value(s, 0, "is negative (use a number of 0 or more: %s)", number_hint);
		return -1;
	}
	if (scan_decimal(&p, &d) < 0 || *p) {
		bad_value(s, 0, "is not a number (%s)", number_hint);
		return -1;
	}
	if (d.too_big) {
		bad_value(s, 0, "is too large a number (%s)", number_hint);
		return -1;
	}
	*out = decimal_value(&d);
	return 0;
}

/* percent-decode the n bytes at p (part `what` of url) into a new string in
 * *out; -1 on a bad escape or %00, which no C string can carry */
static int pct_decode(const char *url, const char *p, size_t n, const char *what, char **out)
{
	char *d = xmalloc(n + 1), *o = d;

	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		if (p[i] != '%') {
			*o++ = p[i];
			continue;
		}
		hi = i + 2 < n ? hex_value((unsigned char)p[i + 1]) : -1;
		lo = i + 2 < n ? hex_value((unsigned char)p[i + 2]) : -1;
		if (hi < 0 || lo < 0) {
			bad_value(url, 1,
				  "has a bad percent escape in the %s (write a literal %% as %%25)",
				  what);
			free(d);
			return -1;
		}
		if (hi == 0 && lo == 0) {
			bad_value(url, 1, "has %%00 in the %s (a NUL byte is not allowed)", what);
			free(d);
			return -1;
		}
		*o++ = (char)(hi << 4 | lo);
		i += 2;
	}
	*o = '\0';
	*out = d;
	return 0;
}

/* percent-decode user or password; an empty one is absent (NULL) */
static int decode_credential(const char *url, const char *p, size_t n, const char *what, char **out)
{
	if (n == 0)
		return 0;
	return pct_decode(url, p, n, what, out);
}

/* [USER][:PASSWORD] from the n bytes at p; a user without ':' has no password */
static int parse_userinfo(const char *url, const char *p, size_t n, struct url *u)
{
	const char *colon = memchr(p, ':', n);
	size_t user_len = colon ? (size_t)(colon - p) : n;

	if (decode_credential(url, p, user_len, "user name", &u->user) < 0)
		return -1;
	if (!colon)
		return 0;
	return decode_credential(url, colon + 1, n - user_len - 1, "password", &u->password);
}

static int is_host_char(int c)
{
	return is_digit(c) || is_alpha(c) || c == '-' || c == '.' || c == '_';
}

/* whether the n bytes at p look like an IPv6 address; the resolver has the
 * last word, this only keeps junk out of error-free parses */
static int looks_ipv6(const char *p, size_t n)
{
	int colons = 0;

	for (size_t i = 0; i < n; i++) {
		if (p[i] == ':')
			colons++;
		else if (p[i] != '.' && hex_value((unsigned char)p[i]) < 0)
			return 0;
	}
	return colons >= 2;
}

/* HOST or [IPV6] at p into u->host; the end of it, or NULL */
static const char *parse_host(const char *url, const char *p, struct url *u)
{
	const char *e;

	if (*p == '[') {
		e = strchr(p, ']');
		if (!e || !looks_ipv6(p + 1, e - p - 1)) {
			bad_value(url, 1, "has a bad IPv6 address (write it in brackets: [::1])");
			return NULL;
		}
		u->host = xmemdup(p + 1, e - p - 1);
		return e + 1;
	}
	for (e = p; is_host_char((unsigned char)*e); e++)
		;
	if (*e == ':' && memchr(e + 1, ':', strcspn(e + 1, "/?,"))) {
		bad_value(url, 1, "has an IPv6 address without brackets (write it as [::1])");
		return NULL;
	}
	if (e == p && (*e == '\0' || *e == ':' || *e == '/' || *e == '?' || *e == ',')) {
		bad_value(url, 1, "has no host (%s)", url_hint);
		return NULL;
	}
	if (*e != '\0' && *e != ':' && *e != '/' && *e != '?' && *e != ',') {
		bad_value(url, 1, "has a bad character in the host (%s)", url_hint);
		return NULL;
	}
	u->host = xmemdup(p, e - p);
	return e;
}

/* DIGITS at p as a number up to max into *v; the end of the digits, or NULL
 * when there are none or they exceed max */
static const char *scan_uint(const char *p, uint64_t max, uint64_t *v)
{
	const char *q = p;
	uint64_t n = 0;

	for (; is_digit(*q); q++) {
		unsigned digit = *q - '0';

		if (n > (max - digit) / 10)
			return NULL;
		n = n * 10 + digit;
	}
	if (q == p)
		return NULL;
	*v = n;
	return q;
}

/* the port of a host that names none: a sentinel's, or a server's */
static int default_port(const struct url *u)
{
	return u->sentinel ? SENTINEL_PORT : REDIS_PORT;
}

/* [:PORT] at p into *port (default def); the end of it, or NULL */
static const char *parse_port(const char *url, const char *p, int def, int *port)
{
	uint64_t v;

	*port = def;
	if (*p != ':')
		return p;
	p = scan_uint(p + 1, 65535, &v);
	if (!p || v == 0 || (*p && *p != '/' && *p != '?' && *p != ',')) {
		bad_value(url, 1, "has a bad port (use a number from 1 to 65535)");
		return NULL;
	}
	*port = (int)v;
	return p;
}

/* ,HOST[:PORT]... at p, the hosts after the first, into u->more; the end
 * of them, or NULL */
static const char *parse_more_hosts(const char *url, const char *p, struct url *u)
{
	while (*p == ',') {
		if (u->n_more + 1 >= URL_HOSTS_MAX) {
			bad_value(url, 1, "names more than %d hosts", URL_HOSTS_MAX);
			return NULL;
		}
		struct url one = {0};
		int port;
		p = parse_host(url, p + 1, &one);
		if (p)
			p = parse_port(url, p, default_port(u), &port);
		if (!p) {
			free(one.host);
			return NULL;
		}
		u->more = xrealloc(u->more, (u->n_more + 1) * sizeof(*u->more));
		u->more[u->n_more].host = one.host;
		u->more[u->n_more].port = port;
		u->n_more++;
	}
	return p;
}

/* /SERVICE at p, the name of a sentinel URL's primary, into u->service;
 * the end of it, or NULL */
static const char *parse_service(const char *url, const char *p, struct url *u)
{
	size_t n = *p == '/' ? strcspn(p + 1, "/?") : 0;

	if (n == 0) {
		bad_value(
			url, 1,
			"names no service (use redis+sentinel://HOST[:PORT][,HOST...]/SERVICE[/DB], "
			"SERVICE as in the sentinels' 'sentinel monitor' line)");
		return NULL;
	}
	if (n > SERVICE_MAX) {
		bad_value(url, 1, "has a service name longer than %d bytes", SERVICE_MAX);
		return NULL;
	}
	for (size_t i = 1; i <= n; i++) {
		unsigned char c = p[i];
		if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
		    !strchr("._-:", c)) {
			bad_value(
				url, 1,
				"has a service name with a byte that is not a letter, digit, '.', "
				"'_', '-' or ':'");
			return NULL;
		}
	}
	u->service = xmemdup(p + 1, n);
	return p + 1 + n;
}

/* [:PORT][,HOST[:PORT]...][/SERVICE][/[DB]] at p, the rest of a redis://
 * (or sentinel) URL after its first host */
static int parse_port_db(const char *url, const char *p, struct url *u)
{
	uint64_t v;

	p = parse_port(url, p, default_port(u), &u->port);
	if (p)
		p = parse_more_hosts(url, p, u);
	if (p && u->sentinel)
		p = parse_service(url, p, u);
	if (!p)
		return -1;
	if (*p == '/' && p[1] != '\0' && p[1] != '?') {
		p = scan_uint(p + 1, INT_MAX, &v);
		if (!p || (*p && *p != '?')) {
			bad_value(
				url, 1,
				"has a bad database (use a number of 0 or more, such as /0 or /2)");
			return -1;
		}
		u->db = (int)v;
	} else if (*p == '/') {
		p++;
	}
	if (*p == '?') {
		bad_value(
			url, 1,
			"has a query, which redis:// URLs do not take (give the database as /DB)");
		return -1;
	}
	if (*p) {
		bad_value(url, 1, "has unexpected text after the host (%s)", url_hint);
		return -1;
	}
	return 0;
}

/* the part of redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] after the scheme.
 * The last '@' ends the user info: no host or path holds one, so passwords
 * may carry '@', '/' or '?' without escapes. */
static int parse_tcp(const char *url, const char *rest, struct url *u)
{
	const char *at = strrchr(rest, '@'), *p = rest;

	if (at) {
		if (parse_userinfo(url, rest, at - rest, u) < 0)
			return -1;
		p = at + 1;
	}
	p = parse_host(url, p, u);
	if (!p)
		return -1;
	return parse_port_db(url, p, u);
}

/* the query of a unix: URL: only db=N is known */
static int parse_unix_query(const char *url, const char *q, struct url *u)
{
	int seen = 0;

	while (*q) {
		size_t n = strcspn(q, "&");
		uint64_t v;
		const char *e;

		if (n < 3 || strncmp(q, "db=", 3) != 0) {
			bad_value(url, 1, "has an unknown parameter (only ?db=N is known)");
			return -1;
		}
		e = scan_uint(q + 3, INT_MAX, &v);
		if (!e || e != q + n || seen) {
			bad_value(url, 1,
				  "has a bad db parameter (use one ?db=N with N 0 or more)");
			return -1;
		}
		u->db = (int)v;
		seen = 1;
		q += n;
		if (*q == '&')
			q++;
	}
	return 0;
}

/* the part of unix:///PATH[?db=N] after "unix://" */
static int parse_unix(const char *url, const char *rest, struct url *u)
{
	size_t n = strcspn(rest, "?");

	if (rest[0] != '/') {
		bad_value(url, 1,
			  "does not name an absolute socket path "
			  "(use unix:///PATH, with three slashes)");
		return -1;
	}
	if (memchr(rest, '#', n)) {
		bad_value(url, 1, "has a '#' in the path (write it as %%23)");
		return -1;
	}
	if (pct_decode(url, rest, n, "path", &u->path) < 0)
		return -1;
	if (strcmp(u->path, "/") == 0) {
		bad_value(url, 1, "has no socket path (use unix:///PATH)");
		return -1;
	}
	if (strlen(u->path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		bad_value(url, 1, "has a socket path too long for the system (at most %zu bytes)",
			  sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return -1;
	}
	if (rest[n] == '?')
		return parse_unix_query(url, rest + n + 1, u);
	return 0;
}

/* the part of file:///DIR or file://localhost/DIR after "file://" */
static int parse_file(const char *url, const char *rest, struct url *u)
{
	const char *p = rest, *local = skip_prefix(rest, "localhost");
	size_t n;

	if (local && *local == '/')
		p = local;
	if (*p != '/') {
		bad_value(url, 1,
			  "does not name a directory on this host "
			  "(use file:///DIR, with three slashes)");
		return -1;
	}
	if (strpbrk(p, "?#")) {
		bad_value(url, 1, "has a '?' or '#' in the path (write them as %%3F and %%23)");
		return -1;
	}
	if (pct_decode(url, p, strlen(p), "path", &u->path) < 0)
		return -1;
	/* "/a/b/" and "/a/b" are one directory; keep one spelling */
	n = strlen(u->path);
	while (n > 1 && u->path[n - 1] == '/')
		u->path[--n] = '\0';
	return 0;
}

int url_parse(const char *s, struct url *u)
{
	const char *rest;
	int rc;

	memset(u, 0, sizeof(*u));
	if ((rest = skip_prefix(s, "redis://"))) {
		u->kind = URL_REDIS_TCP;
		rc = parse_tcp(s, rest, u);
	} else if ((rest = skip_prefix(s, "rediss://"))) {
		u->kind = URL_REDIS_TLS;
		rc = parse_tcp(s, rest, u);
	} else if ((rest = skip_prefix(s, "redis+sentinel://"))) {
		u->kind = URL_REDIS_TCP;
		u->sentinel = true;
		rc = parse_tcp(s, rest, u);
	} else if ((rest = skip_prefix(s, "rediss+sentinel://"))) {
		u->kind = URL_REDIS_TLS;
		u->sentinel = true;
		rc = parse_tcp(s, rest, u);
	} else if ((rest = skip_prefix(s, "unix://"))) {
		u->kind = URL_REDIS_UNIX;
		rc = parse_unix(s, rest, u);
	} else if ((rest = skip_prefix(s, "file://"))) {
		u->kind = URL_FILE;
		rc = parse_file(s, rest, u);
	} else {
		bad_value(s, 1, "is not a store URL (%s)", url_hint);
		rc = -1;
	}
	if (rc < 0)
		url_free(u);
	return rc;
}

void url_free(struct url *u)
{
	if (!u)
		return;
	free(u->host);
	free(u->service);
	free(u->path);
	free(u->user);
	free(u->password);
	for (int i = 0; i < u->n_more; i++)
		free(u->more[i].host);
	free(u->more);
	memset(u, 0, sizeof(*u));
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void url_copy(struct url *dst, const struct url *src)
{
	*dst = *src;
	dst->host = dup_or_null(src->host);
	dst->service = dup_or_null(src->service);
	dst->path = dup_or_null(src->path);
	dst->user = dup_or_null(src->user);
	dst->password = dup_or_null(src->password);
	dst->more = src->n_more ? xcalloc((size_t)src->n_more, sizeof(*dst->more)) : NULL;
	for (int i = 0; i < src->n_more; i++) {
		dst->more[i].host = xstrdup(src->more[i].host);
		dst->more[i].port = src->more[i].port;
	}
}

/* HOST:PORT, with brackets around an IPv6 address */
static void append_host(struct buf *b, const char *host, int port)
{
	if (host && strchr(host, ':'))
		buf_appendf(b, "[%s]:%d", host, port);
	else
		buf_appendf(b, "%s:%d", host ? host : "", port);
}

/* append s, percent-encoding what would break the line or the URL: control
 * bytes, space, '%' and the bytes in special */
static void append_escaped(struct buf *b, const char *s, const char *special)
{
	for (; *s; s++) {
		unsigned char c = *s;

		if (c <= 0x20 || c == 0x7f || c == '%' || strchr(special, c))
			buf_appendf(b, "%%%02X", c);
		else
			buf_append(b, s, 1);
	}
}

char *url_display(const struct url *u)
{
	struct buf b = {0};

	buf_append(&b, "", 0);
	switch (u->kind) {
	case URL_REDIS_TCP:
	case URL_REDIS_TLS:
		buf_appendf(&b, "%s%s://", u->kind == URL_REDIS_TLS ? "rediss" : "redis",
			    u->sentinel ? "+sentinel" : "");
		if (u->user)
			append_escaped(&b, u->user, ":@/?#");
		if (u->password)
			buf_append(&b, ":***", 4);
		if (u->user || u->password)
			buf_append(&b, "@", 1);
		append_host(&b, u->host, u->port);
		for (int i = 0; i < u->n_more; i++) {
			buf_append(&b, ",", 1);
			append_host(&b, u->more[i].host, u->more[i].port);
		}
		if (u->service)
			buf_appendf(&b, "/%s", u->service);
		buf_appendf(&b, "/%d", u->db);
		break;
	case URL_REDIS_UNIX:
		buf_appendf(&b, "unix://");
		append_escaped(&b, u->path ? u->path : "", "?#");
		if (u->db)
			buf_appendf(&b, "?db=%d", u->db);
		break;
	case URL_FILE:
		buf_appendf(&b, "file://");
		append_escaped(&b, u->path ? u->path : "", "?#");
		break;
	}
	return b.data;
}
