/* store: picks the implementation a URL names, and the sink helper both share. */
#include "store.h"

#include <errno.h>
#include <unistd.h>

#include <config.h>

#include "util.h"

const char *const stat_names[STAT_COUNT] = {
	[STAT_HITS] = "hits",
	[STAT_MISSES] = "misses",
	[STAT_STALE] = "stale_served",
	[STAT_EARLY] = "early_refreshes",
	[STAT_BACKGROUND] = "background_refreshes",
	[STAT_WAITS] = "waits",
	[STAT_TAKEOVERS] = "lock_takeovers",
	[STAT_FAIL_OPEN] = "fail_open_runs",
	[STAT_TOO_LARGE] = "stores_skipped_too_large",
	[STAT_LOST_LOCK] = "stores_skipped_lost_lock",
};

struct store *store_open(const struct store_config *cfg, bool *refused)
{
	*refused = false;
	switch (cfg->url->kind) {
	case URL_REDIS_TCP:
	case URL_REDIS_UNIX:
		return store_redis_open(cfg, refused);
	case URL_REDIS_TLS:
		*refused = true;
		/* HAVE_HIREDIS_SSL says whether hiredis could do it; the TLS
		 * connection itself is not written yet */
		err_set("rediss:// needs TLS, and this build of cachefence has none%s (use redis:// "
			"through a TLS tunnel such as stunnel)",
			HAVE_HIREDIS_SSL ? "" : " (built without hiredis_ssl)");
		return NULL;
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

void sink_write(struct sink *sink, int fd, const void *p, size_t n)
{
	if (fd < 0 || sink->write_failed || n == 0)
		return;
	if (write_all(fd, p, n) < 0)
		sink->write_failed = true;
}

int sink_copy(struct sink *sink, int fd, int in_fd, uint64_t len)
{
	char chunk[65536];

	while (len > 0) {
		size_t want = len < sizeof(chunk) ? len : sizeof(chunk);
		ssize_t r = read_full(in_fd, chunk, want);
		if (r < 0)
			return -1;
		if ((size_t)r < want) {
			errno = EIO;
			return -1;
		}
		sink_write(sink, fd, chunk, r);
		len -= r;
	}
	return 0;
}
