/* Unit tests of the local store's line records (records.c): every byte
 * round-trips, and a record cut short costs only itself. */
#include <string.h>

#include "records.h"
#include "tap.h"

/* read every record of b into out (joined with '|'); the damaged count */
static int read_all(const struct buf *b, struct buf *out)
{
	struct buf r = {0};
	size_t pos = 0;
	int rc, damaged = 0;

	out->len = 0;
	buf_append(out, "", 0);
	while ((rc = record_next(b->data, b->len, &pos, &r)) != 0) {
		if (rc < 0) {
			damaged++;
			continue;
		}
		buf_append(out, r.data, r.len);
		buf_append(out, "|", 1);
	}
	buf_free(&r);
	return damaged;
}

int main(void)
{
	struct buf b = {0}, out = {0}, one = {0};
	char all[255];
	size_t pos = 0;

	for (int i = 0; i < 255; i++)
		all[i] = (char)(i + 1);
	record_append(&b, all, sizeof(all));
	ok(memchr(b.data, '\n', b.len) == b.data + b.len - 1,
	   "a record of every byte but NUL holds one newline, its last byte");
	ok(record_next(b.data, b.len, &pos, &one) == 1 && one.len == 255 &&
		   memcmp(one.data, all, 255) == 0 && pos == b.len,
	   "and reads back as the same 255 bytes");

	b.len = 0;
	record_append(&b, "a\\n", 3);
	record_append(&b, "\n3:abc\n", 7);
	record_append(&b, "z", 1);
	ok(read_all(&b, &out) == 0 && strcmp(out.data, "a\\n|\n3:abc\n|z|") == 0,
	   "backslashes and a key that looks like records are read as themselves");

	/* a record cut short at every length, then another appended after a
	 * newline (the writer adds one when the file does not end with one) */
	struct buf full = {0};
	record_append(&full, "first", 5);
	size_t keep = full.len;
	record_append(&full, "cut\\short\n", 10);
	size_t cut_end = full.len;
	int good = 1;
	for (size_t n = keep + 1; n < cut_end - 1; n++) {
		b.len = 0;
		buf_append(&b, full.data, n);
		buf_append(&b, "\n", 1);
		record_append(&b, "after", 5);
		int damaged = read_all(&b, &out);
		if (damaged != 1 || strcmp(out.data, "first|after|") != 0) {
			printf("# cut at %zu: %d damaged, read %s\n", n, damaged, out.data);
			good = 0;
		}
	}
	ok(good, "a record cut short anywhere is one damaged line: the records around it read");

	b.len = 0;
	buf_append(&b, full.data, cut_end - 1);
	ok(read_all(&b, &out) == 1 && strcmp(out.data, "first|") == 0,
	   "a last record without its newline counts as damaged");

	b.len = 0;
	buf_append(&b, "\n\n5:hello\n", 10);
	ok(read_all(&b, &out) == 0 && strcmp(out.data, "hello|") == 0, "empty lines are skipped");

	b.len = 0;
	buf_append(&b, "4:a\\bc\n", 7);
	ok(read_all(&b, &out) == 0 && strcmp(out.data, "a\\bc|") == 0,
	   "a record written unescaped (cachefence 0.1) whose length matches is read as written");

	b.len = 0;
	const char bad[] = "x:abc\n:abc\n99999999999999999999=a\n3=ab\\\n5=ab\\n\n4:abc\n3;abc\n";
	buf_append(&b, bad, sizeof(bad) - 1);
	ok(read_all(&b, &out) == 7 && strcmp(out.data, "") == 0,
	   "a bad length, a stray backslash and a length that does not match are damaged");

	buf_free(&b);
	buf_free(&out);
	buf_free(&one);
	buf_free(&full);
	return done_testing();
}
