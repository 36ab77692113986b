/* Unit tests of the back-off after a failed stale-if-error refresh
 * (refresh_backoff_ms in store.c): ten times the failed run, from 1 s to
 * 1 min, as the man page says. */
#include <stdint.h>

#include "store.h"
#include "tap.h"

int main(void)
{
	static const struct {
		int64_t run_ms, want_ms;
	} cases[] = {
		{-5, 1000},    {0, 1000},     {1, 1000},     {100, 1000},      {101, 1010},
		{1000, 10000}, {5999, 59990}, {6000, 60000}, {3600000, 60000}, {INT64_MAX, 60000},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ok(refresh_backoff_ms(cases[i].run_ms) == cases[i].want_ms,
		   "a failed run of %lld ms holds off the next refresh for %lld ms",
		   (long long)cases[i].run_ms, (long long)cases[i].want_ms);
	return done_testing();
}
