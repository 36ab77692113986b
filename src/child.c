/* child: fork/exec, the tee, and signal passing. Signals arrive through a
 * self-pipe so the main loop sees them between reads, never inside one. */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;

	(void)!write(signal_pipe[1], &c, 1);
	errno = saved;
}

static const int passed_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGCHLD};
#define NPASSED (sizeof(passed_signals) / sizeof(passed_signals[0]))

struct saved_signals {
	struct sigaction old[NPASSED];
	struct sigaction old_pipe;
};

static int install_handlers(struct saved_signals *saved)
{
	struct sigaction sa = {0};

	if (pipe(signal_pipe) < 0) {
		err_set("pipe: %s", strerror(errno));
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		fcntl(signal_pipe[i], F_SETFL, O_NONBLOCK);
		fcntl(signal_pipe[i], F_SETFD, FD_CLOEXEC);
	}
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	for (size_t i = 0; i < NPASSED; i++)
		sigaction(passed_signals[i], &sa, &saved->old[i]);
	/* a caller that stops reading (| head) must not kill the leader: the
	 * result is still spooled and stored for everyone else */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, &saved->old_pipe);
	return 0;
}

static void restore_handlers(const struct saved_signals *saved)
{
	for (size_t i = 0; i < NPASSED; i++)
		sigaction(passed_signals[i], &saved->old[i], NULL);
	sigaction(SIGPIPE, &saved->old_pipe, NULL);
	close(signal_pipe[0]);
	close(signal_pipe[1]);
	signal_pipe[0] = signal_pipe[1] = -1;
}

/* In the child, between fork and exec: async-signal-safe calls only. On
 * failure the errno goes up the close-on-exec pipe for the parent to report. */
static void exec_child(char *const *argv, int out_fd, int err_pipe, const sigset_t *mask)
{
	struct sigaction dfl = {0};
	int e;

	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	for (size_t i = 0; i < NPASSED; i++)
		sigaction(passed_signals[i], &dfl, NULL);
	sigaction(SIGPIPE, &dfl, NULL);
	sigprocmask(SIG_SETMASK, mask, NULL);
	if (dup2(out_fd, STDOUT_FILENO) < 0)
		goto fail;
	close(out_fd);
	execvp(argv[0], argv);
fail:
	e = errno;
	(void)!write(err_pipe, &e, sizeof(e));
	_exit(e == ENOENT ? 127 : 126);
}

static int exec_failure_status(const char *cmd, int e)
{
	if (e == ENOENT) {
		log_error("%s: command not found", cmd);
		return 127;
	}
	log_error("%s: %s", cmd, strerror(e));
	return 126;
}

int child_exec(char *const *argv)
{
	execvp(argv[0], argv);
	return exec_failure_status(argv[0], errno);
}

static int status_of(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return 125;
}

/* the state of the tee loop */
struct tee {
	const struct child_spec *spec;
	struct child_result *res;
	pid_t pid;
	int out_pipe;      /* read end of COMMAND's stdout; -1 at EOF */
	bool reaped;
	int wstatus;
};

static void handle_signals(struct tee *t)
{
	unsigned char sigs[64];
	ssize_t n;

	while ((n = read(signal_pipe[0], sigs, sizeof(sigs))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (sigs[i] == SIGCHLD)
				continue;
			if (!t->res->signal_received)
				t->res->signal_received = sigs[i];
			if (!t->reaped)
				kill(t->pid, sigs[i]);
		}
	}
	if (!t->reaped && waitpid(t->pid, &t->wstatus, WNOHANG) == t->pid)
		t->reaped = true;
}

static void handle_output(struct tee *t)
{
	char chunk[65536];
	ssize_t n = read(t->out_pipe, chunk, sizeof(chunk));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close(t->out_pipe);
		t->out_pipe = -1;
		return;
	}
	t->res->out_len += n;
	if (!t->res->out_failed && write_all(t->spec->out_fd, chunk, n) < 0)
		t->res->out_failed = true;
	if (t->spec->spool_fd >= 0 && !t->res->spool_failed &&
	    write_all(t->spec->spool_fd, chunk, n) < 0)
		t->res->spool_failed = true;
}

static void tee_loop(struct tee *t)
{
	const struct child_spec *spec = t->spec;
	int64_t next_tick = monotonic_ms() + spec->tick_ms;

	while (t->out_pipe >= 0 || !t->reaped) {
		struct pollfd pfd[2] = {
			{.fd = signal_pipe[0], .events = POLLIN},
			{.fd = t->out_pipe, .events = POLLIN},
		};
		int timeout = -1;
		if (spec->tick_ms > 0) {
			int64_t left = next_tick - monotonic_ms();
			timeout = left < 0 ? 0 : (int)left;
		}
		int n = poll(pfd, t->out_pipe >= 0 ? 2 : 1, timeout);
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0 && pfd[0].revents)
			handle_signals(t);
		if (n > 0 && t->out_pipe >= 0 && pfd[1].revents)
			handle_output(t);
		if (spec->tick_ms > 0 && monotonic_ms() >= next_tick) {
			spec->tick(spec->tick_ctx);
			next_tick = monotonic_ms() + spec->tick_ms;
		}
		/* SIGCHLD may have come before the handler saw the pid: look anyway */
		if (!t->reaped && t->out_pipe < 0 && waitpid(t->pid, &t->wstatus, WNOHANG) == t->pid)
			t->reaped = true;
	}
	if (!t->reaped && waitpid(t->pid, &t->wstatus, 0) == t->pid)
		t->reaped = true;
}

/* read the exec errno the child sent, if any; 0 when exec succeeded */
static int exec_errno(int err_pipe)
{
	int e = 0;
	ssize_t n = read_full(err_pipe, &e, sizeof(e));

	return n == (ssize_t)sizeof(e) ? e : 0;
}

int child_run(const struct child_spec *spec, struct child_result *res)
{
	struct saved_signals saved;
	sigset_t all, old_mask;
	int out[2], errp[2];
	struct tee t = {.spec = spec, .res = res};

	memset(res, 0, sizeof(*res));
	if (pipe(out) < 0 || pipe(errp) < 0) {
		err_set("pipe: %s", strerror(errno));
		return -1;
	}
	fcntl(out[0], F_SETFD, FD_CLOEXEC);
	fcntl(errp[0], F_SETFD, FD_CLOEXEC);
	fcntl(errp[1], F_SETFD, FD_CLOEXEC);
	if (install_handlers(&saved) < 0)
		return -1;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old_mask);
	int64_t start = monotonic_ms();
	t.pid = fork();
	if (t.pid == 0) {
		close(out[0]);
		close(errp[0]);
		exec_child(spec->argv, out[1], errp[1], &old_mask);
	}
	int fork_errno = errno;
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	close(out[1]);
	close(errp[1]);
	if (t.pid < 0) {
		close(out[0]);
		close(errp[0]);
		restore_handlers(&saved);
		err_set("fork: %s", strerror(fork_errno));
		return -1;
	}
	int e = exec_errno(errp[0]);
	close(errp[0]);
	t.out_pipe = out[0];
	tee_loop(&t);
	res->compute_ms = monotonic_ms() - start;
	restore_handlers(&saved);
	if (e) {
		res->exec_failed = true;
		res->status = exec_failure_status(spec->argv[0], e);
		return 0;
	}
	res->status = status_of(t.wstatus);
	return 0;
}
