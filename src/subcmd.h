/* subcmd: the operator subcommands (get, invalidate). */
#ifndef CACHEFENCE_SUBCMD_H
#define CACHEFENCE_SUBCMD_H

#include "options.h"

/* `get KEY`: print the stored stdout; 0 found, 1 absent, 125 error */
int subcmd_get(const struct options *o);
/* `invalidate KEY...`: delete entries, print how many; 0, or 125 */
int subcmd_invalidate(const struct options *o);

#endif
