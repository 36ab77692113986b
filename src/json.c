/* json: string escaping for --json output. */
#include "json.h"

/* the length of the valid UTF-8 sequence at p (at most len bytes), or 0 */
static size_t utf8_sequence(const unsigned char *p, size_t len)
{
	size_t n;
	unsigned min;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0)
		n = 2, min = 0x80;
	else if ((p[0] & 0xf0) == 0xe0)
		n = 3, min = 0x800;
	else if ((p[0] & 0xf8) == 0xf0)
		n = 4, min = 0x10000;
	else
		return 0;
	if (n > len)
		return 0;
	unsigned cp = p[0] & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	/* overlong forms, surrogates and code points past U+10FFFF are invalid */
	if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

void json_string(struct buf *b, const char *p, size_t len)
{
	const unsigned char *u = (const unsigned char *)p;

	buf_append(b, "\"", 1);
	for (size_t i = 0; i < len;) {
		unsigned char c = u[i];
		size_t n = utf8_sequence(u + i, len - i);
		if (c == '"' || c == '\\') {
			buf_append(b, "\\", 1);
			buf_append(b, p + i, 1);
		} else if (c == '\n') {
			buf_append(b, "\\n", 2);
		} else if (c == '\t') {
			buf_append(b, "\\t", 2);
		} else if (c < 0x20 || c == 0x7f || n == 0) {
			buf_appendf(b, "\\u%04x", c);
			n = 1;
		} else {
			buf_append(b, p + i, n);
			i += n;
			continue;
		}
		i += n ? n : 1;
	}
	buf_append(b, "\"", 1);
}
