/* test_parse: the value grammars of the command line (durations, sizes,
 * numbers, store URLs), good values and bad, with their error lines. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "tap.h"
#include "util.h"

/* forget the last error, so a check sees only the message its call set */
static void err_clear(void)
{
	err_set("%s", "");
}

/* whether a failing call left a real message, one line long */
static int has_error(void)
{
	const char *m = err_msg();

	return m[0] && strcmp(m, "unknown error") != 0 && !strchr(m, '\n');
}

static int error_says(const char *part)
{
	return has_error() && strstr(err_msg(), part) != NULL;
}

/* s with control bytes as \xNN, so a TAP line stays one line */
static const char *printable(const char *s)
{
	static char out[512];
	size_t n = 0;

	for (; *s && n + 5 < sizeof(out); s++) {
		unsigned char c = *s;

		if (c < 0x20 || c == 0x7f)
			n += snprintf(out + n, sizeof(out) - n, "\\x%02x", c);
		else
			out[n++] = c;
	}
	out[n] = '\0';
	return out;
}

static void duration_is(const char *s, int64_t want)
{
	int64_t ms = -42;
	int rc = parse_duration(s, &ms);

	ok(rc == 0 && ms == want, "duration \"%s\" is %lld ms (got rc %d, %lld)", s,
	   (long long)want, rc, (long long)ms);
}

static void duration_fails(const char *s, const char *says)
{
	int64_t ms = -42;

	err_clear();
	int rc = parse_duration(s, &ms);
	ok(rc == -1 && ms == -42 && error_says(says),
	   "duration \"%s\" is refused with a message saying \"%s\" (got: %s)", printable(s), says,
	   err_msg());
}

static void size_is(const char *s, uint64_t want)
{
	uint64_t n = 42;
	int rc = parse_size(s, &n);

	ok(rc == 0 && n == want, "size \"%s\" is %llu bytes (got rc %d, %llu)", s,
	   (unsigned long long)want, rc, (unsigned long long)n);
}

static void size_fails(const char *s, const char *says)
{
	uint64_t n = 42;

	err_clear();
	int rc = parse_size(s, &n);
	ok(rc == -1 && n == 42 && error_says(says),
	   "size \"%s\" is refused with a message saying \"%s\" (got: %s)", printable(s), says,
	   err_msg());
}

static void number_is(const char *s, double want)
{
	double d = -1;
	int rc = parse_nonneg_double(s, &d);

	ok(rc == 0 && d == want, "number \"%s\" is %g (got rc %d, %.17g)", s, want, rc, d);
}

static void number_fails(const char *s, const char *says)
{
	double d = -1;

	err_clear();
	int rc = parse_nonneg_double(s, &d);
	ok(rc == -1 && d == -1 && error_says(says),
	   "number \"%s\" is refused with a message saying \"%s\" (got: %s)", printable(s), says,
	   err_msg());
}

static int str_is(const char *got, const char *want)
{
	if (!got || !want)
		return got == want;
	return strcmp(got, want) == 0;
}

/* parse s and compare every field; display is the expected url_display() */
static void url_is(const char *s, enum url_kind kind, const char *host, int port, const char *path,
		   const char *user, const char *password, int db, const char *display)
{
	struct url u;
	int rc = url_parse(s, &u);
	char *shown = rc == 0 ? url_display(&u) : NULL;

	ok(rc == 0 && u.kind == kind && str_is(u.host, host) && u.port == port &&
		   str_is(u.path, path) && str_is(u.user, user) && str_is(u.password, password) &&
		   u.db == db && str_is(shown, display),
	   "URL \"%s\" parses into its parts and displays as \"%s\" (got %s)", s, display,
	   shown ? shown : err_msg());
	free(shown);
	url_free(&u);
}

static int is_zeroed(const struct url *u)
{
	static const struct url zero;

	return memcmp(u, &zero, sizeof(zero)) == 0;
}

static void url_fails(const char *s, const char *says)
{
	struct url u;

	err_clear();
	memset(&u, 0x5a, sizeof(u));
	int rc = url_parse(s, &u);
	ok(rc == -1 && is_zeroed(&u) && error_says(says),
	   "URL \"%s\" is refused, leaving the struct zeroed, with a message "
	   "saying \"%s\" (got: %s)",
	   printable(s), says, err_msg());
}

static void test_durations(void)
{
	duration_is("0", 0);
	duration_is("0s", 0);
	duration_is("0ms", 0);
	duration_is("0.0d", 0);
	duration_is("30", 30000);
	duration_is("30s", 30000);
	duration_is("250ms", 250);
	duration_is("5m", 300000);
	duration_is("1h", 3600000);
	duration_is("2d", 172800000);
	duration_is("1.5h", 5400000);
	duration_is("0.5s", 500);
	duration_is("007s", 7000);
	duration_is("1.25m", 75000);
	duration_is("0.001s", 1);
	duration_is("0.0005s", 1);
	duration_is("0.0004999999999999999999999s", 0);
	duration_is("0.00000015625d", 14);
	duration_is("0.00000015624999999999999999999999999999999999999999d", 13);
	duration_is("0.4ms", 0);
	duration_is("0.5ms", 1);
	duration_is("1.4999ms", 1);
	duration_is("0.1d", 8640000);
	duration_is("36525d", 3155760000000);
	duration_is("876600h", 3155760000000);
	duration_is("3155760000000ms", 3155760000000);
	duration_is("3155760000s", 3155760000000);
	/* systemd's and bkt's spellings, and terms added up */
	duration_is("1h30m", 5400000);
	duration_is("90min", 5400000);
	duration_is("1w", 604800000);
	duration_is("2weeks", 1209600000);
	duration_is("10sec", 10000);
	duration_is("10seconds", 10000);
	duration_is("1second", 1000);
	duration_is("250msec", 250);
	duration_is("3hr", 10800000);
	duration_is("1hour", 3600000);
	duration_is("2hours", 7200000);
	duration_is("1day", 86400000);
	duration_is("3days", 259200000);
	duration_is("2minutes", 120000);
	duration_is("1minute", 60000);
	duration_is("1d12h", 129600000);
	duration_is("1m30s", 90000);
	duration_is("1h0m0s0ms", 3600000);
	duration_is("1.5h30m", 7200000);
	duration_is("1s500ms", 1500);
	duration_is("36524d24h", 3155760000000);
	duration_is("5217w6d", 3155760000000);

	duration_fails("", "is not a duration (try 30s, 5m, 1h)");
	duration_fails("banana", "\"banana\" is not a duration (try 30s, 5m, 1h)");
	duration_fails("-5s", "cannot be negative");
	duration_fails("-0", "cannot be negative");
	duration_fails("+5s", "is not a duration");
	duration_fails(" 5s", "is not a duration");
	duration_fails("5s ", "is not a duration");
	duration_fails("5 s", "is not a duration");
	duration_fails("5y", "unknown unit \"y\" (use ms, s, m, h, d or w)");
	duration_fails("5months", "unknown unit \"months\"");
	duration_fails("5S", "unknown unit \"S\"");
	duration_fails("5M", "unknown unit \"M\"");
	duration_fails("5Min", "unknown unit \"Min\"");
	duration_fails("5ss", "unknown unit");
	duration_fails("5secondsss", "unknown unit");
	duration_fails("5abcdefghijklmnopqrstuvwxyz", "unknown unit \"abcdefghijklmno\"");
	duration_fails("5s5", "every part needs a unit");
	duration_fails("1h30", "every part needs a unit");
	duration_fails("1h 30m", "is not a duration");
	duration_fails("1h-30m", "is not a duration");
	duration_fails("1h.5m", "is not a duration");
	duration_fails("h", "is not a duration");
	duration_fails("36525d1ms", "too long");
	duration_fails("5218w", "too long");
	duration_fails(".5s", "is not a duration");
	duration_fails("5.s", "is not a duration");
	duration_fails("5.", "is not a duration");
	duration_fails("1.2.3s", "is not a duration");
	duration_fails("1,5s", "is not a duration");
	duration_fails("1e3", "is not a duration");
	duration_fails("0x10", "is not a duration");
	duration_fails("inf", "is not a duration");
	duration_fails("nan", "is not a duration");
	duration_fails("36525.0000001d", "too long");
	duration_fails("36526d", "too long a duration (at most 36525d");
	duration_fails("3155760000001ms", "too long");
	duration_fails("9223372036854775807ms", "too long");
	duration_fails("18446744073709551616", "too long");
	duration_fails("99999999999999999999999999999d", "too long");
	duration_fails("5\n", "\"5\\x0a\"");
}

static void test_sizes(void)
{
	size_is("0", 0);
	size_is("512", 512);
	size_is("512B", 512);
	size_is("1k", 1024);
	size_is("1K", 1024);
	size_is("512k", 524288);
	size_is("64M", 67108864);
	size_is("64m", 67108864);
	size_is("64MB", 67108864);
	size_is("1G", 1073741824);
	size_is("1g", 1073741824);
	size_is("1GB", 1073741824);
	size_is("2KB", 2048);
	size_is("1.5M", 1572864);
	size_is("0.5k", 512);
	size_is("0.0001k", 0);
	size_is("0.0005k", 1);
	size_is("1.5", 2);
	size_is("18446744073709551615", UINT64_MAX);
	size_is("17179869183G", UINT64_C(17179869183) << 30);

	size_fails("", "is not a size (try 512k, 64M, 1G)");
	size_fails("12X", "\"12X\" is not a size (try 512k, 64M, 1G)");
	size_fails("-1", "cannot be negative");
	size_fails("+1", "is not a size");
	size_fails("k", "is not a size");
	size_fails("1T", "is not a size");
	size_fails("1BB", "is not a size");
	size_fails("1kb", "is not a size");
	size_fails("1 M", "is not a size");
	size_fails("1MiB", "is not a size");
	size_fails("1e6", "is not a size");
	size_fails("0x10", "is not a size");
	size_fails(".5M", "is not a size");
	size_fails("18446744073709551616", "too large a size");
	size_fails("17179869184G", "too large a size");
	size_fails("16777216T", "is not a size");
	size_fails("18014398509481984k", "too large a size");
}

static void test_numbers(void)
{
	number_is("0", 0.0);
	number_is("0.0", 0.0);
	number_is("1", 1.0);
	number_is("1.0", 1.0);
	number_is("2.5", 2.5);
	number_is("0.1", 0.1);
	number_is("0.3", 0.3);
	number_is("1.1", 1.1);
	number_is("0.30000000000000000000001", 0.3);
	number_is("123456.789", 123456.789);
	number_is("10", 10.0);

	number_fails("", "is not a number (try 0, 0.5 or 1.0)");
	number_fails("-1", "is negative");
	number_fails("-0", "is negative");
	number_fails("+1", "is not a number");
	number_fails("abc", "is not a number");
	number_fails("1.", "is not a number");
	number_fails(".5", "is not a number");
	number_fails("1e3", "is not a number");
	number_fails("inf", "is not a number");
	number_fails("nan", "is not a number");
	number_fails("0x1p3", "is not a number");
	number_fails("1,5", "is not a number");
	number_fails("1 ", "is not a number");
	number_fails("99999999999999999999999", "too large");
}

static void test_tcp_urls(void)
{
	url_is("redis://localhost", URL_REDIS_TCP, "localhost", 6379, NULL, NULL, NULL, 0,
	       "redis://localhost:6379/0");
	url_is("redis://localhost/", URL_REDIS_TCP, "localhost", 6379, NULL, NULL, NULL, 0,
	       "redis://localhost:6379/0");
	url_is("redis://10.0.0.5:6380/2", URL_REDIS_TCP, "10.0.0.5", 6380, NULL, NULL, NULL, 2,
	       "redis://10.0.0.5:6380/2");
	url_is("REDIS://cache.example.org:1/15", URL_REDIS_TCP, "cache.example.org", 1, NULL, NULL,
	       NULL, 15, "redis://cache.example.org:1/15");
	url_is("redis://h:65535/2147483647", URL_REDIS_TCP, "h", 65535, NULL, NULL, NULL,
	       2147483647, "redis://h:65535/2147483647");
	url_is("redis://h:06379/007", URL_REDIS_TCP, "h", 6379, NULL, NULL, NULL, 7,
	       "redis://h:6379/7");
	url_is("redis://my_host-1/", URL_REDIS_TCP, "my_host-1", 6379, NULL, NULL, NULL, 0,
	       "redis://my_host-1:6379/0");
	url_is("redis://user:secret@host:6379/2", URL_REDIS_TCP, "host", 6379, NULL, "user",
	       "secret", 2, "redis://user:***@host:6379/2");
	url_is("redis://:secret@host", URL_REDIS_TCP, "host", 6379, NULL, NULL, "secret", 0,
	       "redis://:***@host:6379/0");
	url_is("redis://user@host", URL_REDIS_TCP, "host", 6379, NULL, "user", NULL, 0,
	       "redis://user@host:6379/0");
	url_is("redis://user:@host", URL_REDIS_TCP, "host", 6379, NULL, "user", NULL, 0,
	       "redis://user@host:6379/0");
	url_is("redis://@host", URL_REDIS_TCP, "host", 6379, NULL, NULL, NULL, 0,
	       "redis://host:6379/0");
	url_is("redis://:p%40ss%3Aw%2Frd%25@host", URL_REDIS_TCP, "host", 6379, NULL, NULL,
	       "p@ss:w/rd%", 0, "redis://:***@host:6379/0");
	url_is("redis://:p@ss/w?rd#@host/3", URL_REDIS_TCP, "host", 6379, NULL, NULL, "p@ss/w?rd#",
	       3, "redis://:***@host:6379/3");
	url_is("redis://al%69ce%3a%40x:pw@host", URL_REDIS_TCP, "host", 6379, NULL, "alice:@x",
	       "pw", 0, "redis://alice%3A%40x:***@host:6379/0");
	url_is("redis://a%20b@host", URL_REDIS_TCP, "host", 6379, NULL, "a b", NULL, 0,
	       "redis://a%20b@host:6379/0");
	url_is("redis://[::1]", URL_REDIS_TCP, "::1", 6379, NULL, NULL, NULL, 0,
	       "redis://[::1]:6379/0");
	url_is("redis://[::1]:7000/1", URL_REDIS_TCP, "::1", 7000, NULL, NULL, NULL, 1,
	       "redis://[::1]:7000/1");
	url_is("redis://u:p@[2001:db8::1]:6380/4", URL_REDIS_TCP, "2001:db8::1", 6380, NULL, "u",
	       "p", 4, "redis://u:***@[2001:db8::1]:6380/4");
	url_is("redis://[::ffff:10.0.0.1]/", URL_REDIS_TCP, "::ffff:10.0.0.1", 6379, NULL, NULL,
	       NULL, 0, "redis://[::ffff:10.0.0.1]:6379/0");
	url_is("rediss://:pw@secure.example.org:6380/1", URL_REDIS_TLS, "secure.example.org", 6380,
	       NULL, NULL, "pw", 1, "rediss://:***@secure.example.org:6380/1");
	url_is("rediss://h", URL_REDIS_TLS, "h", 6379, NULL, NULL, NULL, 0, "rediss://h:6379/0");

	url_fails("redis://", "has no host");
	url_fails("redis://:6379", "has no host");
	url_fails("redis:///2", "has no host");
	url_fails("redis://user:pw@", "has no host");
	url_fails("redis://user:pw@:6379/0", "has no host");
	url_fails("rediss://", "has no host");
	url_fails("redis://h:", "bad port (use a number from 1 to 65535)");
	url_fails("redis://h:0", "bad port");
	url_fails("redis://h:65536", "bad port");
	url_fails("redis://h:99999999999999999999999", "bad port");
	url_fails("redis://h:-1", "bad port");
	url_fails("redis://h:63x9", "bad port");
	url_fails("redis://h:http", "bad port");
	url_fails("redis://h/x", "bad database");
	url_fails("redis://h/-1", "bad database");
	url_fails("redis://h/1x", "bad database");
	url_fails("redis://h/2/", "bad database");
	url_fails("redis://h/2147483648", "bad database");
	url_fails("redis://h/2?db=3", "has a query");
	url_fails("redis://h?db=3", "has a query");
	url_fails("redis://h:6379?x", "has a query");
	url_fails("redis://ho st", "bad character in the host");
	url_fails("redis://h%41st", "bad character in the host");
	url_fails("redis://h#frag", "bad character in the host");
	url_fails("redis://::1", "IPv6 address without brackets");
	url_fails("redis://fe80::1:6379", "IPv6 address without brackets");
	url_fails("redis://[::1", "bad IPv6 address");
	url_fails("redis://[]", "bad IPv6 address");
	url_fails("redis://[host]", "bad IPv6 address");
	url_fails("redis://[:1]", "bad IPv6 address");
	url_fails("redis://[::1]x", "unexpected text after the host");
	url_fails("redis://[::1]:0", "bad port");
	url_fails("redis://:a%00b@host", "%00 in the password");
	url_fails("redis://a%00@host", "%00 in the user name");
	url_fails("redis://:100%@host", "bad percent escape in the password");
	url_fails("redis://:%zz@host", "bad percent escape in the password");
	url_fails("redis://:%4@host", "bad percent escape in the password");
	url_fails("redis://us%er@host", "bad percent escape in the user name");
}

static void test_other_urls(void)
{
	url_is("unix:///run/redis/redis.sock", URL_REDIS_UNIX, NULL, 0, "/run/redis/redis.sock",
	       NULL, NULL, 0, "unix:///run/redis/redis.sock");
	url_is("unix:///tmp/r.sock?db=3", URL_REDIS_UNIX, NULL, 0, "/tmp/r.sock", NULL, NULL, 3,
	       "unix:///tmp/r.sock?db=3");
	url_is("unix:///tmp/r.sock?db=0", URL_REDIS_UNIX, NULL, 0, "/tmp/r.sock", NULL, NULL, 0,
	       "unix:///tmp/r.sock");
	url_is("unix:///tmp/r.sock?", URL_REDIS_UNIX, NULL, 0, "/tmp/r.sock", NULL, NULL, 0,
	       "unix:///tmp/r.sock");
	url_is("UNIX:///tmp/my%20dir/r%3F.sock", URL_REDIS_UNIX, NULL, 0, "/tmp/my dir/r?.sock",
	       NULL, NULL, 0, "unix:///tmp/my%20dir/r%3F.sock");
	url_is("unix:///tmp/a@b:c.sock", URL_REDIS_UNIX, NULL, 0, "/tmp/a@b:c.sock", NULL, NULL, 0,
	       "unix:///tmp/a@b:c.sock");
	url_is("file:///var/cache/cf", URL_FILE, NULL, 0, "/var/cache/cf", NULL, NULL, 0,
	       "file:///var/cache/cf");
	url_is("file:///var/cache/cf//", URL_FILE, NULL, 0, "/var/cache/cf", NULL, NULL, 0,
	       "file:///var/cache/cf");
	url_is("file:///", URL_FILE, NULL, 0, "/", NULL, NULL, 0, "file:///");
	url_is("file://localhost/srv/cache", URL_FILE, NULL, 0, "/srv/cache", NULL, NULL, 0,
	       "file:///srv/cache");
	url_is("file://LocalHost/srv/cache", URL_FILE, NULL, 0, "/srv/cache", NULL, NULL, 0,
	       "file:///srv/cache");
	url_is("file:///srv/my%20cache%25", URL_FILE, NULL, 0, "/srv/my cache%", NULL, NULL, 0,
	       "file:///srv/my%20cache%25");

	url_fails("unix://", "absolute socket path");
	url_fails("unix://tmp/r.sock", "absolute socket path (use unix:///PATH");
	url_fails("unix:/tmp/r.sock", "is not a store URL");
	url_fails("unix:///", "has no socket path");
	url_fails("unix:///?db=1", "has no socket path");
	url_fails("unix:///tmp/r.sock?db=", "bad db parameter");
	url_fails("unix:///tmp/r.sock?db=x", "bad db parameter");
	url_fails("unix:///tmp/r.sock?db=-1", "bad db parameter");
	url_fails("unix:///tmp/r.sock?db=1x", "bad db parameter");
	url_fails("unix:///tmp/r.sock?db=2147483648", "bad db parameter");
	url_fails("unix:///tmp/r.sock?db=1&db=2", "bad db parameter");
	url_fails("unix:///tmp/r.sock?password=x", "unknown parameter (only ?db=N");
	url_fails("unix:///tmp/r.sock?db=1&timeout=5", "unknown parameter");
	url_fails("unix:///tmp/r.sock?&db=1", "unknown parameter");
	url_fails("unix:///tmp/r.sock?DB=1", "unknown parameter");
	url_fails("unix:///tmp/r%00.sock", "%00 in the path");
	url_fails("unix:///tmp/r%.sock", "bad percent escape in the path");
	url_fails("unix:///tmp/r#x", "'#' in the path");
	url_fails("unix:///"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "socket path too long");
	url_fails("file://", "does not name a directory on this host");
	url_fails("file://localhost", "does not name a directory");
	url_fails("file://otherhost/dir", "does not name a directory");
	url_fails("file://localhostx/dir", "does not name a directory");
	url_fails("file://./cache", "does not name a directory");
	url_fails("file:relative", "is not a store URL");
	url_fails("file:/one/slash", "is not a store URL");
	url_fails("file:///a?b", "'?' or '#' in the path");
	url_fails("file:///a#b", "'?' or '#' in the path");
	url_fails("file:///a%00b", "%00 in the path");
	url_fails("file:///a%g0", "bad percent escape in the path");

	url_fails("http://x",
		  "\"http://x\" is not a store URL (use "
		  "redis://HOST[:PORT][/DB], redis+sentinel://HOST[:PORT]/SERVICE[/DB], "
		  "unix:///PATH or file:///DIR)");
	url_fails("", "is not a store URL");
	url_fails("localhost:6379", "is not a store URL");
	url_fails("/var/cache/cf", "is not a store URL");
	url_fails("redis:/host", "is not a store URL");
	url_fails("rediss:host", "is not a store URL");
	url_fails("redis+unix:///tmp/s", "is not a store URL");
	url_fails(" redis://h", "is not a store URL");
}

/* a password never reaches an error line, whatever else is wrong */
static void test_secrets_stay_out_of_errors(void)
{
	static const char *const bad[] = {
		"redis://user:hunter2@h:99999",
		"redis://:hunter2@h/x",
		"redis://:hunter2@ho st",
		"redis://:hunter2@",
		"redis://:hunter2@h?db=1",
		"rediss://:hunter2@[zz]",
		"redis://:hunter2%zz@h",
		"redis://:hunter2%00@h",
		"http://user:hunter2@example.org/",
		"user:hunter2@host",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct url u;

		err_clear();
		int rc = url_parse(bad[i], &u);
		ok(rc == -1 && has_error() && !strstr(err_msg(), "hunter2") &&
			   strstr(err_msg(), ":***@"),
		   "the error for a bad URL with a password masks it (%s)", err_msg());
	}
}

/* unix: and file: URLs take no password, but one written there anyway (as
 * user info or as a query parameter) is hidden like redis://'s */
static void test_secrets_of_path_urls_stay_out_of_errors(void)
{
	struct url u_unused;
	static const struct {
		const char *url, *shown;
	} bad[] = {
		{"unix://:hunter2@/tmp/r.sock", "unix://:***@/tmp/r.sock"},
		{"unix://user:hunter2@/tmp/r.sock", "unix://user:***@/tmp/r.sock"},
		{"unix://:hun@ter2@/tmp/r.sock", "unix://:***@/tmp/r.sock"},
		{"unix://:hunter2@tmp/r.sock", "unix://:***@tmp/r.sock"},
		{"unix:///tmp/r.sock?password=hunter2", "unix:///tmp/r.sock?password=***"},
		{"unix:///tmp/r.sock?db=1&password=hunter2",
		 "unix:///tmp/r.sock?db=1&password=***"},
		{"unix:///tmp/r.sock?password=hunter2&db=1",
		 "unix:///tmp/r.sock?password=***&db=1"},
		{"unix:///tmp/r.sock?hunter2", "unix:///tmp/r.sock?***"},
		{"unix://:hunter2@/tmp/r.sock?pass=hunter2", "unix://:***@/tmp/r.sock?pass=***"},
		{"unix:/:hunter2@/tmp/r.sock", "unix:/:***@/tmp/r.sock"},
		{"UNIX://:hunter2@/tmp/r.sock", "UNIX://:***@/tmp/r.sock"},
		{"file://:hunter2@localhost/srv", "file://:***@localhost/srv"},
		{"file:///srv?password=hunter2", "file:///srv?password=***"},
		/* a '?' typed for '&': the password is in the db value */
		{"unix:///tmp/r.sock?db=0?password=hunter2", "unix:///tmp/r.sock?db=***"},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct url u;
		char want[128];

		snprintf(want, sizeof(want), "\"%s\"", bad[i].shown);
		err_clear();
		int rc = url_parse(bad[i].url, &u);
		ok(rc == -1 && has_error() && !strstr(err_msg(), "hunter2") &&
			   !strstr(err_msg(), "ter2") &&
			   strncmp(err_msg(), want, strlen(want)) == 0,
		   "the error for %s hides its password (%s)", bad[i].shown, err_msg());
	}
	/* db is no secret, and a path with ':' and '@' but no user info shows whole */
	err_clear();
	ok(url_parse("unix:///tmp/r.sock?db=x", &u_unused) == -1 &&
		   error_says("\"unix:///tmp/r.sock?db=x\""),
	   "the db parameter of a bad unix URL is shown (%s)", err_msg());
	err_clear();
	ok(url_parse("unix:///a:b@c/?db=x", &u_unused) == -1 &&
		   error_says("\"unix:///a:b@c/?db=x\""),
	   "a unix socket path with ':' and '@' is shown as it is (%s)", err_msg());
}

static void test_error_lines(void)
{
	char long_value[300];
	struct url u;

	memset(long_value, '9', sizeof(long_value) - 2);
	long_value[sizeof(long_value) - 2] = '-';
	long_value[sizeof(long_value) - 1] = '\0';
	err_clear();
	ok(parse_duration(long_value, &(int64_t){0}) == -1 && has_error() &&
		   strstr(err_msg(), "...\" is not a duration") && strlen(err_msg()) < 200,
	   "a long bad value is cut short in its error line (%s)", err_msg());

	err_clear();
	ok(url_parse("ftp://h\r\n\x1b[31m", &u) == -1 && error_says("\\x0d\\x0a\\x1b[31m"),
	   "control bytes in a bad URL are escaped in its error line (%s)", err_msg());

	err_clear();
	ok(parse_size("1\tM", &(uint64_t){0}) == -1 && error_says("\"1\\x09M\""),
	   "a tab in a bad size is escaped in its error line (%s)", err_msg());

	err_clear();
	ok(parse_duration("5s", &(int64_t){0}) == 0 && !has_error(),
	   "a good value leaves no error behind");
}

static void test_url_struct_handling(void)
{
	struct url u;

	memset(&u, 0, sizeof(u));
	url_free(&u);
	ok(is_zeroed(&u), "url_free accepts a zeroed URL and leaves it zeroed");
	url_free(NULL);
	ok(1, "url_free accepts NULL");

	ok(url_parse("redis://u:p@h:1/2", &u) == 0, "a full redis URL parses");
	url_free(&u);
	ok(is_zeroed(&u), "url_free zeroes the URL it released");

	/* what url_display prints, url_parse reads back to the same parts */
	static const char *const round[] = {
		"redis://al%40ice@h:6380/3",  "redis://[::1]:7000/1", "rediss://h:6379/0",
		"unix:///tmp/a%20b%3Fc?db=9", "file:///srv/%25x%23y",
	};
	for (size_t i = 0; i < sizeof(round) / sizeof(*round); i++) {
		struct url a, b;
		char *shown;

		url_parse(round[i], &a);
		shown = url_display(&a);
		int rc = url_parse(shown, &b);
		ok(rc == 0 && a.kind == b.kind && str_is(a.host, b.host) && a.port == b.port &&
			   str_is(a.path, b.path) && str_is(a.user, b.user) && a.db == b.db,
		   "the display of \"%s\" (\"%s\") parses back to the same URL", round[i], shown);
		free(shown);
		url_free(&a);
		url_free(&b);
	}

	u = (struct url){.kind = URL_REDIS_TCP, .host = "h", .port = 1, .password = "x\ny"};
	char *shown = url_display(&u);
	ok(str_is(shown, "redis://:***@h:1/0"), "url_display never prints the password itself (%s)",
	   shown);
	free(shown);
}

/* redis://H1[:P1],H2[:P2].../DB: the seeds of a cluster */
static void test_seed_lists(void)
{
	struct url u, c;

	ok(url_parse("rediss://u:pw@h1:7000,[::1]:7001,h3/2", &u) == 0 && str_is(u.host, "h1") &&
		   u.port == 7000 && u.n_more == 2 && str_is(u.more[0].host, "::1") &&
		   u.more[0].port == 7001 && str_is(u.more[1].host, "h3") &&
		   u.more[1].port == 6379 && u.db == 2 && str_is(u.password, "pw"),
	   "a list of hosts parses into the first and the others, each with its port");
	char *shown = url_display(&u);
	ok(str_is(shown, "rediss://u:***@h1:7000,[::1]:7001,h3:6379/2"),
	   "and displays as a list (%s)", shown);
	free(shown);
	url_copy(&c, &u);
	url_free(&u);
	ok(c.n_more == 2 && str_is(c.more[0].host, "::1") && str_is(c.more[1].host, "h3") &&
		   str_is(c.host, "h1") && str_is(c.password, "pw"),
	   "url_copy copies every host: the copy outlives the original");
	url_free(&c);
	ok(url_parse("redis://a,b", &u) == 0 && u.n_more == 1 && u.port == 6379 &&
		   u.more[0].port == 6379,
	   "hosts without ports take 6379");
	url_free(&u);
	url_fails("redis://h1:7000,", "has no host");
	url_fails("redis://h1,,h2", "has no host");
	url_fails("redis://h1,h2:0", "has a bad port");
	url_fails("redis://h1,h2:x/0", "has a bad port");
	url_fails("redis://h1,h 2", "has a bad character in the host");
	url_fails("redis://h1,::1", "IPv6 address without brackets");
	struct buf many = {0};
	buf_appendf(&many, "redis://h0");
	for (int i = 1; i < URL_HOSTS_MAX; i++)
		buf_appendf(&many, ",h%d", i);
	ok(url_parse(many.data, &u) == 0 && u.n_more == URL_HOSTS_MAX - 1, "%d hosts are fine",
	   URL_HOSTS_MAX);
	url_free(&u);
	buf_appendf(&many, ",one-more");
	url_fails(many.data, "names more than 64 hosts");
	buf_free(&many);
}

/* redis+sentinel://[[USER]:PASSWORD@]S1[:P1][,S2...]/SERVICE[/DB] */
static void test_sentinel_urls(void)
{
	struct url u, c;

	ok(url_parse("redis+sentinel://u:p%40ss@s1,[::1]:26380,s3:5000/my-primary.1/3", &u) == 0 &&
		   u.kind == URL_REDIS_TCP && u.sentinel && str_is(u.host, "s1") &&
		   u.port == 26379 && u.n_more == 2 && str_is(u.more[0].host, "::1") &&
		   u.more[0].port == 26380 && u.more[1].port == 5000 &&
		   str_is(u.service, "my-primary.1") && u.db == 3 && str_is(u.user, "u") &&
		   str_is(u.password, "p@ss"),
	   "a sentinel URL: the sentinels (26379 by default), the service, the database");
	char *shown = url_display(&u);
	ok(str_is(shown, "redis+sentinel://u:***@s1:26379,[::1]:26380,s3:5000/my-primary.1/3"),
	   "and displays with its service (%s)", shown);
	free(shown);
	url_copy(&c, &u);
	url_free(&u);
	ok(c.sentinel && str_is(c.service, "my-primary.1"), "url_copy copies the service");
	url_free(&c);
	ok(url_parse("rediss+sentinel://s1/mymaster", &u) == 0 && u.kind == URL_REDIS_TLS &&
		   u.sentinel && str_is(u.service, "mymaster") && u.db == 0 && u.n_more == 0,
	   "rediss+sentinel:// is TLS, to the sentinels and the primary; the database 0");
	url_free(&u);
	ok(url_parse("redis+sentinel://s1/mymaster/", &u) == 0 && u.db == 0,
	   "a trailing slash after the service is database 0");
	url_free(&u);
	ok(url_parse("redis://h1/2", &u) == 0 && !u.sentinel && !u.service,
	   "a plain redis:// URL has no service");
	url_free(&u);
	url_fails("redis+sentinel://s1", "names no service");
	url_fails("redis+sentinel://s1/", "names no service");
	url_fails("redis+sentinel://s1//0", "names no service");
	url_fails("redis+sentinel://s1/my primary", "service name with a byte");
	url_fails("redis+sentinel://s1/m%41ster", "service name with a byte");
	url_fails("redis+sentinel://s1/mymaster/x", "has a bad database");
	url_fails("redis+sentinel://s1/mymaster?db=1", "has a query");
	url_fails("redis+sentinel://s1:0/mymaster", "has a bad port");
	url_fails("redis+sentinel:///mymaster", "has no host");
	struct buf name = {0};
	buf_appendf(&name, "redis+sentinel://s1/");
	for (int i = 0; i < 256; i++)
		buf_append(&name, "a", 1);
	url_fails(name.data, "longer than 255 bytes");
	buf_free(&name);
}

int main(void)
{
	test_seed_lists();
	test_sentinel_urls();
	test_durations();
	test_sizes();
	test_numbers();
	test_tcp_urls();
	test_other_urls();
	test_secrets_stay_out_of_errors();
	test_secrets_of_path_urls_stay_out_of_errors();
	test_error_lines();
	test_url_struct_handling();
	return done_testing();
}
