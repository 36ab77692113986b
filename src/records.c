/* records: see records.h */
#include "records.h"

#include <string.h>

#include "entry.h"

void record_append(struct buf *b, const void *p, size_t len)
{
	const char *s = p;
	size_t start = 0;

	buf_appendf(b, "%zu=", len);
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '\\' && s[i] != '\n')
			continue;
		buf_append(b, s + start, i - start);
		buf_append(b, s[i] == '\\' ? "\\\\" : "\\n", 2);
		start = i + 1;
	}
	buf_append(b, s + start, len - start);
	buf_append(b, "\n", 1);
}

/* unescape the n bytes at p into out; 0, or -1 for a stray backslash */
static int unescape(const char *p, size_t n, struct buf *out)
{
	size_t start = 0;

	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\\')
			continue;
		if (i + 1 == n || (p[i + 1] != '\\' && p[i + 1] != 'n'))
			return -1;
		buf_append(out, p + start, i - start);
		buf_append(out, p[i + 1] == 'n' ? "\n" : "\\", 1);
		start = ++i + 1;
	}
	buf_append(out, p + start, n - start);
	return 0;
}

int record_next(const char *data, size_t len, size_t *pos, struct buf *out)
{
	int64_t want;

	for (;;) {
		if (*pos >= len)
			return 0;
		const char *line = data + *pos;
		const char *nl = memchr(line, '\n', len - *pos);
		/* a last line without its newline was cut short */
		size_t n = nl ? (size_t)(nl - line) : len - *pos;
		*pos += n + (nl != NULL);
		if (n == 0)
			continue;
		if (!nl)
			return -1;
		size_t digits = strspn(line, "0123456789");
		if (digits >= n || (line[digits] != '=' && line[digits] != ':') ||
		    parse_decimal(line, digits, RECORD_MAX, &want) < 0)
			return -1;
		const char *body = line + digits + 1;
		size_t body_len = n - digits - 1;
		out->len = 0;
		int rc = line[digits] == '=' ? unescape(body, body_len, out)
					     : (buf_append(out, body, body_len), 0);
		if (rc == 0 && out->len == (size_t)want)
			return 1;
		return -1;
	}
}
