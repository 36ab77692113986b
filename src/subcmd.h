/* subcmd: the operator subcommands: get, inspect, list, invalidate, stats,
 * ping, key. Each returns its exit status: 0 success, 1 no such entry, 125 error. */
#ifndef CACHEFENCE_SUBCMD_H
#define CACHEFENCE_SUBCMD_H

#include "options.h"

/* `get KEY`: print the stored stdout */
int subcmd_get(const struct options *o);
/* `inspect KEY`: describe the entry and its lock */
int subcmd_inspect(const struct options *o);
/* `list [GLOB]`: one line per entry */
int subcmd_list(const struct options *o);
/* `invalidate KEY... | --match GLOB | --tag NAME | -- COMMAND...`: delete,
 * print how many */
int subcmd_invalidate(const struct options *o);
/* `stats`: the counters, as text, JSON or Prometheus exposition */
int subcmd_stats(const struct options *o);
/* `ping`: check the store end to end and describe it */
int subcmd_ping(const struct options *o);
/* `key [SCOPE] COMMAND...`: print the key run would use for that command line */
int subcmd_key(const struct options *o);

#endif
