/* store: picks the implementation a URL names, and the sink helper both share. */
#include "store.h"

#include <errno.h>
#include <unistd.h>

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

void sink_write(struct sink *sink, enum sink_stream which, const void *p, size_t n)
{
	if (n == 0)
		return;
	sink->partial = true;
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
	sink->partial = false;
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
