/* spawn: a run's process plumbing; see spawn.h. Every descriptor opened
 * here is close-on-exec, which is how close_fds tells ours from the
 * caller's. */
#include "spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int spool_open(void)
{
	const char *dir = getenv("TMPDIR");

	if (!dir || !*dir)
		dir = "/tmp";
	char *path = xasprintf("%s/cachefence.XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd >= 0) {
		unlink(path);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
	} else {
		err_set("cannot create a spool file in %s: %s (set TMPDIR)", dir, strerror(errno));
	}
	free(path);
	return fd;
}

void spools_close(struct spools *sp)
{
	if (sp->out >= 0)
		close(sp->out);
	if (sp->err >= 0)
		close(sp->err);
}

int spools_open(struct spools *sp, bool with_err)
{
	sp->out = spool_open();
	sp->err = -1;
	if (sp->out < 0)
		return -1;
	if (with_err && (sp->err = spool_open()) < 0) {
		spools_close(sp);
		return -1;
	}
	return 0;
}

int spools_rewind(struct spools *sp)
{
	if (lseek(sp->out, 0, SEEK_SET) < 0 || (sp->err >= 0 && lseek(sp->err, 0, SEEK_SET) < 0)) {
		err_set("cannot rewind the spool file: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Close the descriptors above stderr but keep and keep2 (-1: none): what
 * the caller handed us (a `5>file`, a test harness's pipe), which a detached
 * process must not keep open for whoever waits on them, and with store_too
 * also our own (the store's connections and lock files), which are told
 * apart by being close-on-exec. */
static void close_fds(bool store_too, int keep, int keep2)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	if (!d)
		return;
	int self = dirfd(d);
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name);
		int flags = fcntl(fd, F_GETFD);
		if (fd > STDERR_FILENO && fd != self && fd != keep && fd != keep2 && flags >= 0 &&
		    (store_too || !(flags & FD_CLOEXEC)))
			close(fd);
	}
	closedir(d);
}

/* /dev/null onto stdout and stderr, and stdin too if with_in; best effort */
static void null_std_fds(bool with_in)
{
	int null = open("/dev/null", O_RDWR);

	if (null < 0)
		return;
	if (with_in)
		dup2(null, STDIN_FILENO);
	dup2(null, STDOUT_FILENO);
	dup2(null, STDERR_FILENO);
	if (null > STDERR_FILENO)
		close(null);
}

pid_t spawn_detached(void)
{
	pid_t pid = fork();

	if (pid < 0) {
		err_set("%s", strerror(errno));
		return -1;
	}
	if (pid > 0)
		return pid;
	setsid();
	close_fds(false, -1, -1);
	null_std_fds(true);
	return 0;
}

int stdin_keep_open(struct stdin_keep *k)
{
	struct stat st;

	k->start = -1;
	if (fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode))
		k->start = lseek(STDIN_FILENO, 0, SEEK_CUR);
	k->spool = spool_open();
	return k->spool < 0 ? -1 : 0;
}

int stdin_keep_bytes(void *arg, const char *p, size_t n)
{
	struct stdin_keep *k = arg;
	size_t done = 0;

	while (done < n) {
		ssize_t w = write(k->spool, p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			err_set("--stdin: cannot keep standard input in a spool file: %s (set TMPDIR)",
				strerror(w < 0 ? errno : EIO));
			k->spooled += done;
			k->partial = true;
			buf_append(&k->held, p + done, n - done);
			return -1;
		}
		done += w;
	}
	k->spooled += done;
	return 0;
}

int stdin_keep_fd(const struct stdin_keep *k)
{
	return k->spool >= 0 && lseek(k->spool, 0, SEEK_SET) == 0 ? k->spool : -1;
}

/* the partial case of stdin_keep_restore: a grandchild, so that it is
 * nobody's zombie once done, writes the kept bytes and then the rest of
 * fd 0 into a pipe that becomes our fd 0 */
static int give_back_stdin(struct stdin_keep *k)
{
	int p[2];

	if (k->start >= 0 && lseek(STDIN_FILENO, k->start, SEEK_SET) >= 0)
		return 0;
	if (pipe(p) < 0) {
		err_set("pipe: %s", strerror(errno));
		return -1;
	}
	fcntl(p[0], F_SETFD, FD_CLOEXEC);
	fcntl(p[1], F_SETFD, FD_CLOEXEC);
	pid_t pid = fork();
	if (pid == 0) {
		pid_t g = fork();
		if (g != 0)
			_exit(g < 0 ? 1 : 0);
		close(p[0]);
		null_std_fds(false);
		/* the store's connection and locks too: this process outlives
		 * the run while it reads stdin, and must not hold them */
		close_fds(true, p[1], k->spool);
		if ((k->spooled && (lseek(k->spool, 0, SEEK_SET) < 0 ||
				    copy_fd(k->spool, p[1], k->spooled) < 0)) ||
		    write_all(p[1], k->held.data, k->held.len) < 0)
			_exit(1);
		char chunk[65536];
		ssize_t n;
		while ((n = read(STDIN_FILENO, chunk, sizeof(chunk))) != 0) {
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 || write_all(p[1], chunk, n) < 0)
				_exit(1);
		}
		_exit(0);
	}
	int e = errno, wstatus = 0;
	if (pid > 0)
		while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
			;
	if (pid < 0 || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
		err_set("fork: %s", strerror(pid < 0 ? e : EAGAIN));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	close(p[1]);
	int rc = dup2(p[0], STDIN_FILENO);
	e = errno;
	close(p[0]);
	if (rc < 0) {
		err_set("dup2: %s", strerror(e));
		return -1;
	}
	return 0;
}

int stdin_keep_restore(struct stdin_keep *k)
{
	if (k->partial)
		return give_back_stdin(k);
	if (k->spool >= 0 &&
	    (lseek(k->spool, 0, SEEK_SET) < 0 || dup2(k->spool, STDIN_FILENO) < 0)) {
		err_set("%s", strerror(errno));
		return -1;
	}
	return 0;
}

void stdin_keep_free(struct stdin_keep *k)
{
	if (k->spool >= 0)
		close(k->spool);
	k->spool = -1;
	buf_free(&k->held);
}

void stdin_probe_start(struct stdin_probe *p, bool watch)
{
	struct stat st;

	*p = (struct stdin_probe){0};
	if (!watch || fstat(STDIN_FILENO, &st) < 0)
		return;
	if (S_ISREG(st.st_mode)) {
		p->offset = lseek(STDIN_FILENO, 0, SEEK_CUR);
		p->watched = p->regular = p->offset >= 0 && p->offset < st.st_size;
	} else if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
		p->watched = ioctl(STDIN_FILENO, FIONREAD, &p->waiting) == 0 && p->waiting > 0;
	}
}

bool stdin_probe_read(const struct stdin_probe *p)
{
	int waiting = 0;

	if (!p->watched)
		return false;
	if (p->regular)
		return lseek(STDIN_FILENO, 0, SEEK_CUR) != p->offset;
	return ioctl(STDIN_FILENO, FIONREAD, &waiting) == 0 && waiting < p->waiting;
}
