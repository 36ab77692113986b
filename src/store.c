/* store: picks the implementation a URL names, and the sink helper both share. */
#include "store.h"

#include <errno.h>
#include <config.h>

#include "util.h"

struct store *store_open(const struct store_config *cfg)
{
	switch (cfg->url->kind) {
	case URL_REDIS_TCP:
	case URL_REDIS_UNIX:
		return store_redis_open(cfg);
	case URL_REDIS_TLS:
		err_set("rediss:// needs TLS, and this build of cachefence has none (use redis:// or a TLS tunnel)");
		return NULL;
	case URL_FILE:
		err_set("file:// stores are not available yet (use redis://HOST)");
		return NULL;
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
