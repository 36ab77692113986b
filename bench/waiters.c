/* waiters: start N copies of a command at once and time, for each, when
 * its first byte of output arrives and when its output closes (it exited),
 * with nothing in between: no shell, no timeout(1), no stamp process.
 *
 *   waiters N READY OUT LIMIT -- COMMAND [ARG...]
 *
 * Each copy's stdout is a pipe to this program, its stdin and stderr
 * /dev/null. Once all are started, READY is created; the caller then
 * releases them (for a wake-up: the leader stores). Each copy's line in OUT:
 *
 *   FIRST_US CLOSE_US STATUS BYTES CPU_US
 *
 * CLOCK_REALTIME in microseconds when the first byte was read (0 if none
 * came) and when the pipe closed; STATUS is the exit status (128+S for a
 * signal); CPU_US the copy's user and system time over its whole life,
 * start-up included (wait4's rusage). After LIMIT seconds every copy still
 * running is killed with SIGKILL and this exits 1; 0 otherwise (whatever
 * the copies' statuses).
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct copy {
	pid_t pid;
	int fd;
	int64_t first_us, close_us;
	long long bytes;
	int status;
	int64_t cpu_us;
};

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void start(struct copy *c, char **argv, int devnull)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe2");
	c->pid = fork();
	if (c->pid < 0)
		die("fork");
	if (c->pid == 0) {
		if (dup2(devnull, 0) < 0 || dup2(p[1], 1) < 0 || dup2(devnull, 2) < 0)
			_exit(127);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	c->fd = p[0];
}

/* read what is there from c's pipe; close it at its end */
static void drain(struct copy *c, int64_t t)
{
	char buf[65536];
	ssize_t n = read(c->fd, buf, sizeof(buf));

	if (n < 0 && errno == EINTR)
		return;
	if (n > 0) {
		if (!c->first_us)
			c->first_us = t;
		c->bytes += n;
		return;
	}
	c->close_us = t;
	close(c->fd);
	c->fd = -1;
}

static void reaped(struct copy *c, int st, const struct rusage *ru)
{
	c->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	c->cpu_us = (int64_t)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000000 +
		    ru->ru_utime.tv_usec + ru->ru_stime.tv_usec;
}

/* wait for every copy until the deadline, then kill those still running
 * (a copy may close its stdout and go on); 1 if any had to be killed */
static int reap_all(struct copy *copies, int n, int64_t deadline)
{
	int left = n, killed = 0;

	for (int i = 0; i < n; i++)
		copies[i].status = -1;
	while (left > 0) {
		for (int i = 0; i < n; i++) {
			int st;
			struct rusage ru;
			if (copies[i].status >= 0)
				continue;
			pid_t r = wait4(copies[i].pid, &st, killed ? 0 : WNOHANG, &ru);
			if (r < 0 && errno != EINTR)
				die("wait4");
			if (r == copies[i].pid) {
				reaped(&copies[i], st, &ru);
				left--;
			}
		}
		if (left > 0 && !killed && now_us() >= deadline) {
			for (int i = 0; i < n; i++)
				if (copies[i].status < 0)
					kill(copies[i].pid, SIGKILL);
			killed = 1;
		} else if (left > 0 && !killed) {
			usleep(1000);
		}
	}
	return killed;
}

int main(int argc, char **argv)
{
	if (argc < 7 || atoi(argv[1]) < 1 || atoi(argv[4]) < 1 || argv[5][0] != '-') {
		fprintf(stderr, "usage: waiters N READY OUT LIMIT -- COMMAND [ARG...]\n");
		return 2;
	}
	int n = atoi(argv[1]), open_fds = n;
	int64_t deadline = now_us() + (int64_t)atoi(argv[4]) * 1000000;
	struct copy *copies = calloc(n, sizeof(*copies));
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (!copies || !pfd || devnull < 0)
		die("setup");
	for (int i = 0; i < n; i++)
		start(&copies[i], argv + 6, devnull);
	int ready = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (ready < 0)
		die(argv[2]);
	close(ready);

	while (open_fds > 0) {
		int64_t left = deadline - now_us();
		if (left <= 0)
			break;
		for (int i = 0; i < n; i++)
			pfd[i] = (struct pollfd){.fd = copies[i].fd, .events = POLLIN};
		int r = poll(pfd, n, (int)(left / 1000) + 1);
		if (r < 0 && errno != EINTR)
			die("poll");
		int64_t t = now_us();
		for (int i = 0; r > 0 && i < n; i++) {
			if (pfd[i].fd >= 0 && pfd[i].revents) {
				drain(&copies[i], t);
				open_fds -= copies[i].fd < 0;
			}
		}
	}
	int rc = reap_all(copies, n, deadline);

	FILE *out = fopen(argv[3], "w");
	if (!out)
		die(argv[3]);
	for (int i = 0; i < n; i++)
		fprintf(out, "%lld %lld %d %lld %lld\n", (long long)copies[i].first_us,
			(long long)copies[i].close_us, copies[i].status, copies[i].bytes,
			(long long)copies[i].cpu_us);
	if (fclose(out) != 0)
		die(argv[3]);
	return rc;
}
