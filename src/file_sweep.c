/* file_sweep: the local store's clean-up; see file_sweep.h. */
#include "file_sweep.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file_dir.h"
#include "file_lock.h"
#include "file_tags.h"
#include "key.h"
#include "records.h"
#include "store_file.h"
#include "util.h"

/* one store in SWEEP_ODDS sweeps the directory: often enough that expired
 * entries do not pile up, rarely enough that a busy host does not notice */
#define SWEEP_ODDS 32
/* a round result older than this has no waiter left to collect it */
#define DONE_MAX_AGE_S 60
/* a temporary file this old was left by a leader that died mid-write */
#define TMP_MAX_AGE_S 3600
/* a tag file being rewritten this long ago was left by a process that died */
#define TAG_TMP_MAX_AGE_S 60

bool file_sweep_due(void)
{
	unsigned char r;

	return getrandom(&r, 1, GRND_NONBLOCK) == 1 && r % SWEEP_ODDS == 0;
}

static bool older_than(struct file_store *fs, const char *name, time_t seconds)
{
	struct stat st;

	return fstatat(fs->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       st.st_mtime + seconds < time(NULL);
}

/* rewrite a tag file keeping the records whose entries still live; an
 * empty tag file is removed, so a tag whose entries expired costs nothing */
static void compact_tag(struct file_store *fs, const char *name)
{
	struct buf b = {0}, keep = {0};
	char tmp[KEY_HASH_HEX + 32];

	if (read_small_file(fs, name, &b) != 0)
		goto out;
	struct buf key = {0};
	size_t pos = 0, start = 0;
	int rc;
	/* a record that does not read is dropped: it names nothing we could find */
	while ((rc = record_next(b.data, b.len, &pos, &key)) != 0) {
		struct stored st;
		if (rc == 1 && entry_open(fs, key.data, key.len, &st) == 1) {
			if (entry_freshness(&st.meta, realtime_ms()) != ENTRY_EXPIRED)
				buf_append(&keep, b.data + start, pos - start);
			stored_close(&st);
		}
		start = pos;
	}
	buf_free(&key);
	if (keep.len == 0) {
		unlinkat(fs->dirfd, name, 0);
		goto out;
	}
	if (keep.len == b.len)
		goto out;
	snprintf(tmp, sizeof(tmp), "%s.sweep.tmp", name);
	replace_file(fs, name, tmp, keep.data, keep.len);
out:
	buf_free(&b);
	buf_free(&keep);
}

/* drop an entry file once every window has passed */
static void sweep_entry(struct file_store *fs, const char *name)
{
	struct stored st;

	/* its mtime is its expiry: a living entry costs one fstatat */
	if (!older_than(fs, name, 0) || stored_open(fs, name, &st) != 1)
		return;
	bool expired = entry_freshness(&st.meta, realtime_ms()) == ENTRY_EXPIRED;
	stored_close(&st);
	if (expired)
		unlinkat(fs->dirfd, name, 0);
}

/* sweep one name of the store directory (see file_sweep) */
static int sweep_name(struct file_store *fs, const char *n, void *ctx)
{
	(void)ctx;
	if (ends_with(n, ".entry"))
		sweep_entry(fs, n);
	else if (ends_with(n, ".done") && older_than(fs, n, DONE_MAX_AGE_S))
		unlinkat(fs->dirfd, n, 0);
	else if ((ends_with(n, ".bypass") || ends_with(n, ".backoff")) && older_than(fs, n, 0))
		unlinkat(fs->dirfd, n, 0);
	else if (strncmp(n, "tag-", 4) == 0 && ends_with(n, ".tmp")) {
		if (older_than(fs, n, TAG_TMP_MAX_AGE_S))
			unlinkat(fs->dirfd, n, 0);
	} else if (ends_with(n, ".tmp") && older_than(fs, n, TMP_MAX_AGE_S))
		unlinkat(fs->dirfd, n, 0);
	else if (strncmp(n, "tag-", 4) == 0)
		compact_tag(fs, n);
	else if (strncmp(n, "tagname-", 8) == 0 && older_than(fs, n, TAG_TMP_MAX_AGE_S) &&
		 !tag_file_of_name_exists(fs, n))
		unlinkat(fs->dirfd, n, 0);
	return 0;
}

/* Remove what has outlived its use: expired entries, old round results,
 * temporaries of leaders that died, and tag records of gone entries. Lock
 * files stay: unlinking one that another process is about to lock would
 * let two leaders run. Runs under the commit lock, against which entries
 * are renamed into place and tags appended. Best effort: errors are ignored. */
void file_sweep(struct file_store *fs)
{
	int cfd = commit_lock(fs);

	if (cfd < 0)
		return;
	store_each(fs, sweep_name, NULL);
	commit_unlock(cfd);
}
