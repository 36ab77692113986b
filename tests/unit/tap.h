/* tap: the smallest TAP producer, so `meson test` (protocol: tap) counts every
 * check of a unit test. Include once per test program. */
#ifndef CACHEFENCE_TAP_H
#define CACHEFENCE_TAP_H

#include <stdio.h>

static int tap_count, tap_failed;

/* report one check; the description reads as a sentence about behaviour */
#define ok(cond, ...)                                                                              \
	do {                                                                                       \
		tap_count++;                                                                       \
		int ok_ = !!(cond);                                                                \
		if (!ok_)                                                                          \
			tap_failed++;                                                              \
		printf("%sok %d - ", ok_ ? "" : "not ", tap_count);                                \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		if (!ok_)                                                                          \
			printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
	} while (0)

/* print the plan and return the exit status for main() */
static inline int done_testing(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}

#endif
