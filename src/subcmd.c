/* subcmd: operator subcommands, on any store through the store interface. */
#include "subcmd.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "key.h"
#include "store.h"
#include "util.h"

/* open the store for a subcommand; NULL after printing why */
static struct store *open_for(const struct options *o)
{
	struct store_config cfg = {.url = &o->url, .ns = o->ns, .timeout_ms = o->redis_timeout_ms};
	bool refused;
	struct store *s = store_open(&cfg, &refused);

	if (!s)
		log_error("%s", err_msg());
	return s;
}

/* check every operand is a key; 0, or -1 after printing why */
static int check_keys(const struct options *o, const char *cmd, int min, int max)
{
	if (o->nargs < min || (max && o->nargs > max)) {
		log_error("%s: give %s (see cachefence --help)", cmd,
			  max == 1 ? "exactly one KEY" : "at least one KEY");
		return -1;
	}
	for (int i = 0; i < o->nargs; i++) {
		if (key_validate(o->args[i], strlen(o->args[i])) < 0) {
			log_error("%s: %s", cmd, err_msg());
			return -1;
		}
	}
	return 0;
}

int subcmd_get(const struct options *o)
{
	if (check_keys(o, "get", 1, 1) < 0)
		return 125;
	struct store *s = open_for(o);
	if (!s)
		return 125;
	struct sink sink = {.out_fd = STDOUT_FILENO, .err_fd = -1};
	struct entry_meta meta;
	const char *key = o->args[0];
	int rc = s->ops->get(s, key, strlen(key), o->fresh, &meta, &sink);
	if (rc < 0)
		log_error("get: %s", err_msg());
	store_close(s);
	return rc < 0 ? 125 : rc == 1 ? 0 : 1;
}

int subcmd_invalidate(const struct options *o)
{
	long deleted = 0;

	if (check_keys(o, "invalidate", 1, 0) < 0)
		return 125;
	struct store *s = open_for(o);
	if (!s)
		return 125;
	for (int i = 0; i < o->nargs; i++) {
		int rc = s->ops->invalidate(s, o->args[i], strlen(o->args[i]));
		if (rc < 0) {
			log_error("invalidate: %s", err_msg());
			store_close(s);
			return 125;
		}
		deleted += rc;
	}
	store_close(s);
	printf("%ld\n", deleted);
	return 0;
}
