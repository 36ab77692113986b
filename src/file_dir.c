/* file_dir: the local store's directory, opened only when it is private,
 * and the names of the files in it; see file_dir.h. */
#include "file_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "key.h"
#include "store_file.h"
#include "util.h"

/* the file name of one of key's parts: H + suffix */
void file_name(char *out, size_t outlen, const char *key, size_t len, const char *suffix)
{
	char h[KEY_HASH_HEX];

	key_hash_hex(h, key, len);
	snprintf(out, outlen, "%s%s", h, suffix);
}

/* the file name of one of key's parts that belongs to a round: H.TOKEN + suffix */
void round_name(char *out, size_t outlen, const char *key, size_t len, const char *token,
		const char *suffix)
{
	char h[KEY_HASH_HEX];

	key_hash_hex(h, key, len);
	snprintf(out, outlen, "%s.%.*s%s", h, TOKEN_LEN, token, suffix);
}

/* true if the n bytes at p are lowercase hex digits */
bool is_hex(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

/* refuse a directory that someone else could write into or swap */
static int check_private(int fd, const char *path)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		err_set("cannot stat the store directory %s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_uid != geteuid()) {
		err_set("the store directory %s belongs to uid %ld, not to you (uid %ld): refusing it "
			"(use a directory of your own with -u file:///DIR)",
			path, (long)st.st_uid, (long)geteuid());
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		err_set("the store directory %s is writable by group or others: refusing it "
			"(chmod 700 %s)",
			path, path);
		return -1;
	}
	return 0;
}

/* mkdir -p with mode 0700 for what is missing */
static int make_dirs(const char *path)
{
	char *p = xstrdup(path);
	int rc = 0;

	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			err_set("cannot create the store directory %s: %s", p, strerror(errno));
			rc = -1;
			break;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return rc;
}

/* Explain why a store directory would not open. A symbolic link or a file
 * in its place is refused (retrying cannot help, and following a link is how
 * a shared /tmp is turned against its users); anything else is a failure to
 * run uncached past. */
static void refuse_or_fail(const char *path, bool *refused)
{
	int e = errno;
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		err_set("the store directory %s is a symbolic link: refusing it (name the real "
			"directory)",
			path);
		*refused = true;
	} else if (e == ENOTDIR || e == ELOOP) {
		err_set("the store directory %s is not a directory: refusing it", path);
		*refused = true;
	} else {
		err_set("cannot open the store directory %s: %s", path, strerror(e));
	}
}

/* open DIR (created if missing) and its namespace subdirectory, both private */
int open_store_dir(const char *path, const char *ns, char **ns_path, bool *refused)
{
	if (make_dirs(path) < 0)
		return -1;
	int top = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (top < 0) {
		refuse_or_fail(path, refused);
		return -1;
	}
	if (check_private(top, path) < 0) {
		*refused = true;
		close(top);
		return -1;
	}
	*ns_path = xasprintf("%s/%s", path, ns);
	if (mkdirat(top, ns, 0700) < 0 && errno != EEXIST) {
		err_set("cannot create the store directory %s: %s", *ns_path, strerror(errno));
		close(top);
		return -1;
	}
	int fd = openat(top, ns, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close(top);
	if (fd < 0) {
		refuse_or_fail(*ns_path, refused);
		return -1;
	}
	if (check_private(fd, *ns_path) < 0) {
		*refused = true;
		close(fd);
		return -1;
	}
	return fd;
}

/* read a whole small file into b; 0, 1 when absent, -1 with err_set() */
int replace_file(struct file_store *fs, const char *name, const char *tmp, const void *p, size_t n)
{
	int fd =
		openat(fs->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd < 0)
		return -1;
	int rc = write_all(fd, p, n);
	if (close(fd) < 0 || rc < 0 || renameat(fs->dirfd, tmp, fs->dirfd, name) < 0) {
		unlinkat(fs->dirfd, tmp, 0);
		return -1;
	}
	return 0;
}

int read_small_file(struct file_store *fs, const char *name, struct buf *b)
{
	char chunk[65536];
	ssize_t n;
	int fd = openat(fs->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		err_set("cannot open %s/%s: %s", fs->dir, name, strerror(errno));
		return -1;
	}
	while ((n = read_full(fd, chunk, sizeof(chunk))) > 0)
		buf_append(b, chunk, n);
	close(fd);
	if (n < 0) {
		err_set("cannot read %s/%s: %s", fs->dir, name, strerror(errno));
		return -1;
	}
	return 0;
}

int store_each(struct file_store *fs, int (*fn)(struct file_store *fs, const char *name, void *ctx),
	       void *ctx)
{
	/* a descriptor of its own, which closedir() closes */
	int dfd = dup(fs->dirfd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *de;
	int rc = 0;

	if (!d) {
		err_set("cannot read the store directory %s: %s", fs->dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	rewinddir(d);
	while (rc == 0 && (de = readdir(d)))
		rc = fn(fs, de->d_name, ctx);
	closedir(d);
	return rc;
}

bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}
