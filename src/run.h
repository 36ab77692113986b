/* run: the decisions of `cachefence run`: hit, miss, lead, wait, fail open. */
#ifndef CACHEFENCE_RUN_H
#define CACHEFENCE_RUN_H

#include "options.h"

/* run COMMAND through the cache as o says; returns the exit status */
int run_command(const struct options *o);

#endif
