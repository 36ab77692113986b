/* options: the command line and environment, parsed and validated into one
 * struct with every default set in options_init(). */
#ifndef CACHEFENCE_OPTIONS_H
#define CACHEFENCE_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "parse.h"

struct sign_keys;

enum subcommand {
	CMD_RUN,
	CMD_GET,
	CMD_INVALIDATE,
	CMD_INSPECT,
	CMD_LIST,
	CMD_STATS,
	CMD_PING,
	CMD_KEY,     /* print the key a command line derives */
	CMD_HELP,    /* --help: usage on stdout, exit 0 */
	CMD_VERSION, /* --version */
};

struct options {
	enum subcommand cmd;

	/* global */
	struct url url; /* parsed from -u, CACHEFENCE_URL or REDIS_URL */
	const char *ns; /* -n, CACHEFENCE_NAMESPACE */
	char *password; /* CACHEFENCE_PASSWORD, taken out of the environment */
	/* CACHEFENCE_SENTINEL_PASSWORD, the sentinels' (taken out too) */
	char *sentinel_password;
	int64_t redis_timeout_ms;
	bool verbose, quiet;
	struct tls_options tls;        /* --tls-*, else CACHEFENCE_TLS_* */
	unsigned tls_flags;            /* which --tls-* options the command line gave */
	const char *sign_key_file;     /* --sign-key-file, else CACHEFENCE_SIGN_KEY_FILE */
	const char *sign_old_key_file; /* --sign-old-key-file, else its variable */
	struct sign_keys *sign;        /* their keys, loaded; NULL: entries are not signed */

	/* run */
	const char *key;    /* -k; NULL: derived from COMMAND */
	int64_t ttl_ms;     /* -t, required */
	int64_t lease_ms;   /* --lock-lease */
	int64_t wait_ms;    /* -w; 0: no limit */
	bool wait_then_run; /* --wait-then-run: when -w expires, run COMMAND uncached */
	bool cache_failures;
	int64_t failure_ttl_ms; /* --failure-ttl; -1: the TTL */
	bool fail_closed;
	int64_t stale_ms;   /* -s: serve stale while one process refreshes */
	int64_t sie_ms;     /* --stale-if-error */
	double beta;        /* XFetch; 0 turns early refresh off */
	bool refresh;       /* run now under the lock and replace the entry */
	bool warm;          /* --warm: refresh in the background if needed, print nothing */
	int64_t timeout_ms; /* --timeout; 0: none */
	bool timeout_set;
	bool cache_stderr;
	uint64_t max_size;     /* outputs above this are not stored */
	bool compress;         /* --compress: store outputs zstd-compressed */
	uint64_t compress_min; /* --compress-min: smaller ones are stored as they are */
	bool compress_min_set;
	bool scope_cwd;
	const char **scope_env; /* --scope-env NAMEs (point into argv) */
	int nscope_env;
	const char **scope_file; /* --scope-file PATHs */
	int nscope_file;
	bool use_stdin;     /* --stdin: hash stdin into the key, feed it to COMMAND */
	bool stdin_ignored; /* --stdin=ignore: COMMAND may read stdin; the key ignores it */
	const char **tags;  /* --tag NAMEs */
	int ntags;
	char **command; /* COMMAND and its arguments, NULL-terminated (points into argv);
				  * also key's, and invalidate's after "--"; else NULL */

	/* operator subcommands */
	bool fresh;        /* get --fresh */
	bool json;         /* inspect, list, stats --json */
	bool list_tags;    /* list --tags */
	bool prometheus;   /* stats --prometheus */
	bool reset;        /* stats --reset */
	const char *match; /* invalidate --match GLOB */
	const char *tag;   /* invalidate --tag NAME */
	char **args;       /* the operands after the subcommand, NULL-terminated */
	int nargs;
};

/* set every default */
void options_init(struct options *o);
/* parse argv and the environment into o; 0, or -1 with err_set() giving the
 * one line to print (exit 125). Strings point into argv or the environment,
 * but for the password, which is copied and removed from the environment so
 * that COMMAND never inherits it. */
int options_parse(struct options *o, int argc, char **argv);
/* release what options_parse() allocated */
void options_free(struct options *o);
/* print --help to stdout */
void options_usage(void);

#endif
