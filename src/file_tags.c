/* file_tags: the local store's tags; see file_tags.h. */
#include "file_tags.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file_dir.h"
#include "file_lock.h"
#include "file_sweep.h"
#include "key.h"
#include "records.h"
#include "store_file.h"
#include "util.h"

/* the file listing a tag's keys: tag-SHA256(tag) */
static void tag_file(char *out, size_t outlen, const char *tag)
{
	char h[KEY_HASH_HEX];

	key_hash_hex(h, tag, strlen(tag));
	snprintf(out, outlen, "tag-%s", h);
}

/* the file holding a tag's name: tagname-SHA256(tag) */
static void tag_name_file(char *out, size_t outlen, const char *tag)
{
	char h[KEY_HASH_HEX];

	key_hash_hex(h, tag, strlen(tag));
	snprintf(out, outlen, "tagname-%s", h);
}

/* Keep the tag's name for list --tags, once: written aside and renamed into
 * place, so a reader finds the whole name or none. Best effort: a tag
 * without its name still fences and invalidates, it is only not listed. */
static void tag_keep_name(struct file_store *fs, const char *tag)
{
	char name[KEY_HASH_HEX + 16], tmp[KEY_HASH_HEX + 48];

	tag_name_file(name, sizeof(name), tag);
	if (faccessat(fs->dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return;
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", name, (long)getpid());
	replace_file(fs, name, tmp, tag, strlen(tag));
}

/* does tagname-H's tag file, tag-H, exist? (true if that cannot be told) */
bool tag_file_of_name_exists(struct file_store *fs, const char *tag_name_file)
{
	char name[KEY_HASH_HEX + 8];

	snprintf(name, sizeof(name), "tag-%s", tag_name_file + 8);
	return faccessat(fs->dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
}

/* File key under tag: one record appended in one write(2), under the commit
 * lock, so records of concurrent leaders never interleave. A record that a
 * full disk cuts short is cut off again (ftruncate never needs space), and
 * one that a crash left without its newline gets one before ours, so that
 * a reader loses at most that record. 0, or -1 with err_set(). */
static int tag_add(struct file_store *fs, const char *tag, const char *key, size_t len)
{
	char name[KEY_HASH_HEX + 8], last = '\n';
	struct buf rec = {0};
	struct stat st;
	int rc = -1, e;

	tag_keep_name(fs, tag);
	tag_file(name, sizeof(name), tag);
	int fd =
		openat(fs->dirfd, name, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &st) < 0)
		goto out;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		goto out;
	}
	if (st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) != 1)
		goto out;
	if (last != '\n')
		buf_append(&rec, "\n", 1);
	record_append(&rec, key, len);
	if (write_all(fd, rec.data, rec.len) < 0) {
		e = errno;
		if (ftruncate(fd, st.st_size) < 0)
			log_warn("cannot cut a torn record off the tag file %s/%s: %s", fs->dir,
				 name, strerror(errno));
		errno = e;
		goto out;
	}
	rc = 0;
out:
	e = errno;
	if (fd >= 0 && close(fd) < 0 && rc == 0) {
		rc = -1;
		e = errno;
	}
	if (rc < 0)
		err_set("cannot file the result under tag %s in %s: %s", tag, fs->dir, strerror(e));
	buf_free(&rec);
	return rc;
}

/* After invalidating the records that were in a tag file (its first done
 * bytes, as in was), drop them from it, keeping what leaders appended
 * since: under the commit lock, as appends are. Best effort: records left
 * behind only name keys once more. */
static void tag_drop_done(struct file_store *fs, const char *name, const struct buf *was)
{
	struct buf now = {0};
	char tmp[KEY_HASH_HEX + 32];

	int cfd = commit_lock(fs);
	if (cfd < 0)
		return;
	if (read_small_file(fs, name, &now) != 0 || now.len < was->len ||
	    (was->len && memcmp(now.data, was->data, was->len) != 0))
		goto out; /* gone, or rewritten by a sweep: nothing to drop */
	if (now.len == was->len) {
		unlinkat(fs->dirfd, name, 0);
		goto out;
	}
	snprintf(tmp, sizeof(tmp), "%s.inval.tmp", name);
	replace_file(fs, name, tmp, now.data + was->len, now.len - was->len);
out:
	commit_unlock(cfd);
	buf_free(&now);
}

/* Fence out the leaders running for tag first: one that stores after that
 * has filed its record by then, under the commit lock, where we read. A
 * record we cannot read (cut short by a crash, or by a full disk under an
 * older version) may name an entry that stays: that is an error to report,
 * after every record that reads has been acted on. */
long file_invalidate_tag(struct store *s, const char *tag)
{
	struct file_store *fs = to_file(s);
	char name[KEY_HASH_HEX + 8];
	struct buf b = {0}, key = {0};
	long deleted = 0, damaged = 0;
	size_t pos = 0;
	int rc;

	if (fence_running(fs, NULL, tag) < 0)
		return -1;
	tag_file(name, sizeof(name), tag);
	int cfd = commit_lock(fs);
	if (cfd < 0)
		return -1;
	rc = read_small_file(fs, name, &b);
	commit_unlock(cfd);
	if (rc != 0) {
		buf_free(&b);
		return rc < 0 ? -1 : 0;
	}
	while (deleted >= 0 && (rc = record_next(b.data, b.len, &pos, &key)) != 0) {
		if (rc < 0) {
			damaged++;
			continue;
		}
		int one = file_invalidate(s, key.data, key.len);
		deleted = one < 0 ? -1 : deleted + one;
	}
	if (deleted >= 0)
		tag_drop_done(fs, name, &b);
	if (deleted >= 0 && damaged > 0) {
		err_set("tag %s: %ld entr%s invalidated, but %ld record%s of the tag file %s/%s could "
			"not be read (cut short by a crash or a full disk): the entries %s named may "
			"remain (invalidate them by key or with --match)",
			tag, deleted, deleted == 1 ? "y" : "ies", damaged, damaged == 1 ? "" : "s",
			fs->dir, name, damaged == 1 ? "it" : "they");
		deleted = -1;
	}
	buf_free(&b);
	buf_free(&key);
	return deleted;
}

/* the name in tagname-H, if it is a whole tag name that hashes to H and
 * its tag file tag-H exists; 1 with the name in b, else 0 */
static int read_tag_name(struct file_store *fs, const char *name, struct buf *b)
{
	char h[KEY_HASH_HEX];

	b->len = 0;
	if (strlen(name) != 8 + KEY_HASH_HEX - 1 || !is_hex(name + 8, KEY_HASH_HEX - 1) ||
	    !tag_file_of_name_exists(fs, name) || read_small_file(fs, name, b) != 0 ||
	    b->len == 0 || b->len > KEY_MAX || memchr(b->data, '\0', b->len))
		return 0;
	key_hash_hex(h, b->data, b->len);
	return memcmp(h, name + 8, KEY_HASH_HEX - 1) == 0;
}

struct tags_walk {
	const char *glob;
	tag_fn fn;
	void *ctx;
	struct buf tag;
	int stopped; /* fn's non-zero return: stop, which is no failure */
};

static int tag_of_name(struct file_store *fs, const char *name, void *ctx)
{
	struct tags_walk *w = ctx;

	if (strncmp(name, "tagname-", 8) == 0 && read_tag_name(fs, name, &w->tag) &&
	    (!w->glob || fnmatch(w->glob, w->tag.data, 0) == 0))
		return w->stopped = w->fn(w->ctx, w->tag.data, w->tag.len);
	return 0;
}

int file_list_tags(struct store *s, const char *glob, tag_fn fn, void *ctx)
{
	struct file_store *fs = to_file(s);
	struct tags_walk w = {.glob = glob, .fn = fn, .ctx = ctx};

	file_sweep(fs); /* so that a tag whose entries are all gone is gone too */
	int rc = store_each(fs, tag_of_name, &w);
	buf_free(&w.tag);
	return rc < 0 && !w.stopped ? -1 : 0;
}

/* File the entry under its tags before it appears, under the commit lock
 * (so a sweep compacting a tag file or invalidate --tag reading it sees
 * both or neither); 0, or -1 with err_set(). A record filed for an entry
 * that then fails to appear only names a key that has none. */
int file_tags(struct file_store *fs, const struct result *r, const char *key, size_t key_len)
{
	for (int i = 0; i < r->ntags; i++)
		if (tag_add(fs, r->tags[i], key, key_len) < 0)
			return -1;
	return 0;
}
