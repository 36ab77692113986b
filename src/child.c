/* child: fork/exec, the tee, time limits, signal passing and the watchdog.
 * Signals arrive through a self-pipe so the main loop sees them between
 * reads, never inside one. The loop never writes to the caller: the feed's
 * thread does, so a caller that stops reading delays no deadline or signal;
 * nor does it talk to the store: the lease's thread renews the lock. */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "feed.h"
#include "util.h"

/* after --timeout's SIGTERM, how long COMMAND has before SIGKILL */
#define KILL_GRACE_MS 2000
/* after the SIGKILL, how long a process that left COMMAND's group (setsid)
 * may keep its output pipes open before the leader stops reading them */
#define ESCAPED_GRACE_MS 1000

static int signal_pipe[2] = {-1, -1};
/* the signals the caller handed us ignored (see child_signals_init) */
static sigset_t ignored_at_start;

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;

	(void)!write(signal_pipe[1], &c, 1);
	errno = saved;
}

static const int passed_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGCHLD};
#define NPASSED (sizeof(passed_signals) / sizeof(passed_signals[0]))

/* ignored for all of our life: a store or a reader that goes away mid-write
 * (SIGPIPE), a spool or a store file past RLIMIT_FSIZE (SIGXFSZ) are errors
 * we handle (EPIPE, EFBIG), not signals that may kill us before COMMAND's
 * output reaches the caller */
static const int changed_signals[] = {SIGPIPE, SIGXFSZ};
#define NCHANGED (sizeof(changed_signals) / sizeof(changed_signals[0]))

struct saved_signals {
	struct sigaction old[NPASSED];
	struct sigaction old_pipe;
};

void child_signals_init(void)
{
	struct sigaction sa;

	sigemptyset(&ignored_at_start);
	for (size_t i = 0; i < NPASSED; i++)
		if (sigaction(passed_signals[i], NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
			sigaddset(&ignored_at_start, passed_signals[i]);
	for (size_t i = 0; i < NCHANGED; i++) {
		if (sigaction(changed_signals[i], NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
			sigaddset(&ignored_at_start, changed_signals[i]);
		signal(changed_signals[i], SIG_IGN);
	}
}

/* what sig was when we started: ignored, or (for all we touch) the default */
static void restore_start_disposition(int sig)
{
	struct sigaction sa = {0};

	sa.sa_handler = sigismember(&ignored_at_start, sig) == 1 ? SIG_IGN : SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}

/* give COMMAND the dispositions we changed for ourselves back as we got them */
static void restore_changed_signals(void)
{
	for (size_t i = 0; i < NCHANGED; i++)
		restore_start_disposition(changed_signals[i]);
}

static void set_cloexec(int fd)
{
	fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static int install_handlers(struct saved_signals *saved)
{
	struct sigaction sa = {0};

	if (pipe(signal_pipe) < 0) {
		err_set("cannot make a pipe for signals: %s", strerror(errno));
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		fcntl(signal_pipe[i], F_SETFL, O_NONBLOCK);
		set_cloexec(signal_pipe[i]);
	}
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	for (size_t i = 0; i < NPASSED; i++) {
		int sig = passed_signals[i];
		/* what the caller ignores (nohup's SIGHUP) is no interruption;
		 * SIGCHLD is ours to see whatever the caller did with it */
		if (sig != SIGCHLD && sigismember(&ignored_at_start, sig) == 1)
			sigaction(sig, NULL, &saved->old[i]);
		else
			sigaction(sig, &sa, &saved->old[i]);
	}
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

/* what the child needs between fork and exec */
struct exec_plan {
	char *const *argv;
	int in_fd, out_fd, err_fd; /* -1: keep ours */
	bool own_group;            /* its own process group, so --timeout reaches grandchildren */
	int err_pipe;              /* close-on-exec: carries errno if exec fails */
	const sigset_t *mask;      /* the caller's signal mask, for COMMAND */
};

/* In the child, between fork and exec: async-signal-safe calls only. On
 * failure the errno goes up the close-on-exec pipe for the parent to report. */
static void exec_child(const struct exec_plan *p)
{
	int e;

	/* COMMAND gets the dispositions the caller gave us, ignored ones too */
	for (size_t i = 0; i < NPASSED; i++)
		restore_start_disposition(passed_signals[i]);
	restore_changed_signals();
	sigprocmask(SIG_SETMASK, p->mask, NULL);
	if (p->own_group && setpgid(0, 0) < 0)
		goto fail;
	if ((p->in_fd >= 0 && dup2(p->in_fd, STDIN_FILENO) < 0) ||
	    (p->out_fd >= 0 && dup2(p->out_fd, STDOUT_FILENO) < 0) ||
	    (p->err_fd >= 0 && dup2(p->err_fd, STDERR_FILENO) < 0))
		goto fail;
	execvp(p->argv[0], p->argv);
fail:
	e = errno;
	(void)!write(p->err_pipe, &e, sizeof(e));
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
	/* COMMAND gets what we changed for ourselves as we got it */
	restore_changed_signals();
	execvp(argv[0], argv);
	int e = errno;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN);
	return exec_failure_status(argv[0], e);
}

/* one of COMMAND's output streams: read from a pipe, spooled, and fed to
 * the caller */
struct stream {
	int pipe_fd;      /* read end; -1 at EOF */
	int caller_fd;    /* the caller's stream it feeds */
	int spool_fd;     /* -1 for none */
	uint64_t *len;    /* the byte count in the result */
	uint64_t spooled; /* bytes in spool_fd */
	struct buf *tail; /* while holding: what the spool did not take */
};

/* the state of the tee loop */
struct tee {
	const struct child_spec *spec;
	struct child_result *res;
	pid_t pid;
	bool own_group; /* COMMAND leads a process group of its own */
	struct stream streams[2];
	int nstreams;
	bool exited;  /* COMMAND ended; left unreaped (a zombie) until the loop
			* ends, so its pid, the id of its process group, cannot be
			* taken by another process while we may still signal it */
	bool gave_up; /* the result can no longer be stored */
	bool holding; /* output kept from the feed (spec->hold) */
	int64_t term_at, kill_at, escaped_at; /* --timeout deadlines; 0: none */
};

/* send sig to COMMAND, and to its process group when it has one: a group
 * lives on after COMMAND exits while a grandchild (sleep 30 &) is in it */
static void signal_child(struct tee *t, int sig)
{
	if (t->own_group)
		kill(-t->pid, sig);
	else if (!t->exited)
		kill(t->pid, sig);
}

/* note whether COMMAND ended, without reaping it */
static void check_exited(struct tee *t)
{
	siginfo_t si;

	if (t->exited)
		return;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, t->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == t->pid)
		t->exited = true;
}

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
			signal_child(t, sigs[i]);
		}
	}
}

/* spool what fits; returns how many of the n bytes the spool now holds */
static size_t spool_chunk(struct tee *t, struct stream *s, const char *chunk, size_t n)
{
	struct child_result *res = t->res;
	size_t done = 0;

	if (s->spool_fd < 0 || res->spool_failed || res->too_large)
		return 0;
	if (t->spec->max_spool && res->out_len + res->err_len > t->spec->max_spool) {
		res->too_large = true;
		return 0;
	}
	while (done < n) {
		ssize_t w = write(s->spool_fd, chunk + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			res->spool_failed = true;
			res->spool_errno = w < 0 ? errno : EIO;
			break;
		}
		done += w;
	}
	if (t->spec->tap && done)
		t->spec->tap(t->spec->tap_ctx, (int)(s - t->streams), chunk, done);
	s->spooled += done;
	return done;
}

/* The result can no longer be stored: say so once (the lock goes back at
 * once: nobody should wait for what will not come) and stop renewing it. A
 * hold goes on in memory (handle_output), so that a failure can still be
 * answered with the stale entry. */
static void give_up(struct tee *t)
{
	const struct child_spec *spec = t->spec;

	t->gave_up = true;
	if (spec->give_up)
		spec->give_up(spec->ctx, t->res->too_large);
}

/* the held output that no spool took, in all */
static size_t held_in_memory(const struct tee *t)
{
	size_t n = 0;

	for (int i = 0; i < t->nstreams; i++)
		n += t->streams[i].tail->len;
	return n;
}

/* The held output can no longer be kept whole: let the caller have what
 * came so far (each stream's spooled start, then its end in memory) and go
 * on live; the stale entry is given up. */
static void end_hold(struct tee *t)
{
	t->holding = false;
	for (int i = 0; i < t->nstreams; i++) {
		struct stream *s = &t->streams[i];
		feed_spooled(t->spec->feed, s->caller_fd, s->spool_fd, 0, s->spooled);
		feed_copy(t->spec->feed, s->caller_fd, s->tail->data, s->tail->len);
		buf_free(s->tail);
	}
}

static void handle_output(struct tee *t, struct stream *s)
{
	char chunk[65536];
	ssize_t n = read(s->pipe_fd, chunk, sizeof(chunk));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close(s->pipe_fd);
		s->pipe_fd = -1;
		return;
	}
	*s->len += n;
	size_t k = spool_chunk(t, s, chunk, n);
	if (!t->gave_up && (t->res->too_large || t->res->spool_failed))
		give_up(t);
	if (!t->spec->feed)
		return;
	if (t->holding) {
		if (k == (size_t)n)
			return;
		if (held_in_memory(t) + (n - k) <= HOLD_MEMORY_MAX) {
			buf_append(s->tail, chunk + k, n - k);
			return;
		}
		end_hold(t); /* feeds this chunk's spooled part too */
	} else if (k) {
		/* what a spool holds is read back from it */
		feed_spooled(t->spec->feed, s->caller_fd, s->spool_fd, s->spooled - k, k);
	}
	feed_copy(t->spec->feed, s->caller_fd, chunk + k, n - k);
}

static bool streams_open(const struct tee *t)
{
	for (int i = 0; i < t->nstreams; i++)
		if (t->streams[i].pipe_fd >= 0)
			return true;
	return false;
}

static void close_streams(struct tee *t)
{
	for (int i = 0; i < t->nstreams; i++) {
		if (t->streams[i].pipe_fd >= 0)
			close(t->streams[i].pipe_fd);
		t->streams[i].pipe_fd = -1;
	}
}

/* the poll timeout until the next deadline; -1 for none */
static int next_timeout(const struct tee *t)
{
	int64_t now = monotonic_ms(), soonest = -1;
	int64_t candidates[3] = {t->term_at, t->kill_at, t->escaped_at};

	for (int i = 0; i < 3; i++)
		if (candidates[i] && (soonest < 0 || candidates[i] < soonest))
			soonest = candidates[i];
	if (soonest < 0)
		return -1;
	return soonest <= now ? 0 : (int)(soonest - now);
}

static void check_deadlines(struct tee *t)
{
	int64_t now = monotonic_ms();

	if (t->term_at && now >= t->term_at) {
		t->res->timed_out = true;
		signal_child(t, SIGTERM);
		t->term_at = 0;
		t->kill_at = now + KILL_GRACE_MS;
	}
	if (t->kill_at && now >= t->kill_at) {
		signal_child(t, SIGKILL);
		t->kill_at = 0;
		t->escaped_at = now + ESCAPED_GRACE_MS;
	}
	if (t->escaped_at && now >= t->escaped_at) {
		/* whoever still holds the pipes left the group: stop listening */
		close_streams(t);
		t->escaped_at = 0;
	}
}

static void tee_loop(struct tee *t)
{
	const struct child_spec *spec = t->spec;

	if (spec->timeout_ms > 0)
		t->term_at = monotonic_ms() + spec->timeout_ms;
	while (streams_open(t) || !t->exited) {
		/* a feed that is full takes no more: leave COMMAND's output in
		 * its pipe (it blocks, as it would writing to the caller), and
		 * listen for room instead */
		bool full = spec->feed && !t->holding && streams_open(t) && feed_full(spec->feed);
		struct pollfd pfd[4] = {{.fd = signal_pipe[0], .events = POLLIN}};
		for (int i = 0; i < t->nstreams; i++)
			pfd[i + 1] = (struct pollfd){.fd = full ? -1 : t->streams[i].pipe_fd,
						     .events = POLLIN};
		pfd[3] = (struct pollfd){.fd = full ? feed_wake_fd(spec->feed) : -1,
					 .events = POLLIN};
		int n = poll(pfd, 4, next_timeout(t));
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0 && pfd[0].revents)
			handle_signals(t);
		for (int i = 0; n > 0 && i < t->nstreams; i++)
			if (t->streams[i].pipe_fd >= 0 && pfd[i + 1].revents)
				handle_output(t, &t->streams[i]);
		if (n > 0 && pfd[3].revents)
			feed_drain_wake(spec->feed);
		check_deadlines(t);
		/* SIGCHLD may have come before the handler saw the pid, or be
		 * blocked by the caller: look anyway */
		check_exited(t);
	}
	close_streams(t);
}

/* Whether COMMAND may need the terminal as the foreground job: its stdin
 * or its stderr is the terminal whose foreground group we are in. In a
 * group of its own it would then be stopped (SIGTTIN) on reading it, or on
 * setting its modes (a password prompt), so it stays in ours: the terminal's
 * signals reach it directly, and the watchdog reaches only COMMAND itself,
 * not the processes it started. Anywhere else (a pipeline in a script, a
 * service, cron, a background job) the terminal, if any, is no worry.
 * --timeout has always had a group of its own, as before. */
static bool terminal_job(const struct child_spec *spec)
{
	int fds[2] = {spec->in_fd >= 0 ? -1 : STDIN_FILENO, spec->capture_err ? -1 : STDERR_FILENO};
	pid_t group = getpgrp();

	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0 && isatty(fds[i]) && tcgetpgrp(fds[i]) == group)
			return true;
	return false;
}

/* after SIGTERM from the watchdog, how often it looks whether COMMAND's
 * group is gone, before the SIGKILL that --timeout's grace ends with */
#define WATCHDOG_POLL_MS 50

/* send sig to COMMAND's group (or to COMMAND alone); async-signal-safe */
static int watchdog_signal(pid_t pid, bool group, int sig)
{
	if (group && kill(-pid, sig) == 0)
		return 0;
	/* no group yet (setpgid not done), or none asked for */
	return kill(pid, sig);
}

/* close every descriptor but keep; async-signal-safe (no opendir) */
static void close_all_but(int keep)
{
	struct rlimit rl;
	int max = 65536;

#ifdef SYS_close_range
	if ((keep <= 0 || syscall(SYS_close_range, 0u, (unsigned)keep - 1, 0u) == 0) &&
	    syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u) == 0)
		return;
#endif
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)max)
		max = (int)rl.rlim_cur;
	for (int fd = 0; fd < max; fd++)
		if (fd != keep)
			close(fd);
}

/* The watchdog, in the child of a fork: async-signal-safe calls only (the
 * leader has threads). It holds the read end of a pipe whose write end only
 * the leader holds, and nothing else: not the caller's stdout or stderr,
 * which must see EOF when the leader goes. A byte means COMMAND ended and
 * the leader is done with us; EOF without one means the leader died
 * (SIGKILL, a crash, the OOM killer): then COMMAND goes too, as under
 * --timeout, so that no useless run goes on while a waiter takes over.
 * It leads a process group of its own, so that what kills the caller's
 * whole job (a shell's kill -9 %1, timeout(1) expiring) kills the leader
 * but not its watchdog, while COMMAND, in a group of its own, lives on. */
_Noreturn static void watchdog_main(int fd, pid_t pid, bool group)
{
	static const int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE};
	struct sigaction sa = {0};
	sigset_t none;
	char c;
	ssize_t n;

	setpgid(0, 0);
	/* the terminal's ^C is COMMAND's and the leader's business: the
	 * watchdog leaves when the leader does, and does its job then */
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_IGN;
	for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
		sigaction(ignored[i], &sa, NULL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	close_all_but(fd);
	while ((n = read(fd, &c, 1)) < 0 && errno == EINTR)
		;
	if (n == 1)
		_exit(0);
	if (watchdog_signal(pid, group, SIGTERM) < 0)
		_exit(0);
	for (int waited = 0; waited < KILL_GRACE_MS; waited += WATCHDOG_POLL_MS) {
		struct timespec ts = {0, WATCHDOG_POLL_MS * 1000000L};
		nanosleep(&ts, NULL);
		if (watchdog_signal(pid, group, 0) < 0)
			_exit(0);
	}
	watchdog_signal(pid, group, SIGKILL);
	_exit(0);
}

/* start the watchdog of COMMAND (pid); its pid, with *fd the write end the
 * leader keeps, or -1 when there is none (no pipe, no fork: COMMAND runs
 * unwatched, as before the watchdog, which is no reason to fail the run) */
static pid_t watchdog_start(pid_t pid, bool group, int *fd)
{
	sigset_t all, old;
	int p[2];

	*fd = -1;
	if (pipe(p) < 0)
		return -1;
	set_cloexec(p[0]);
	set_cloexec(p[1]);
	/* no handler of ours may run in it before it sets its own */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid_t w = fork();
	if (w == 0) {
		close(p[1]);
		watchdog_main(p[0], pid, group);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(p[0]);
	if (w > 0)
		setpgid(w, w); /* as it does itself, whoever comes first */
	if (w < 0) {
		close(p[1]);
		return -1;
	}
	*fd = p[1];
	return w;
}

/* COMMAND ended and the result is stored: tell the watchdog to leave, and
 * reap it. Not at COMMAND's exit: the watchdog's own exit would take a CPU
 * from the path between that and the waiters' wake-up. */
static void watchdog_stop(pid_t w, int fd)
{
	if (w <= 0)
		return;
	while (write(fd, "", 1) < 0 && errno == EINTR)
		;
	close(fd);
	while (waitpid(w, NULL, 0) < 0 && errno == EINTR)
		;
}

/* read the exec errno the child sent, if any; 0 when exec succeeded */
static int exec_errno(int err_pipe)
{
	int e = 0;
	ssize_t n = read_full(err_pipe, &e, sizeof(e));

	return n == (ssize_t)sizeof(e) ? e : 0;
}

static void close_pair(int p[2])
{
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	p[0] = p[1] = -1;
}

/* make the pipes: COMMAND's stdout, stderr (when captured), exec errors;
 * every end close-on-exec (dup2 gives COMMAND its own copies) */
static int make_pipes(const struct child_spec *spec, int out[2], int err[2], int exe[2])
{
	out[0] = out[1] = err[0] = err[1] = exe[0] = exe[1] = -1;
	if (pipe(out) < 0 || (spec->capture_err && pipe(err) < 0) || pipe(exe) < 0) {
		err_set("cannot make a pipe for COMMAND: %s", strerror(errno));
		close_pair(out);
		close_pair(err);
		close_pair(exe);
		return -1;
	}
	int *ends[] = {out, err, exe};
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 2; j++)
			if (ends[i][j] >= 0)
				set_cloexec(ends[i][j]);
	return 0;
}

/* COMMAND's exit status (128+S when killed by S), once it ended, without
 * reaping it: a zombie keeps its pid and process group from being used
 * again while its watchdog is still there (child_result_free reaps both) */
static int exit_status(pid_t pid)
{
	siginfo_t si = {0};

	while (waitid(P_PID, pid, &si, WEXITED | WNOWAIT) < 0)
		if (errno != EINTR)
			return 125;
	if (si.si_code == CLD_EXITED)
		return si.si_status;
	if (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED)
		return 128 + si.si_status;
	return 125;
}

/* reap COMMAND, then tell its watchdog to leave and reap it */
static void reap(pid_t pid, pid_t watchdog, int watchdog_fd)
{
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	watchdog_stop(watchdog, watchdog_fd);
}

void child_result_free(struct child_result *res)
{
	buf_free(&res->held_tail[0]);
	buf_free(&res->held_tail[1]);
	reap(res->pid, res->watchdog, res->watchdog_fd);
	res->pid = res->watchdog = 0;
	res->watchdog_fd = -1;
}

int child_run(const struct child_spec *spec, struct child_result *res)
{
	struct saved_signals saved;
	sigset_t all, old_mask, run_mask;
	int out[2], err[2], exe[2];
	struct tee t = {.spec = spec, .res = res, .holding = spec->hold && spec->feed};

	memset(res, 0, sizeof(*res));
	if (make_pipes(spec, out, err, exe) < 0)
		return -1;
	if (install_handlers(&saved) < 0) {
		close_pair(out);
		close_pair(err);
		close_pair(exe);
		return -1;
	}
	t.own_group = spec->timeout_ms > 0 || !terminal_job(spec);
	struct exec_plan plan = {
		.argv = spec->argv,
		.in_fd = spec->in_fd,
		.out_fd = out[1],
		.err_fd = err[1],
		.own_group = t.own_group,
		.err_pipe = exe[1],
		.mask = &old_mask,
	};
	pid_t watchdog = -1;
	int watchdog_fd = -1;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old_mask);
	int64_t start = monotonic_ms();
	t.pid = fork();
	if (t.pid == 0)
		exec_child(&plan);
	int fork_errno = errno;
	/* as a shell does: the group exists before either side goes on, so a
	 * signal to it cannot miss (EACCES: COMMAND has exec'd already) */
	if (t.pid > 0 && t.own_group)
		setpgid(t.pid, t.pid);
	/* the caller's mask, but SIGCHLD, which the loop needs to see */
	run_mask = old_mask;
	sigdelset(&run_mask, SIGCHLD);
	sigprocmask(SIG_SETMASK, &run_mask, NULL);
	close(out[1]);
	if (err[1] >= 0)
		close(err[1]);
	close(exe[1]);
	if (t.pid < 0) {
		close(out[0]);
		if (err[0] >= 0)
			close(err[0]);
		close(exe[0]);
		sigprocmask(SIG_SETMASK, &old_mask, NULL);
		restore_handlers(&saved);
		err_set("cannot fork to run COMMAND: %s", strerror(fork_errno));
		return -1;
	}
	/* now, so that it holds none of COMMAND's pipes even for a moment */
	watchdog = watchdog_start(t.pid, t.own_group, &watchdog_fd);
	int e = exec_errno(exe[0]);
	close(exe[0]);
	t.streams[t.nstreams++] = (struct stream){
		out[0], STDOUT_FILENO, spec->spool_fd, &res->out_len, 0, &res->held_tail[0]};
	if (err[0] >= 0)
		t.streams[t.nstreams++] = (struct stream){
			err[0], STDERR_FILENO,     spec->err_spool_fd, &res->err_len,
			0,      &res->held_tail[1]};
	tee_loop(&t);
	/* COMMAND ended: left a zombie, with its watchdog, until the result
	 * is stored (child_result_free): their exits would take a CPU from the
	 * path between COMMAND's exit and the waiters' wake-up */
	int status = exit_status(t.pid);
	res->pid = t.pid;
	res->watchdog = watchdog;
	res->watchdog_fd = watchdog_fd;
	res->compute_ms = monotonic_ms() - start;
	res->held = t.holding;
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	restore_handlers(&saved);
	if (e) {
		res->exec_failed = true;
		res->status = exec_failure_status(spec->argv[0], e);
		return 0;
	}
	res->status = res->timed_out ? 124 : status;
	return 0;
}
