/* store: picks the implementation a URL names, and the sink helper both share. */
#include "store.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "util.h"

const char *const stat_names[STAT_COUNT] = {STAT_LIST(POLICY_TEXT)};

struct store *store_open(const struct store_config *cfg, bool *refused)
{
	*refused = false;
	switch (cfg->url->kind) {
	case URL_REDIS_TCP:
	case URL_REDIS_UNIX:
	case URL_REDIS_TLS:
		return store_redis_open(cfg, refused);
	case URL_FILE:
		return store_file_open(cfg, refused);
	}
	err_set("unknown store kind");
	return NULL;
}

void store_close(struct store *s)
{
	if (s)
		s->ops->close(s);
}

int abandon_counter(enum abandon_reason why)
{
	switch (why) {
	case ABANDON_TOO_LARGE:
		return STAT_TOO_LARGE;
	case ABANDON_STORE_FAILED:
		return STAT_STORE_FAILED;
	case ABANDON_REFRESH_FAILED:
		return STAT_REFRESH_FAILED;
	case ABANDON_INTERRUPTED:
		break;
	}
	return -1;
}

int64_t refresh_backoff_ms(int64_t failed_run_ms)
{
	if (failed_run_ms <= REFRESH_BACKOFF_MIN_MS / 10)
		return REFRESH_BACKOFF_MIN_MS;
	if (failed_run_ms >= REFRESH_BACKOFF_MAX_MS / 10)
		return REFRESH_BACKOFF_MAX_MS;
	return failed_run_ms * 10;
}

/* write n bytes of stream which to its fd, unless there is none or an
 * earlier write failed */
static void sink_emit(struct sink *sink, enum sink_stream which, const void *p, size_t n)
{
	int fd = which == SINK_ERR ? sink->err_fd : sink->out_fd;

	if (fd < 0 || sink->write_failed || n == 0)
		return;
	sink->emitted = true;
	if (out_write(fd, p, n) < 0)
		sink->write_failed = true;
}

/* n bytes of the entry as the caller gets them: to the tap, then held
 * back or written; those a broken read handed on already are skipped */
static void sink_put(struct sink *sink, enum sink_stream which, const void *p, size_t n)
{
	uint64_t at = sink->at[which];

	sink->at[which] += n;
	if (at < sink->resume_at[which]) {
		uint64_t had = sink->resume_at[which] - at;
		if (had >= n)
			return;
		p = (const char *)p + had;
		n -= (size_t)had;
	}
	if (sink->tap)
		sink->tap(sink->tap_ctx, which, p, n);
	if (sink->hold) {
		if (sink->held[SINK_OUT].len + sink->held[SINK_ERR].len + n <= SINK_HOLD_MAX) {
			buf_append(&sink->held[which], p, n);
			return;
		}
		sink_release(sink); /* too large to hold: what was held goes first */
	}
	sink_emit(sink, which, p, n);
}

struct decoded {
	struct sink *sink;
	enum sink_stream which;
};

static void put_decoded(void *ctx, const void *p, size_t n)
{
	struct decoded *d = ctx;
	struct sink *sink = d->sink;

	if (sink->damaged)
		return;
	/* never more than the entry says: a small frame that would decompress
	 * to gigabytes (a bomb) stops here */
	if (n > sink->raw_want[d->which] - sink->raw_got[d->which]) {
		err_set("the stored bytes decompress to more than their entry says");
		sink->damaged = true;
		return;
	}
	sink->raw_got[d->which] += n;
	sink_put(sink, d->which, p, n);
}

void sink_start(struct sink *sink, const struct entry_meta *m)
{
	sink->refused = sink->vet && !sink->vet(sink->vet_ctx, m);
	memset(sink->at, 0, sizeof(sink->at));
	memset(sink->resume_at, 0, sizeof(sink->resume_at));
	sink->compressed = m->zstd;
	sink->damaged = false;
	if (!m->zstd)
		return;
	if (!sink->dec && !(sink->dec = codec_dec_new())) {
		sink->damaged = true;
		return;
	}
	codec_dec_reset(sink->dec);
	sink->stream = SINK_OUT;
	sink->raw_want[SINK_OUT] = m->raw_out_len;
	sink->raw_want[SINK_ERR] = m->raw_err_len;
	sink->raw_got[SINK_OUT] = sink->raw_got[SINK_ERR] = 0;
	sink->hold = true;
}

/* the compressed frame of the stream being decoded is over */
static void end_frame(struct sink *sink)
{
	if (!sink->damaged && (codec_dec_end(sink->dec) < 0 ||
			       sink->raw_got[sink->stream] != sink->raw_want[sink->stream])) {
		if (!sink->damaged && sink->raw_got[sink->stream] != sink->raw_want[sink->stream])
			err_set("the stored bytes decompress to another size than their entry says");
		sink->damaged = true;
	}
}

int sink_end(struct sink *sink)
{
	if (!sink->compressed)
		return 0;
	end_frame(sink);
	if (sink->stream == SINK_OUT && !sink->damaged && sink->raw_want[SINK_ERR] != 0) {
		err_set("the stored bytes decompress to another size than their entry says");
		sink->damaged = true;
	}
	sink->compressed = false;
	return sink->damaged ? -1 : 0;
}

void sink_write(struct sink *sink, enum sink_stream which, const void *p, size_t n)
{
	if (n == 0)
		return;
	sink->partial = true;
	if (sink->refused)
		return;
	if (!sink->compressed) {
		sink_put(sink, which, p, n);
		return;
	}
	if (sink->damaged)
		return;
	if (which != sink->stream) {
		end_frame(sink);
		codec_dec_reset(sink->dec);
		sink->stream = which;
	}
	struct decoded d = {sink, which};
	if (!sink->damaged && codec_dec_feed(sink->dec, p, n, put_decoded, &d) < 0)
		sink->damaged = true;
}

bool sink_resume(struct sink *sink)
{
	bool further = false;

	if (sink->damaged)
		return false;
	for (int i = SINK_OUT; i <= SINK_ERR; i++) {
		if (sink->at[i] > sink->resume_at[i]) {
			sink->resume_at[i] = sink->at[i];
			further = true;
		}
		sink->at[i] = 0;
	}
	if (sink->compressed) {
		codec_dec_reset(sink->dec);
		sink->stream = SINK_OUT;
		sink->raw_got[SINK_OUT] = sink->raw_got[SINK_ERR] = 0;
	}
	return further;
}

void sink_release(struct sink *sink)
{
	sink->hold = false;
	for (int i = SINK_OUT; i <= SINK_ERR; i++) {
		sink_emit(sink, i, sink->held[i].data, sink->held[i].len);
		buf_free(&sink->held[i]);
	}
}

void sink_drop(struct sink *sink)
{
	buf_free(&sink->held[SINK_OUT]);
	buf_free(&sink->held[SINK_ERR]);
	codec_dec_free(sink->dec);
	sink->dec = NULL;
	sink->partial = false;
	sink->compressed = false;
	sink->hold = false; /* damaged and refused still tell of the entry dropped */
}

struct sink_target {
	struct sink *sink;
	enum sink_stream which;
};

static int sink_piece(void *ctx, const char *p, size_t n)
{
	struct sink_target *t = ctx;

	sink_write(t->sink, t->which, p, n);
	return 0;
}

int sink_copy(struct sink *sink, enum sink_stream which, int in_fd, uint64_t len)
{
	struct sink_target t = {sink, which};

	return read_pieces(in_fd, len, sink_piece, &t);
}
