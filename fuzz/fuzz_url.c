/* fuzz_url: store URL parsing (url_parse, url_display, url_free) on any
 * string. What parses must hold fields that fit its kind, and print as a URL
 * that parses back to the same store; what fails must leave a one-line error.
 * Neither an error nor the printed form may show the password: an error line
 * quotes the URL with the password (the text between the first ':' and the
 * last '@' of a redis://, rediss:// or sentinel URL, or of a unix:// URL's user info,
 * or a unix:// URL's password= parameter, which it does not take) as "***". */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "fuzz.h"
#include "parse.h"

static bool same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool has_prefix_nocase(const char *s, const char *prefix)
{
	for (; *prefix; s++, prefix++) {
		char c = *s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s;
		if (c != *prefix)
			return false;
	}
	return true;
}

/* a malloc'ed copy of the n bytes at p if they make a password worth
 * looking for: at least 4 bytes, and no '*', '\\' or '.', which could come
 * from the mask, an escape or the "..." that cuts a long value rather than
 * from the password; nor may it appear twice in s (it could not be told
 * apart from the other copy) */
static char *password_candidate(const char *s, const char *p, size_t n)
{
	if (n < 4)
		return NULL;
	char *pw = xmemdup(p, n);
	if (strpbrk(pw, "*\\.") || strstr(strstr(s, pw) + 1, pw)) {
		free(pw);
		return NULL;
	}
	return pw;
}

/* the raw password text of a URL, malloc'ed, or NULL: of a redis:// or
 * rediss:// URL, between the first ':' and the last '@'; of a unix:// URL,
 * which takes none, the same in the user info before its path, or else the
 * value of a password= query parameter */
static char *raw_password(const char *s)
{
	const char *rest;

	if (has_prefix_nocase(s, "redis://"))
		rest = s + 8;
	else if (has_prefix_nocase(s, "rediss://"))
		rest = s + 9;
	else if (has_prefix_nocase(s, "redis+sentinel://"))
		rest = s + 17;
	else if (has_prefix_nocase(s, "rediss+sentinel://"))
		rest = s + 18;
	else if (has_prefix_nocase(s, "unix://"))
		rest = s + 7;
	else
		return NULL;
	const char *at = strrchr(rest, '@');
	const char *colon = at ? memchr(rest, ':', at - rest) : NULL;
	if (colon && !(rest == s + 7 && *rest == '/'))
		return password_candidate(s, colon + 1, at - (colon + 1));
	const char *q = rest == s + 7 ? strstr(rest, "?password=") : NULL;
	if (!q)
		q = rest == s + 7 ? strstr(rest, "&password=") : NULL;
	if (!q)
		return NULL;
	q += 10;
	return password_candidate(s, q, strcspn(q, "&"));
}

/* the quoted URL at the start of an error line: "URL" what is wrong */
static char *quoted_part(const char *msg)
{
	const char *end = strrchr(msg, '"');

	if (msg[0] != '"' || end == msg)
		return xstrdup("");
	return xmemdup(msg + 1, end - (msg + 1));
}

static void check_fields(const struct url *u)
{
	CHECK(u->db >= 0);
	switch (u->kind) {
	case URL_REDIS_TCP:
	case URL_REDIS_TLS:
		CHECK(u->host && u->host[0]);
		CHECK(u->port >= 1 && u->port <= 65535);
		CHECK(!u->path);
		CHECK(!u->user || u->user[0]);
		CHECK(!u->password || u->password[0]);
		CHECK(u->n_more >= 0 && u->n_more <= URL_HOSTS_MAX - 1 && !u->more == !u->n_more);
		for (int i = 0; i < u->n_more; i++)
			CHECK(u->more[i].host && u->more[i].host[0] && u->more[i].port >= 1 &&
			      u->more[i].port <= 65535);
		/* a service exactly when the hosts are sentinels, a name of
		 * 1 to 255 bytes that needs no escape */
		CHECK(!u->sentinel == !u->service);
		CHECK(!u->service || (u->service[0] && strlen(u->service) <= 255 &&
				      !strpbrk(u->service, "/?%@ ")));
		break;
	case URL_REDIS_UNIX:
		CHECK(u->path && u->path[0] == '/' && strcmp(u->path, "/") != 0);
		CHECK(strlen(u->path) < sizeof(((struct sockaddr_un *)0)->sun_path));
		CHECK(!u->host && !u->user && !u->password && !u->n_more);
		CHECK(!u->sentinel && !u->service);
		break;
	case URL_FILE:
		CHECK(u->path && u->path[0] == '/');
		CHECK(strcmp(u->path, "/") == 0 || u->path[strlen(u->path) - 1] != '/');
		CHECK(!u->host && !u->user && !u->password && u->db == 0);
		break;
	default:
		CHECK(!"a kind that is not in the enum");
	}
}

static void check_display(const struct url *u)
{
	char *shown = url_display(u);
	struct url back, plain = *u;

	CHECK(shown && one_line(shown));
	if (u->password) {
		/* the password shows as ":***" before the '@', and nothing else
		 * differs from the same URL without a password */
		plain.password = NULL;
		char *without = url_display(&plain);
		const char *mask = strstr(shown, ":***@");
		CHECK(mask);
		struct buf expect = {0};
		buf_append(&expect, shown, mask - shown);
		buf_appendf(&expect, "%s%s", u->user ? "@" : "", mask + 5);
		CHECK(strcmp(expect.data, without) == 0);
		buf_free(&expect);
		free(without);
	}
	CHECK(url_parse(shown, &back) == 0);
	CHECK(back.kind == u->kind);
	CHECK(same(back.host, u->host) && back.port == u->port && back.db == u->db);
	CHECK(same(back.path, u->path) && same(back.user, u->user));
	CHECK(back.sentinel == u->sentinel && same(back.service, u->service));
	CHECK(back.n_more == u->n_more);
	for (int i = 0; i < u->n_more && i < back.n_more; i++)
		CHECK(same(back.more[i].host, u->more[i].host) &&
		      back.more[i].port == u->more[i].port);
	CHECK(!back.password == !u->password);
	CHECK(!back.password || strcmp(back.password, "***") == 0);
	char *again = url_display(&back);
	CHECK(strcmp(again, shown) == 0);
	free(again);
	url_free(&back);
	free(shown);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	char *pw = raw_password(s);
	struct url u;

	if (url_parse(s, &u) < 0) {
		const char *msg = err_msg();
		CHECK(one_line(msg));
		CHECK(!u.host && !u.path && !u.user && !u.password && !u.more && !u.n_more);
		CHECK(!u.service && !u.sentinel);
		if (pw) {
			char *q = quoted_part(msg);
			CHECK(!strstr(q, pw));
			free(q);
		}
	} else {
		check_fields(&u);
		check_display(&u);
		url_free(&u);
		CHECK(!u.host && !u.path && !u.user && !u.password);
		url_free(&u);
	}
	free(pw);
	free(s);
	return 0;
}
