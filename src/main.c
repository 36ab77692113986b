/* cachefence: run a command once for everyone who asks at the same time,
 * and cache its standard output. main() reads like the table of contents:
 * parse, dispatch, flush. */
#include <signal.h>
#include <stdio.h>

#include <config.h>

#include "options.h"
#include "run.h"
#include "subcmd.h"
#include "util.h"

static int dispatch(const struct options *o)
{
	switch (o->cmd) {
	case CMD_HELP:
		options_usage();
		return 0;
	case CMD_VERSION:
		printf("cachefence %s\n", CACHEFENCE_VERSION);
		return 0;
	case CMD_RUN:
		return run_command(o);
	case CMD_GET:
		return subcmd_get(o);
	case CMD_INVALIDATE:
		return subcmd_invalidate(o);
	case CMD_INSPECT:
		return subcmd_inspect(o);
	case CMD_LIST:
		return subcmd_list(o);
	case CMD_STATS:
		return subcmd_stats(o);
	case CMD_PING:
		return subcmd_ping(o);
	case CMD_KEY:
		return subcmd_key(o);
	}
	return 125;
}

int main(int argc, char **argv)
{
	struct options o;

	/* A store that goes away mid-write must be an error we report, not a
	 * signal that kills us before COMMAND's output reaches the caller.
	 * Whatever we exec gets the default back (child.c). */
	signal(SIGPIPE, SIG_IGN);

	options_init(&o);
	if (options_parse(&o, argc, argv) < 0) {
		log_error("%s", err_msg());
		options_free(&o);
		return 125;
	}
	log_init(o.verbose, o.quiet);
	int status = dispatch(&o);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		log_error("cannot write to standard output");
		if (status == 0)
			status = 125;
	}
	options_free(&o);
	return status;
}
