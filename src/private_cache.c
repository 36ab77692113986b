/* private_cache: small private files between runs (see private_cache.h). */
#include "private_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* the directory of the caches, malloc'ed; NULL when there is no place */
static char *cache_dir(const char *kind)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");

	if (xdg && xdg[0] == '/')
		return xasprintf("%s/cachefence-%s", xdg, kind);
	if (home && home[0] == '/')
		return xasprintf("%s/.cache/cachefence-%s", home, kind);
	return NULL;
}

/* make the directory of the file at path if missing; whether it is ours
 * alone (only then is a cache written there) */
static bool private_dir_of(const char *path)
{
	char *dir = xstrdup(path);
	struct stat st;

	*strrchr(dir, '/') = '\0';
	if (mkdir(dir, 0700) < 0 && errno == ENOENT) {
		/* ~/.cache itself may be missing */
		char *parent = xstrdup(dir);
		*strrchr(parent, '/') = '\0';
		mkdir(parent, 0700);
		free(parent);
		mkdir(dir, 0700);
	}
	bool ok = lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
		  !(st.st_mode & 077);
	free(dir);
	return ok;
}

char *private_cache_path(const char *kind, const char *name)
{
	struct sha256_ctx ctx;
	uint8_t d[SHA256_DIGEST_SIZE];
	char hex[33];

	sha256_init(&ctx);
	sha256_update(&ctx, strlen(name), (const uint8_t *)name);
	sha256_digest(&ctx, sizeof(d), d);
	for (size_t i = 0; i < 16; i++) {
		/* a hit opens the file: no snprintf here */
		hex[2 * i] = "0123456789abcdef"[d[i] >> 4];
		hex[2 * i + 1] = "0123456789abcdef"[d[i] & 15];
	}
	hex[32] = '\0';
	char *dir = cache_dir(kind);
	if (!dir)
		return NULL;
	char *path = xasprintf("%s/%s", dir, hex);
	free(dir);
	return path;
}

int private_cache_read(const char *path, struct buf *b)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	int rc = -1;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
	    !(st.st_mode & 077) && st.st_size < PRIVATE_CACHE_MAX) {
		char chunk[8192];
		ssize_t n;
		while ((n = read(fd, chunk, sizeof(chunk))) > 0 &&
		       b->len + (size_t)n < PRIVATE_CACHE_MAX)
			buf_append(b, chunk, (size_t)n);
		rc = n == 0 ? 0 : -1;
	}
	close(fd);
	return rc;
}

void private_cache_write(const char *path, const void *p, size_t n)
{
	if (!private_dir_of(path))
		return;
	char *tmp = xasprintf("%s.%ld.tmp", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0) {
		bool ok = write_all(fd, p, n) == 0;
		if (close(fd) < 0)
			ok = false;
		if (!ok || rename(tmp, path) < 0)
			unlink(tmp);
	}
	free(tmp);
}
