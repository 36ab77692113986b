/* key: key validation and derivation, hashed with nettle's SHA-256. */
#include "key.h"

#include <errno.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* add one length-prefixed record to the digest, so records cannot run into
 * each other whatever bytes they hold */
static void add_record(struct sha256_ctx *ctx, const char *tag, const void *p, size_t len)
{
	char head[64];
	int n = snprintf(head, sizeof(head), "%s:%zu:", tag, len);

	sha256_update(ctx, n, (const unsigned char *)head);
	sha256_update(ctx, len, p);
}

static void add_file(struct sha256_ctx *ctx, const char *path)
{
	struct stat st;
	char desc[96];

	add_record(ctx, "file", path, strlen(path));
	if (stat(path, &st) < 0)
		snprintf(desc, sizeof(desc), "absent");
	else
		snprintf(desc, sizeof(desc), "%lld %lld.%09ld", (long long)st.st_size,
			 (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
	add_record(ctx, "stat", desc, strlen(desc));
}

static int add_scope(struct sha256_ctx *ctx, const struct key_scope *scope)
{
	if (scope->cwd) {
		char *cwd = getcwd(NULL, 0);
		if (!cwd) {
			err_set("--scope-cwd: cannot read the working directory: %s",
				strerror(errno));
			return -1;
		}
		add_record(ctx, "cwd", cwd, strlen(cwd));
		free(cwd);
	}
	for (int i = 0; i < scope->nenv; i++) {
		const char *v = getenv(scope->env[i]);
		add_record(ctx, "env", scope->env[i], strlen(scope->env[i]));
		add_record(ctx, v ? "set" : "unset", v ? v : "", v ? strlen(v) : 0);
	}
	for (int i = 0; i < scope->nfiles; i++)
		add_file(ctx, scope->files[i]);
	if (scope->stdin_digest)
		add_record(ctx, "stdin", scope->stdin_digest, SHA256_DIGEST_SIZE);
	return 0;
}

static bool scope_empty(const struct key_scope *s)
{
	return !s || (!s->cwd && !s->nenv && !s->nfiles && !s->stdin_digest);
}

int key_derive(struct buf *out, char *const *argv, const struct key_scope *scope)
{
	struct sha256_ctx ctx;
	unsigned char digest[SHA256_DIGEST_SIZE];
	char hex[KEY_HASH_HEX];

	sha256_init(&ctx);
	for (char *const *a = argv; *a; a++)
		sha256_update(&ctx, strlen(*a) + 1, (const unsigned char *)*a);
	sha256_digest(&ctx, sizeof(digest), digest);
	/* with a scope, hash the fixed-size argv digest and the records, so no
	 * argv can be mistaken for argv plus a scope */
	if (!scope_empty(scope)) {
		sha256_init(&ctx);
		sha256_update(&ctx, sizeof(digest), digest);
		if (add_scope(&ctx, scope) < 0)
			return -1;
		sha256_digest(&ctx, sizeof(digest), digest);
	}
	hex_encode(hex, digest, sizeof(digest));
	out->len = 0;
	buf_append(out, "cmd:", 4);
	buf_append(out, hex, sizeof(hex) - 1);
	return 0;
}

int key_digest_read(int in_fd, int (*keep)(void *ctx, const char *p, size_t n), void *ctx,
		    unsigned char digest[32])
{
	struct sha256_ctx sha;
	char chunk[65536];
	ssize_t n;

	sha256_init(&sha);
	while ((n = read(in_fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err_set("--stdin: cannot read standard input: %s", strerror(errno));
			return -1;
		}
		sha256_update(&sha, n, (const unsigned char *)chunk);
		if (keep && keep(ctx, chunk, n) < 0)
			return -1;
	}
	sha256_digest(&sha, SHA256_DIGEST_SIZE, digest);
	return 0;
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
