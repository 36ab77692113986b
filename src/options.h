/* options: the command line and environment, parsed and validated into one
 * struct with every default set in options_init(). */
#ifndef CACHEFENCE_OPTIONS_H
#define CACHEFENCE_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "parse.h"

enum subcommand {
	CMD_RUN,
	CMD_GET,
	CMD_INVALIDATE,
	CMD_HELP,    /* --help: usage on stdout, exit 0 */
	CMD_VERSION, /* --version */
};

struct options {
	enum subcommand cmd;

	/* global */
	struct url url;          /* parsed from -u, CACHEFENCE_URL or REDIS_URL */
	const char *ns;          /* -n, CACHEFENCE_NAMESPACE */
	int64_t redis_timeout_ms;
	bool verbose, quiet;

	/* run */
	const char *key;         /* -k; NULL: derived from COMMAND */
	int64_t ttl_ms;          /* -t, required */
	int64_t lease_ms;        /* --lock-lease */
	int64_t wait_ms;         /* -w; 0: no limit */
	bool cache_failures;
	bool fail_closed;
	char **command;          /* COMMAND and its arguments, NULL-terminated (points into argv) */

	/* get, invalidate */
	bool fresh;              /* get --fresh */
	char **args;             /* the operands after the subcommand, NULL-terminated */
	int nargs;
};

/* set every default */
void options_init(struct options *o);
/* parse argv and the environment into o; 0, or -1 with err_set() giving the
 * one line to print (exit 125). Strings point into argv or the environment. */
int options_parse(struct options *o, int argc, char **argv);
/* release what options_parse() allocated */
void options_free(struct options *o);
/* print --help to stdout */
void options_usage(void);

#endif
