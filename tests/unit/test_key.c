/* Unit tests of key validation and derivation. */
#include <stdlib.h>
#include <string.h>

#include "key.h"
#include "tap.h"

static void derive(struct buf *b, char **argv)
{
	key_derive(b, argv, NULL);
}

int main(void)
{
	struct buf a = {0}, b = {0}, p = {0};
	char *echo_ab[] = {"echo", "a b", NULL};
	char *echo_a_b[] = {"echo", "a", "b", NULL};
	char *echo_ab_again[] = {"echo", "a b", NULL};
	char *empty_arg[] = {"echo", "", NULL};
	char *no_arg[] = {"echo", NULL};

	derive(&a, echo_ab);
	derive(&b, echo_a_b);
	ok(strncmp(a.data, "cmd:", 4) == 0 && a.len == 4 + 64,
	   "a derived key is cmd: and 64 hex digits");
	ok(strcmp(a.data, b.data) != 0, "argv (a b) and (a, b) derive different keys");
	derive(&b, echo_ab_again);
	ok(strcmp(a.data, b.data) == 0, "the same argv derives the same key");
	derive(&a, empty_arg);
	derive(&b, no_arg);
	ok(strcmp(a.data, b.data) != 0, "an empty argument is part of the key");

	struct key_scope none = {0}, with_env = {0};
	const char *names[] = {"CF_TEST_SCOPE"};
	char *echo[] = {"echo", NULL};
	struct buf c = {0};

	derive(&a, echo);
	key_derive(&b, echo, &none);
	ok(strcmp(a.data, b.data) == 0, "an empty scope leaves the derived key as it is");
	with_env.env = names;
	with_env.nenv = 1;
	unsetenv("CF_TEST_SCOPE");
	key_derive(&b, echo, &with_env);
	ok(strcmp(a.data, b.data) != 0, "a scoped variable changes the key even when unset");
	setenv("CF_TEST_SCOPE", "", 1);
	key_derive(&c, echo, &with_env);
	ok(strcmp(b.data, c.data) != 0, "an empty variable and an unset one give different keys");
	setenv("CF_TEST_SCOPE", "x", 1);
	key_derive(&b, echo, &with_env);
	ok(strcmp(b.data, c.data) != 0, "the variable's value is part of the key");
	buf_free(&c);

	char hex[KEY_HASH_HEX];
	key_hash_hex(hex, "abc", 3);
	ok(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0,
	   "key_hash_hex is SHA-256");

	ok(key_validate("k", 1) == 0, "a one-byte key is valid");
	ok(key_validate("", 0) < 0, "an empty key is rejected");
	ok(key_validate("a\0b", 3) < 0, "a key with NUL is rejected");
	ok(key_validate("sp ace}*\n\xc3\xa9", 10) == 0,
	   "spaces, braces, stars, newlines and UTF-8 are valid");

	key_printable(&p, "a\nb\\", 4);
	ok(strcmp(p.data, "a\\x0ab\\x5c") == 0,
	   "printable keys escape control bytes and backslashes");
	buf_free(&a);
	buf_free(&b);
	buf_free(&p);
	return done_testing();
}
