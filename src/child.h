/* child: running COMMAND. Fork and exec with the exit statuses of env(1),
 * a tee of its stdout to the caller and to a spool file while it runs,
 * signals passed on, and a periodic tick (the lease renewal) meanwhile. */
#ifndef CACHEFENCE_CHILD_H
#define CACHEFENCE_CHILD_H

#include <stdbool.h>
#include <stdint.h>

/* called every tick_ms while COMMAND runs */
typedef void (*child_tick_fn)(void *ctx);

struct child_spec {
	char *const *argv;  /* COMMAND and its arguments */
	int out_fd;         /* the caller's stdout: COMMAND's output streams here */
	int spool_fd;       /* a copy for the store; -1 for none */
	int64_t tick_ms;    /* 0: no ticks */
	child_tick_fn tick;
	void *tick_ctx;
};

struct child_result {
	int status;          /* exit code; 128+S when killed by S; 126/127 when exec failed */
	bool exec_failed;    /* COMMAND could not be started */
	int signal_received; /* SIGINT, SIGTERM or SIGHUP we passed on to COMMAND, else 0 */
	int64_t compute_ms;  /* from fork to exit */
	uint64_t out_len;    /* bytes of stdout, all spooled unless spool_failed */
	bool spool_failed;   /* the spool could not be written: the result is incomplete */
	bool out_failed;     /* the caller's stdout went away; COMMAND ran on and was spooled */
};

/* run COMMAND to its end as described; 0 with *res filled, or -1 with
 * err_set() when it could not even be forked */
int child_run(const struct child_spec *spec, struct child_result *res);

/* replace this process with COMMAND (the uncached, fail-open path); returns
 * only on failure, with the exit status to use (126 or 127) after printing why */
int child_exec(char *const *argv);

#endif
