/* codec: zstd for stored bytes; see codec.h. */
#include "codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "util.h"

/* zstd's default: most of the ratio for little time (a 48 MiB JSON-like
 * output compresses to under a tenth in well under a second) */
#define COMPRESS_LEVEL 3
/* the largest window a stored frame may use: 8 MiB (see codec_dec_new) */
#define DECODE_WINDOW_LOG_MAX 23

static int zstd_failed(size_t rc, const char *what)
{
	err_set("%s: %s", what, ZSTD_getErrorName(rc));
	return -1;
}

/* write out what the compressor produced */
static int flush_out(int out_fd, ZSTD_outBuffer *ob, uint64_t *out_len)
{
	if (ob->pos && write_all(out_fd, ob->dst, ob->pos) < 0) {
		err_set("cannot write the compressed result: %s", strerror(errno));
		return -1;
	}
	*out_len += ob->pos;
	ob->pos = 0;
	return 0;
}

int codec_compress(int in_fd, uint64_t len, int out_fd, uint64_t *out_len)
{
	size_t in_size = ZSTD_CStreamInSize(), out_size = ZSTD_CStreamOutSize();
	char *in = xmalloc(in_size), *out = xmalloc(out_size);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	int rc = -1;

	*out_len = 0;
	if (!cc) {
		err_set("cannot compress: out of memory");
		goto done;
	}
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, COMPRESS_LEVEL);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 21); /* within DECODE_WINDOW_LOG_MAX */
	ZSTD_CCtx_setPledgedSrcSize(cc, len);
	ZSTD_outBuffer ob = {out, out_size, 0};
	for (uint64_t left = len;;) {
		size_t want = left < in_size ? (size_t)left : in_size;
		ssize_t n = want ? read_full(in_fd, in, want) : 0;
		if (n < 0 || (size_t)n != want) {
			err_set("cannot read the spooled result: %s",
				n < 0 ? strerror(errno) : "it ended early");
			goto done;
		}
		left -= want;
		ZSTD_inBuffer ib = {in, want, 0};
		ZSTD_EndDirective mode = left ? ZSTD_e_continue : ZSTD_e_end;
		size_t more;
		do {
			more = ZSTD_compressStream2(cc, &ob, &ib, mode);
			if (ZSTD_isError(more)) {
				zstd_failed(more, "cannot compress");
				goto done;
			}
			if (flush_out(out_fd, &ob, out_len) < 0)
				goto done;
		} while (mode == ZSTD_e_end ? more != 0 : ib.pos < ib.size);
		if (!left)
			break;
	}
	rc = 0;
done:
	ZSTD_freeCCtx(cc);
	free(in);
	free(out);
	return rc;
}

struct codec_dec {
	ZSTD_DCtx *dc;
	char *out;
	size_t out_size;
	size_t last;  /* what the last ZSTD_decompressStream returned: 0 at a frame's end */
	bool started; /* bytes of the current frame were fed */
	bool failed;
};

struct codec_dec *codec_dec_new(void)
{
	struct codec_dec *d = xcalloc(1, sizeof(*d));

	d->dc = ZSTD_createDCtx();
	if (!d->dc) {
		free(d);
		err_set("cannot decompress: out of memory");
		return NULL;
	}
	/* a frame's header may ask for any window up to 128 MiB, which the
	 * decoder would allocate whatever the entry's size: allow what
	 * codec_compress makes (level 3: 2 MiB) with room to spare */
	ZSTD_DCtx_setParameter(d->dc, ZSTD_d_windowLogMax, DECODE_WINDOW_LOG_MAX);
	d->out_size = ZSTD_DStreamOutSize();
	d->out = xmalloc(d->out_size);
	return d;
}

void codec_dec_free(struct codec_dec *d)
{
	if (!d)
		return;
	ZSTD_freeDCtx(d->dc);
	free(d->out);
	free(d);
}

void codec_dec_reset(struct codec_dec *d)
{
	ZSTD_DCtx_reset(d->dc, ZSTD_reset_session_only);
	d->last = 0;
	d->started = false;
	d->failed = false;
}

int codec_dec_feed(struct codec_dec *d, const void *p, size_t n, codec_out_fn out, void *ctx)
{
	ZSTD_inBuffer ib = {p, n, 0};

	if (d->failed)
		return -1;
	if (!n)
		return 0;
	/* one frame a stream: bytes after its end are damage too */
	if (d->started && d->last == 0) {
		err_set("the compressed bytes go on past the end of their frame");
		d->failed = true;
		return -1;
	}
	d->started = true;
	for (;;) {
		ZSTD_outBuffer ob = {d->out, d->out_size, 0};
		d->last = ZSTD_decompressStream(d->dc, &ob, &ib);
		if (ZSTD_isError(d->last)) {
			d->failed = true;
			return zstd_failed(d->last, "the stored bytes do not decompress");
		}
		if (ob.pos)
			out(ctx, d->out, ob.pos);
		if (d->last == 0 && ib.pos < ib.size) {
			err_set("the compressed bytes go on past the end of their frame");
			d->failed = true;
			return -1;
		}
		/* the frame is whole and flushed: asking again would start the
		 * next one (a frame that ends as the buffer fills, at a
		 * multiple of 128 KiB, was once taken for a cut one) */
		if (d->last == 0)
			return 0;
		/* a full output buffer may leave more to flush */
		if (ib.pos == ib.size && ob.pos < ob.size)
			return 0;
	}
}

int codec_dec_end(struct codec_dec *d)
{
	if (d->failed)
		return -1;
	if (d->started && d->last != 0) {
		err_set("the stored bytes end inside their compressed frame");
		return -1;
	}
	return 0;
}
