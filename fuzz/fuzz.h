/* fuzz: what the libFuzzer harnesses share. A harness calls one parser on
 * the fuzzer's bytes and then checks what the parser promises; a broken
 * promise aborts, so libFuzzer keeps the input as a crash like any other. */
#ifndef CACHEFENCE_FUZZ_H
#define CACHEFENCE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* abort with the failed condition and the last recorded error */
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n  (err_msg: %s)\n", __FILE__,    \
				__LINE__, #cond, err_msg());                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* a malloc'ed copy of size bytes, NUL-terminated (the string ends at the
 * first NUL of data, as it would on a command line) */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = xmalloc(size + 1);

	if (size)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* whether an error message is one line of no control bytes, as every
 * user-facing error must be */
static inline int one_line(const char *m)
{
	for (; *m; m++)
		if ((unsigned char)*m < 0x20 || *m == 0x7f)
			return 0;
	return 1;
}

#endif
