/* key: key validation and derivation, hashed with nettle's SHA-256. */
#include "key.h"

#include <nettle/sha2.h>
#include <string.h>

int key_validate(const char *key, size_t len)
{
	if (len == 0) {
		err_set("the key is empty (give a non-empty --key, or none to derive it from COMMAND)");
		return -1;
	}
	if (len > KEY_MAX) {
		err_set("the key is %zu bytes, longer than the %d allowed", len, KEY_MAX);
		return -1;
	}
	if (memchr(key, '\0', len)) {
		err_set("the key holds a NUL byte");
		return -1;
	}
	return 0;
}

void key_derive(struct buf *out, char *const *argv)
{
	struct sha256_ctx ctx;
	unsigned char digest[SHA256_DIGEST_SIZE];
	char hex[KEY_HASH_HEX];

	sha256_init(&ctx);
	for (char *const *a = argv; *a; a++)
		sha256_update(&ctx, strlen(*a) + 1, (const unsigned char *)*a);
	sha256_digest(&ctx, sizeof(digest), digest);
	hex_encode(hex, digest, sizeof(digest));
	out->len = 0;
	buf_append(out, "cmd:", 4);
	buf_append(out, hex, sizeof(hex) - 1);
}

void key_hash_hex(char out[KEY_HASH_HEX], const void *p, size_t len)
{
	struct sha256_ctx ctx;
	unsigned char digest[SHA256_DIGEST_SIZE];

	sha256_init(&ctx);
	sha256_update(&ctx, len, p);
	sha256_digest(&ctx, sizeof(digest), digest);
	hex_encode(out, digest, sizeof(digest));
}

const char *key_printable(struct buf *out, const char *key, size_t len)
{
	const size_t limit = 120;

	out->len = 0;
	for (size_t i = 0; i < len && i < limit; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c < 0x20 || c >= 0x7f || c == '\\')
			buf_appendf(out, "\\x%02x", c);
		else
			buf_append(out, &key[i], 1);
	}
	if (len > limit)
		buf_append(out, "...", 3);
	if (!out->data)
		buf_append(out, "", 0);
	return out->data;
}
