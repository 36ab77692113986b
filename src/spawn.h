/* spawn: the process plumbing of a run, so that run.c keeps only its
 * decisions: spool files, --stdin's bytes kept for COMMAND and handed back
 * to it, a detached process for a background refresh, the descriptors a
 * caller left open, and a probe that tells whether COMMAND read standard
 * input. */
#ifndef CACHEFENCE_SPAWN_H
#define CACHEFENCE_SPAWN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

/* an unlinked close-on-exec temporary file in $TMPDIR; -1 with err_set() */
int spool_open(void);

/* the spools of one run: stdout, and stderr when it is cached (else -1) */
struct spools {
	int out, err;
};

/* open the stdout spool, and the stderr one if with_err; 0 or -1 with
 * err_set() (nothing left open) */
int spools_open(struct spools *sp, bool with_err);

/* close what spools_open opened */
void spools_close(struct spools *sp);

/* rewind both spools for reading; 0 or -1 with err_set() */
int spools_rewind(struct spools *sp);

/* --stdin: standard input read for the key and kept for COMMAND */
struct stdin_keep {
	int spool;        /* the bytes read, or -1 */
	off_t start;      /* where standard input stood, if seekable; else -1 */
	bool partial;     /* the spool stopped short: the rest is in held, then fd 0 */
	uint64_t spooled; /* bytes in spool */
	struct buf held;  /* bytes read after those, which no spool took */
};

#define STDIN_KEEP_INIT                                                                            \
	{                                                                                          \
		.spool = -1, .start = -1                                                           \
	}

/* open the spool for standard input; 0, or -1 with err_set() (nothing was
 * read then: COMMAND gets standard input untouched) */
int stdin_keep_open(struct stdin_keep *k);

/* key_digest_read's keep callback (arg: a struct stdin_keep): into the
 * spool while it takes it; the piece it cannot take is held in memory,
 * partial is set and -1 returned with err_set(), so reading stops there */
int stdin_keep_bytes(void *arg, const char *p, size_t n);

/* the spool rewound for COMMAND to read, or -1 to inherit our stdin */
int stdin_keep_fd(const struct stdin_keep *k);

/* make fd 0 what COMMAND should read in place of this process: the kept
 * bytes, then (when partial) what is still unread, through a pipe that a
 * detached process fills; a seekable stdin is simply rewound. 0, or -1
 * with err_set(). */
int stdin_keep_restore(struct stdin_keep *k);

/* close the spool and free what is held */
void stdin_keep_free(struct stdin_keep *k);

/* Fork a detached process: in it (0 returned) a session of its own, the
 * descriptors the caller left open closed, standard input, output and
 * error on /dev/null; in the caller its pid, or -1 with err_set(). */
pid_t spawn_detached(void);

/* What standard input held before COMMAND ran, to tell afterwards whether
 * COMMAND read it: the offset of a regular file, or the bytes waiting in a
 * pipe or socket. A terminal, /dev/null or a closed stdin cannot mislead. */
struct stdin_probe {
	bool watched;
	bool regular;
	off_t offset;
	int waiting;
};

/* note what standard input holds now (nothing when !watch) */
void stdin_probe_start(struct stdin_probe *p, bool watch);

/* true if COMMAND consumed what stdin_probe_start saw */
bool stdin_probe_read(const struct stdin_probe *p);

#endif
