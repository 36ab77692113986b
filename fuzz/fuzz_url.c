/* fuzz_url: store URL parsing (url_parse, url_display, url_free) on any
 * string. What parses must hold fields that fit its kind, and print as a URL
 * that parses back to the same store; what fails must leave a one-line error.
 * Neither an error nor the printed form may show the password: an error line
 * quotes the URL with the password (the text between the first ':' and the
 * last '@' of a redis:// or rediss:// URL) as "***". */
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

/* the raw password text of a redis:// or rediss:// URL, malloc'ed; NULL if
 * there is none, or it is too short or too ambiguous to look for */
static char *raw_password(const char *s)
{
	const char *rest;

	if (has_prefix_nocase(s, "redis://"))
		rest = s + 8;
	else if (has_prefix_nocase(s, "rediss://"))
		rest = s + 9;
	else
		return NULL;
	const char *at = strrchr(rest, '@');
	const char *colon = at ? memchr(rest, ':', at - rest) : NULL;
	if (!colon || at - (colon + 1) < 4)
		return NULL;
	char *pw = xmemdup(colon + 1, at - (colon + 1));
	/* '*', '\\' and '.' could come from the mask, an escape or the "..."
	 * that cuts a long value rather than from the password; a password
	 * that also appears elsewhere in the URL cannot be told apart from it */
	if (strpbrk(pw, "*\\.") || strstr(strstr(s, pw) + 1, pw)) {
		free(pw);
		return NULL;
	}
	return pw;
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
		break;
	case URL_REDIS_UNIX:
		CHECK(u->path && u->path[0] == '/' && strcmp(u->path, "/") != 0);
		CHECK(strlen(u->path) < sizeof(((struct sockaddr_un *)0)->sun_path));
		CHECK(!u->host && !u->user && !u->password);
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
		CHECK(!u.host && !u.path && !u.user && !u.password);
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
