/* private_cache: small files that save a round trip between runs (a
 * cluster's slot map, the primary the sentinels named), kept where only
 * the user can read or change them. Losing one costs a round trip, so
 * every failure here is silent. */
#ifndef CACHEFENCE_PRIVATE_CACHE_H
#define CACHEFENCE_PRIVATE_CACHE_H

#include <stddef.h>

#include "util.h"

/* the most bytes a cache file may hold */
#define PRIVATE_CACHE_MAX (1 << 20)

/* The file of kind ("cluster", "sentinel") for name (what it caches,
 * such as a URL's host list): $XDG_CACHE_HOME/cachefence-KIND/ or
 * ~/.cache/cachefence-KIND/, then a digest of name; nothing is made yet.
 * NULL when there is no such place (no absolute XDG_CACHE_HOME or HOME);
 * the caller frees the path. */
char *private_cache_path(const char *kind, const char *name);
/* Read the whole file at path into b (appended): 0, or -1 when it is
 * missing, not a regular file of ours that only we may read, or larger
 * than PRIVATE_CACHE_MAX. */
int private_cache_read(const char *path, struct buf *b);
/* Replace the file at path with the n bytes at p (mode 0600, written
 * aside and renamed into place), its directory made private if missing;
 * nothing when that directory is not ours alone, or on any failure. */
void private_cache_write(const char *path, const void *p, size_t n);

#endif
