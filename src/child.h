/* child: running COMMAND. Fork and exec with the exit statuses of env(1),
 * a tee of its stdout (and stderr, when it is cached) to spool files and to
 * the caller's feed while it runs, signals passed on, a time limit on its
 * whole process group, and a watchdog that takes COMMAND down if we die. */
#ifndef CACHEFENCE_CHILD_H
#define CACHEFENCE_CHILD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

struct feed;

/* called once when the result can no longer be stored (too_large: past
 * max_spool; else a spool could not be written) */
typedef void (*child_give_up_fn)(void *ctx, bool too_large);

struct child_spec {
	char *const *argv; /* COMMAND and its arguments */
	int in_fd;         /* COMMAND's stdin; -1 to inherit ours */
	struct feed *feed; /* the caller's copy of the output; NULL for none */
	bool hold;         /* keep the output from the feed while the result can still be
			     * stored (the caller may get another entry instead); once it
			     * cannot, feed what the spools hold and go on live */
	int spool_fd;      /* a copy of stdout for the store; -1 for none */
	bool capture_err;  /* also take stderr through a pipe (to the feed and err_spool_fd) */
	int err_spool_fd;
	uint64_t max_spool;       /* spool at most this many bytes (stdout + stderr); 0: no limit */
	int64_t timeout_ms;       /* 0: none; else SIGTERM to COMMAND's process group then,
			     * SIGKILL 2 s later */
	child_give_up_fn give_up; /* may be NULL */
	void *ctx;                /* for give_up */
	/* NULL, or sees every byte a spool takes, as it takes it (which: 0
	 * stdout, 1 stderr): sign.c's digests of a result to be signed */
	void (*tap)(void *tap_ctx, int which, const void *p, size_t n);
	void *tap_ctx;
};

struct child_result {
	int status;              /* exit code; 128+S when killed by S; 126/127 when exec failed */
	bool exec_failed;        /* COMMAND could not be started */
	int signal_received;     /* SIGINT, SIGTERM or SIGHUP we passed on to COMMAND, else 0 */
	bool timed_out;          /* --timeout killed it */
	int64_t compute_ms;      /* from fork to exit */
	uint64_t out_len;        /* bytes of stdout */
	uint64_t err_len;        /* bytes of stderr, when captured */
	bool too_large;          /* past max_spool: the spool is incomplete */
	bool spool_failed;       /* a spool could not be written: the result is incomplete */
	int spool_errno;         /* why, when spool_failed */
	bool held;               /* hold was asked and kept: nothing went to the feed */
	struct buf held_tail[2]; /* held: the end of stdout and of stderr that no spool
				  * took (full TMPDIR, past max_spool), in memory, at
				  * most HOLD_MEMORY_MAX in all; child_result_free() */
	/* COMMAND, ended but not reaped, and its watchdog, still there: both
	 * for child_result_free() to reap, once the result is stored */
	pid_t pid, watchdog;
	int watchdog_fd; /* the pipe that tells the watchdog to leave */
};

/* how much held output that no spool takes is kept in memory before the
 * hold ends and the caller gets the output live */
#define HOLD_MEMORY_MAX (1024 * 1024)

/* release what a child_result holds (held_tail) and reap its watchdog;
 * accepts a zeroed one */
void child_result_free(struct child_result *res);

/* note the signals the caller ignores (nohup's SIGHUP) and then ignore
 * SIGPIPE and SIGXFSZ (COMMAND gets them back as they were); once in
 * main(), before anything else touches a signal. Signals
 * ignored at start stay ignored, for cachefence and for COMMAND. */
void child_signals_init(void);

/* run COMMAND to its end as described; 0 with *res filled, or -1 with
 * err_set() when it could not even be started (no pipe, no fork): then
 * COMMAND did not run. Should we die meanwhile (SIGKILL, the OOM killer),
 * a watchdog process sends COMMAND's process group SIGTERM, and SIGKILL
 * 2 s later, as --timeout does. COMMAND gets a process group of its own
 * unless it may need the terminal as its foreground job (see
 * child.c: terminal_job); then the watchdog reaches COMMAND alone. */
int child_run(const struct child_spec *spec, struct child_result *res);

/* replace this process with COMMAND (the uncached, fail-open path); returns
 * only on failure, with the exit status to use (126 or 127) after printing why */
int child_exec(char *const *argv);

#endif
