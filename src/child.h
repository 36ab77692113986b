/* child: running COMMAND. Fork and exec with the exit statuses of env(1),
 * a tee of its stdout (and stderr, when it is cached) to the caller and to
 * spool files while it runs, signals passed on, a time limit, and a periodic
 * tick (the lease renewal) meanwhile. */
#ifndef CACHEFENCE_CHILD_H
#define CACHEFENCE_CHILD_H

#include <stdbool.h>
#include <stdint.h>

/* called every tick_ms while COMMAND runs */
typedef void (*child_tick_fn)(void *ctx);

struct child_spec {
	char *const *argv;  /* COMMAND and its arguments */
	int in_fd;          /* COMMAND's stdin; -1 to inherit ours */
	int out_fd;         /* where COMMAND's stdout streams live; -1 for nowhere */
	int spool_fd;       /* a copy of stdout for the store; -1 for none */
	bool capture_err;   /* also tee stderr (to err_fd and err_spool_fd) */
	int err_fd;
	int err_spool_fd;
	uint64_t max_spool; /* spool at most this many bytes (stdout + stderr); 0: no limit */
	int64_t timeout_ms; /* 0: none; else SIGTERM then, SIGKILL 2 s later */
	int64_t tick_ms;    /* 0: no ticks */
	child_tick_fn tick;
	void *tick_ctx;
};

struct child_result {
	int status;          /* exit code; 128+S when killed by S; 126/127 when exec failed */
	bool exec_failed;    /* COMMAND could not be started */
	int signal_received; /* SIGINT, SIGTERM or SIGHUP we passed on to COMMAND, else 0 */
	bool timed_out;      /* --timeout killed it */
	int64_t compute_ms;  /* from fork to exit */
	uint64_t out_len;    /* bytes of stdout */
	uint64_t err_len;    /* bytes of stderr, when captured */
	bool too_large;      /* past max_spool: the spool is incomplete */
	bool spool_failed;   /* a spool could not be written: the result is incomplete */
	bool out_failed;     /* the caller's stdout went away; COMMAND ran on and was spooled */
};

/* note the signals the caller ignores (nohup's SIGHUP) and then ignore
 * SIGPIPE; once in main(), before anything else touches a signal. Signals
 * ignored at start stay ignored, for cachefence and for COMMAND. */
void child_signals_init(void);

/* run COMMAND to its end as described; 0 with *res filled, or -1 with
 * err_set() when it could not even be forked */
int child_run(const struct child_spec *spec, struct child_result *res);

/* replace this process with COMMAND (the uncached, fail-open path); returns
 * only on failure, with the exit status to use (126 or 127) after printing why */
int child_exec(char *const *argv);

#endif
