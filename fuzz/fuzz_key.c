/* fuzz_key: key validation, derivation and printing on any bytes.
 * key_derive gets the argv the input makes when split on NUL (as a command
 * line would be), and must give "cmd:" and the SHA-256 of every argument
 * followed by its NUL; a scope must change that key and be stable.
 * key_validate must accept exactly the keys of 1 to KEY_MAX bytes without
 * NUL. key_printable must give printable ASCII that reads back as the key's
 * first 120 bytes, then "..." if there were more. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "key.h"

#define PRINT_LIMIT 120

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void check_derive(const uint8_t *data, size_t size)
{
	/* the input and one more NUL: every NUL ends an argument */
	char *copy = xmalloc(size + 1), hex[KEY_HASH_HEX];
	size_t nargs = 1;
	struct buf key = {0}, scoped = {0}, again = {0};

	memcpy(copy, data, size);
	copy[size] = '\0';
	for (size_t i = 0; i < size; i++)
		nargs += data[i] == '\0';
	char **argv = xcalloc(nargs + 1, sizeof(*argv));
	for (size_t i = 0, a = 0, start = 0; i <= size; i++) {
		if (copy[i] == '\0') {
			argv[a++] = copy + start;
			start = i + 1;
		}
	}

	CHECK(key_derive(&key, argv, NULL) == 0);
	key_hash_hex(hex, copy, size + 1);
	CHECK(key.len == 4 + KEY_HASH_HEX - 1);
	CHECK(memcmp(key.data, "cmd:", 4) == 0 && memcmp(key.data + 4, hex, KEY_HASH_HEX - 1) == 0);

	/* a scope of the working directory, the first arguments as variable
	 * names, and a digest of the input as standard input */
	unsigned char digest[32];
	const char *env[3];
	struct key_scope scope = {.cwd = true, .env = env, .stdin_digest = digest};
	for (size_t i = 0; i < 32; i++)
		digest[i] = (unsigned char)hex_digit(hex[i * 2]) << 4 | hex_digit(hex[i * 2 + 1]);
	for (; scope.nenv < 3 && (size_t)scope.nenv < nargs; scope.nenv++)
		env[scope.nenv] = argv[scope.nenv];
	CHECK(key_derive(&scoped, argv, &scope) == 0);
	CHECK(key_derive(&again, argv, &scope) == 0);
	CHECK(scoped.len == key.len && strcmp(scoped.data, again.data) == 0);
	CHECK(strcmp(scoped.data, key.data) != 0);

	buf_free(&key);
	buf_free(&scoped);
	buf_free(&again);
	free(argv);
	free(copy);
}

static void check_validate(const uint8_t *data, size_t size)
{
	bool valid = size > 0 && size <= KEY_MAX && !memchr(data, '\0', size);
	int rc = key_validate((const char *)data, size);

	CHECK((rc == 0) == valid);
	if (rc < 0)
		CHECK(one_line(err_msg()));
}

static void check_printable(const uint8_t *data, size_t size)
{
	struct buf out = {0};
	const char *p = key_printable(&out, (const char *)data, size);
	size_t want = size < PRINT_LIMIT ? size : PRINT_LIMIT, i = 0;

	CHECK(p == out.data && strlen(p) == out.len);
	for (const char *c = p; *c; c++)
		CHECK(*c >= 0x20 && *c < 0x7f);
	/* read it back: \xNN or a byte as it is */
	for (; i < want; i++) {
		int b = (unsigned char)*p;
		if (*p == '\\') {
			CHECK(p[1] == 'x');
			int hi = hex_digit(p[2]), lo = hex_digit(hi < 0 ? '-' : p[3]);
			CHECK(hi >= 0 && lo >= 0);
			b = hi << 4 | lo;
			p += 4;
		} else {
			CHECK(*p != '\0');
			p++;
		}
		CHECK(b == data[i]);
	}
	CHECK(strcmp(p, size > PRINT_LIMIT ? "..." : "") == 0);
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_derive(data, size);
	check_validate(data, size);
	check_printable(data, size);
	return 0;
}
