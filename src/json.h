/* json: just enough JSON writing for --json output: strings escaped so any
 * bytes (a key may hold any byte but NUL) give valid JSON. */
#ifndef CACHEFENCE_JSON_H
#define CACHEFENCE_JSON_H

#include <stddef.h>

#include "util.h"

/* append p[0..len) to b as a JSON string, quotes included; valid UTF-8 is
 * kept, control characters are escaped, and a byte that is not part of
 * valid UTF-8 becomes the escape of the code point of the same number
 * (\u00XX), so the output is always valid JSON */
void json_string(struct buf *b, const char *p, size_t len);

#endif
