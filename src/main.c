/* cachefence: run a command once for everyone who asks at the same time,
 * and cache its standard output. main() reads like the table of contents:
 * make the world sane, parse, dispatch, flush. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include <config.h>

#include "child.h"
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

	/* Make the world sane before anything is opened: a closed stdout must
	 * not become the store's socket or a lock file. */
	if (std_fds_init() < 0) {
		log_error("%s", err_msg());
		return 125;
	}
	/* Note what the caller ignores (nohup's SIGHUP), to keep it so for us
	 * and for COMMAND; then ignore SIGPIPE: a store or a reader that goes
	 * away mid-write is an error we handle, not a signal that kills us. */
	child_signals_init();

	options_init(&o);
	if (options_parse(&o, argc, argv) < 0) {
		log_error("%s", err_msg());
		options_free(&o);
		return 125;
	}
	log_init(o.verbose, o.quiet);
	int status = dispatch(&o);
	if (fflush(stdout) != 0 || ferror(stdout))
		out_lost(STDOUT_FILENO, errno);
	options_free(&o);
	status = out_status(status);
#ifndef __SANITIZE_ADDRESS__
	/* Everything is written (stderr is unbuffered; no other stream is
	 * left open) and closed: what exit(3) would still do, run the
	 * destructors of the program and its libraries, only costs a process
	 * this short-lived the page faults of code it never ran. With
	 * AddressSanitizer, exit(3) runs the leak check. */
	_exit(status);
#else
	return status;
#endif
}
