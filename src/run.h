/* run: the decisions of `cachefence run`: hit, miss, lead, wait, fail open. */
#ifndef CACHEFENCE_RUN_H
#define CACHEFENCE_RUN_H

#include "options.h"
#include "util.h"

/* the user key a command line names: -k's, or derived from COMMAND and the
 * scope options (with stdin_digest, --stdin's SHA-256, or NULL), appended
 * to key; 0, or -1 with err_set(). run and `cachefence key` both use it, so
 * they cannot disagree. */
int run_user_key(const struct options *o, const unsigned char *stdin_digest, struct buf *key);

struct store_config;
/* the store the options name, for store_open(); points into o */
struct store_config run_store_config(const struct options *o);

/* run COMMAND through the cache as o says; returns the exit status */
int run_command(const struct options *o);

#endif
