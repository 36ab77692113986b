/* file_stats: the local store's counters file; see file_stats.h */
#include "file_stats.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define STATS_FILE "stats"
#define STATS_MAGIC 0x3173746174736663ull /* "cfstats1", little-endian */
#define STATS_SLOTS 64

struct stats_page {
	uint64_t magic;
	uint64_t counters[STATS_SLOTS];
};

/* open the counters file on first use; 0, or -1 with err_set() and
 * st->open_errno */
static int stats_open(struct file_stats *st, int dirfd, const char *dir)
{
	struct stat sb;

	if (st->opened) {
		if (st->open_errno)
			err_set("cannot open the counters in %s: %s", dir,
				strerror(st->open_errno));
		return st->open_errno ? -1 : 0;
	}
	st->opened = true;
	st->writable = true;
	int fd = openat(dirfd, STATS_FILE, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EROFS || errno == EACCES)) {
		/* a read-only store still shows its counters; with no file yet
		 * they are all zero (fd stays -1) */
		st->writable = false;
		fd = openat(dirfd, STATS_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			return 0;
	}
	if (fd >= 0 && (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))) {
		close(fd);
		fd = -1;
		errno = EINVAL;
	}
	if (fd < 0) {
		st->open_errno = errno;
		err_set("cannot open the counters in %s: %s", dir, strerror(errno));
		return -1;
	}
	st->fd = fd;
	return 0;
}

/* read the page at fd (held under our flock): a short or new file reads as
 * zeroes, and so does one of another layout; 0 or -1 with errno */
static int page_load(int fd, struct stats_page *p)
{
	memset(p, 0, sizeof(*p));
	if (fd < 0)
		return 0;
	ssize_t n = pread(fd, p, sizeof(*p), 0);
	if (n < 0)
		return -1;
	if (p->magic != STATS_MAGIC)
		memset(p, 0, sizeof(*p));
	return 0;
}

/* write the page back whole; 0, or -1 with errno (ENOSPC on a full disk) */
static int page_store(int fd, struct stats_page *p)
{
	p->magic = STATS_MAGIC;
	ssize_t n = pwrite(fd, p, sizeof(*p), 0);
	if (n == (ssize_t)sizeof(*p))
		return 0;
	if (n >= 0)
		errno = ENOSPC;
	return -1;
}

static int lock_fd(int fd, int how)
{
	while (fd >= 0 && flock(fd, how) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

void file_stats_add(struct file_stats *st, int dirfd, const char *dir, int which)
{
	struct stats_page p;
	const char *why;
	int e = 0;

	/* no err_set() here: a count may fall between a failure and its report */
	if (which < 0 || which >= STATS_SLOTS)
		return;
	if (stats_open(st, dirfd, dir) < 0) {
		why = "cannot open them";
		e = st->open_errno;
	} else if (!st->writable || st->fd < 0) {
		why = "the store is read-only";
	} else if (lock_fd(st->fd, LOCK_EX) < 0) {
		why = "cannot lock them";
		e = errno;
	} else {
		int rc = page_load(st->fd, &p);
		if (rc == 0) {
			p.counters[which]++;
			rc = page_store(st->fd, &p);
		}
		e = errno;
		lock_fd(st->fd, LOCK_UN);
		if (rc == 0)
			return;
		why = "cannot write them";
	}
	if (!st->warned)
		log_verbose("counters in %s not updated: %s%s%s", dir, why, e ? ": " : "",
			    e ? strerror(e) : "");
	st->warned = true;
}

int file_stats_read(struct file_stats *st, int dirfd, const char *dir, uint64_t *c, int n,
		    bool reset)
{
	struct stats_page p;

	if (stats_open(st, dirfd, dir) < 0)
		return -1;
	if (reset && (!st->writable || st->fd < 0)) {
		err_set("cannot reset the counters in %s: the store is read-only", dir);
		return -1;
	}
	if (lock_fd(st->fd, reset ? LOCK_EX : LOCK_SH) < 0) {
		err_set("cannot lock the counters in %s: %s", dir, strerror(errno));
		return -1;
	}
	int rc = page_load(st->fd, &p);
	if (rc == 0) {
		for (int i = 0; i < n && i < STATS_SLOTS; i++)
			c[i] = p.counters[i];
		if (reset) {
			memset(&p, 0, sizeof(p));
			rc = page_store(st->fd, &p);
		}
	}
	int e = errno;
	lock_fd(st->fd, LOCK_UN);
	if (rc < 0) {
		err_set("cannot %s the counters in %s: %s", reset ? "reset" : "read", dir,
			strerror(e));
		return -1;
	}
	return 0;
}

void file_stats_close(struct file_stats *st)
{
	if (st->fd >= 0)
		close(st->fd);
	st->fd = -1;
	st->opened = false;
}
