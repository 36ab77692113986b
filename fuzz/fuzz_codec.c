/* fuzz_codec: the zstd decoder path of a hit on hostile bytes. The first
 * byte picks how the rest is cut into pieces; the input is then fed, as the
 * stored stdout of a compressed entry that claims some raw size, through a
 * sink that holds back what it decodes (as a hit's does), and must end as
 * whole or damaged, never anything else. Then the input itself is
 * compressed (codec_compress) and decoded again through a sink: it must
 * come back byte for byte. */
#define _GNU_SOURCE /* memfd_create */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "codec.h"
#include "fuzz.h"
#include "store.h"

struct seen {
	struct buf out;
};

static void keep(void *ctx, int which, const void *p, size_t n)
{
	struct seen *s = ctx;

	CHECK(which == SINK_OUT);
	buf_append(&s->out, p, n);
}

/* feed n bytes at p through a sink as a compressed stdout of raw bytes,
 * cut every step bytes; what it decoded goes to seen; sink_end's result */
static int decode(const uint8_t *p, size_t n, size_t step, uint64_t raw, struct seen *seen)
{
	struct sink sink = {.out_fd = -1, .err_fd = -1, .tap = keep, .tap_ctx = seen};
	struct entry_meta m = {.zstd = true, .raw_out_len = raw, .out_len = n};

	sink_start(&sink, &m);
	for (size_t i = 0; i < n; i += step)
		sink_write(&sink, SINK_OUT, p + i, n - i < step ? n - i : step);
	int rc = sink_end(&sink);
	CHECK(rc == 0 || sink.damaged);
	/* no frame decodes to more than its entry claims */
	CHECK(seen->out.len <= raw);
	if (rc == 0)
		sink_release(&sink);
	sink_drop(&sink);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = 1 + data[0] % 64;
	struct seen seen = {0};

	/* hostile bytes claiming to decode to as many bytes as they are */
	if (decode(data + 1, size - 1, step, size - 1, &seen) == 0)
		CHECK(seen.out.len == size - 1);
	buf_free(&seen.out);

	/* a round trip of the input through the compressor */
	int in = memfd_create("in", 0), out = memfd_create("out", 0);
	uint64_t zlen = 0;
	CHECK(in >= 0 && out >= 0);
	CHECK(write_all(in, data, size) == 0 && lseek(in, 0, SEEK_SET) == 0);
	CHECK(codec_compress(in, size, out, &zlen) == 0);
	uint8_t *z = malloc(zlen ? zlen : 1);
	CHECK(z && pread(out, z, zlen, 0) == (ssize_t)zlen);
	CHECK(decode(z, zlen, step * 97, size, &seen) == 0);
	CHECK(seen.out.len == size && memcmp(seen.out.data, data, size) == 0);
	free(z);
	buf_free(&seen.out);
	close(in);
	close(out);
	return 0;
}
