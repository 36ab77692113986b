/* fuzz_json: json_string on any bytes. Its output must be one valid JSON
 * string (RFC 8259: quotes, no raw control byte, only the known escapes,
 * valid UTF-8), checked by a small validator here, and must read back, with
 * each \u00XX escape as the byte XX, to exactly the input. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "json.h"

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* the length of the valid UTF-8 sequence at p (of n bytes), or 0: the
 * well-formed sequences of Unicode's table 3-7, written out independently of
 * json.c's decoder */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
	else
		return 0;
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

/* validate s (n bytes) as one JSON string and decode it into out (with
 * \uXXXX below 0x100 as that byte, which is json_string's promise); false
 * on anything that is not JSON */
static bool read_json_string(const unsigned char *s, size_t n, struct buf *out)
{
	size_t i = 1;

	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return false;
	while (i < n - 1) {
		unsigned char c = s[i];
		if (c == '"' || c < 0x20)
			return false;
		if (c != '\\') {
			size_t len = utf8_len(s + i, n - 1 - i);
			if (!len)
				return false;
			buf_append(out, s + i, len);
			i += len;
			continue;
		}
		if (i + 1 >= n - 1)
			return false;
		char e = s[i + 1], b;
		switch (e) {
		case '"':
		case '\\':
		case '/':
			b = e;
			break;
		case 'b':
			b = '\b';
			break;
		case 'f':
			b = '\f';
			break;
		case 'n':
			b = '\n';
			break;
		case 'r':
			b = '\r';
			break;
		case 't':
			b = '\t';
			break;
		case 'u': {
			if (i + 6 > n - 1)
				return false;
			int cp = 0;
			for (int k = 2; k < 6; k++) {
				int h = hex_value(s[i + k]);
				if (h < 0)
					return false;
				cp = cp << 4 | h;
			}
			/* json_string escapes only single bytes, so no surrogate pairs */
			if (cp > 0xff)
				return false;
			b = (char)cp;
			buf_append(out, &b, 1);
			i += 6;
			continue;
		}
		default:
			return false;
		}
		buf_append(out, &b, 1);
		i += 2;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf json = {0}, back = {0};

	json_string(&json, (const char *)data, size);
	CHECK(json.data && json.len >= 2);
	CHECK(read_json_string((const unsigned char *)json.data, json.len, &back));
	CHECK(back.len == size && (size == 0 || memcmp(back.data, data, size) == 0));
	buf_free(&json);
	buf_free(&back);
	return 0;
}
