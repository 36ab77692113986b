/* options: getopt_long with a '+' optstring, so parsing stops at COMMAND; the
 * first non-option word may name a subcommand, else it starts COMMAND. */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "key.h"
#include "sign.h"
#include "util.h"

#define NS_MAX 128

enum {
	OPT_REDIS_TIMEOUT = 256,
	OPT_LOCK_LEASE,
	OPT_CACHE_FAILURES,
	OPT_FAIL_CLOSED,
	OPT_FRESH,
	OPT_FAILURE_TTL,
	OPT_STALE_IF_ERROR,
	OPT_BETA,
	OPT_REFRESH,
	OPT_TIMEOUT,
	OPT_CACHE_STDERR,
	OPT_MAX_SIZE,
	OPT_SCOPE_CWD,
	OPT_SCOPE_ENV,
	OPT_SCOPE_FILE,
	OPT_STDIN,
	OPT_TAG,
	OPT_JSON,
	OPT_PROMETHEUS,
	OPT_RESET,
	OPT_MATCH,
	OPT_INV_TAG,
	OPT_WARM,
	OPT_WAIT_THEN_RUN,
	OPT_TAGS,
	OPT_TLS_CA_FILE,
	OPT_TLS_CA_DIR,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_SERVER_NAME,
	OPT_TLS_INSECURE,
	OPT_SIGN_KEY_FILE,
	OPT_SIGN_OLD_KEY_FILE,
	OPT_COMPRESS,
	OPT_COMPRESS_MIN,
};

/* which options a subcommand takes, beyond the global ones */
enum opt_group {
	GROUP_GLOBAL = 1,
	GROUP_RUN = 2,
	GROUP_GET = 4,
	GROUP_JSON = 8, /* inspect, list, stats */
	GROUP_STATS = 16,
	GROUP_INVALIDATE = 32,
	GROUP_SCOPE = 64, /* what shapes a derived key: run, key, invalidate -- COMMAND */
	GROUP_KEY = 128,  /* -k: run, key */
	GROUP_LIST = 256,
};

struct opt_def {
	struct option lo;
	int group;
};

static const struct opt_def opt_defs[] = {
	{{"url", required_argument, NULL, 'u'}, GROUP_GLOBAL},
	{{"namespace", required_argument, NULL, 'n'}, GROUP_GLOBAL},
	{{"redis-timeout", required_argument, NULL, OPT_REDIS_TIMEOUT}, GROUP_GLOBAL},
	{{"verbose", no_argument, NULL, 'v'}, GROUP_GLOBAL},
	{{"quiet", no_argument, NULL, 'q'}, GROUP_GLOBAL},
	{{"help", no_argument, NULL, 'h'}, GROUP_GLOBAL},
	{{"version", no_argument, NULL, 'V'}, GROUP_GLOBAL},
	{{"tls-ca-file", required_argument, NULL, OPT_TLS_CA_FILE}, GROUP_GLOBAL},
	{{"tls-ca-dir", required_argument, NULL, OPT_TLS_CA_DIR}, GROUP_GLOBAL},
	{{"tls-cert", required_argument, NULL, OPT_TLS_CERT}, GROUP_GLOBAL},
	{{"tls-key", required_argument, NULL, OPT_TLS_KEY}, GROUP_GLOBAL},
	{{"tls-server-name", required_argument, NULL, OPT_TLS_SERVER_NAME}, GROUP_GLOBAL},
	{{"tls-insecure", no_argument, NULL, OPT_TLS_INSECURE}, GROUP_GLOBAL},
	{{"sign-key-file", required_argument, NULL, OPT_SIGN_KEY_FILE}, GROUP_GLOBAL},
	{{"sign-old-key-file", required_argument, NULL, OPT_SIGN_OLD_KEY_FILE}, GROUP_GLOBAL},
	{{"key", required_argument, NULL, 'k'}, GROUP_RUN | GROUP_KEY},
	{{"ttl", required_argument, NULL, 't'}, GROUP_RUN},
	{{"lock-lease", required_argument, NULL, OPT_LOCK_LEASE}, GROUP_RUN},
	{{"wait", required_argument, NULL, 'w'}, GROUP_RUN},
	{{"wait-then-run", no_argument, NULL, OPT_WAIT_THEN_RUN}, GROUP_RUN},
	{{"cache-failures", no_argument, NULL, OPT_CACHE_FAILURES}, GROUP_RUN},
	{{"fail-closed", no_argument, NULL, OPT_FAIL_CLOSED}, GROUP_RUN},
	{{"failure-ttl", required_argument, NULL, OPT_FAILURE_TTL}, GROUP_RUN},
	{{"stale", required_argument, NULL, 's'}, GROUP_RUN},
	{{"stale-if-error", required_argument, NULL, OPT_STALE_IF_ERROR}, GROUP_RUN},
	{{"beta", required_argument, NULL, OPT_BETA}, GROUP_RUN},
	{{"refresh", no_argument, NULL, OPT_REFRESH}, GROUP_RUN},
	{{"warm", no_argument, NULL, OPT_WARM}, GROUP_RUN},
	{{"timeout", required_argument, NULL, OPT_TIMEOUT}, GROUP_RUN},
	{{"cache-stderr", no_argument, NULL, OPT_CACHE_STDERR}, GROUP_RUN},
	{{"max-size", required_argument, NULL, OPT_MAX_SIZE}, GROUP_RUN},
	{{"compress", no_argument, NULL, OPT_COMPRESS}, GROUP_RUN},
	{{"compress-min", required_argument, NULL, OPT_COMPRESS_MIN}, GROUP_RUN},
	{{"scope-cwd", no_argument, NULL, OPT_SCOPE_CWD}, GROUP_SCOPE},
	{{"scope-env", required_argument, NULL, OPT_SCOPE_ENV}, GROUP_SCOPE},
	{{"scope-file", required_argument, NULL, OPT_SCOPE_FILE}, GROUP_SCOPE},
	{{"stdin", optional_argument, NULL, OPT_STDIN}, GROUP_SCOPE},
	{{"tag", required_argument, NULL, OPT_TAG}, GROUP_RUN},
	{{"fresh", no_argument, NULL, OPT_FRESH}, GROUP_GET},
	{{"json", no_argument, NULL, OPT_JSON}, GROUP_JSON},
	{{"prometheus", no_argument, NULL, OPT_PROMETHEUS}, GROUP_STATS},
	{{"reset", no_argument, NULL, OPT_RESET}, GROUP_STATS},
	{{"tags", no_argument, NULL, OPT_TAGS}, GROUP_LIST},
	{{"match", required_argument, NULL, OPT_MATCH}, GROUP_INVALIDATE},
	/* invalidate's --tag shares run's name; a group never holds both */
	{{"tag", required_argument, NULL, OPT_INV_TAG}, GROUP_INVALIDATE},
};
#define NDEFS (sizeof(opt_defs) / sizeof(opt_defs[0]))

/* the TLS settings that name a file or a word: option, variable, field */
static const struct tls_setting {
	int opt;
	const char *name, *env;
	size_t offset; /* of the field in struct tls_options */
	char kind;     /* 'f' a readable file, 'd' a directory, 'w' a word */
	size_t from;   /* of the field naming where a file came from; 0: a word */
} tls_settings[] = {
	{OPT_TLS_CA_FILE, "--tls-ca-file", "CACHEFENCE_TLS_CA_FILE",
	 offsetof(struct tls_options, ca_file), 'f', offsetof(struct tls_options, ca_file_from)},
	{OPT_TLS_CA_DIR, "--tls-ca-dir", "CACHEFENCE_TLS_CA_DIR",
	 offsetof(struct tls_options, ca_dir), 'd', offsetof(struct tls_options, ca_dir_from)},
	{OPT_TLS_CERT, "--tls-cert", "CACHEFENCE_TLS_CERT", offsetof(struct tls_options, cert), 'f',
	 offsetof(struct tls_options, cert_from)},
	{OPT_TLS_KEY, "--tls-key", "CACHEFENCE_TLS_KEY", offsetof(struct tls_options, key), 'f',
	 offsetof(struct tls_options, key_from)},
	{OPT_TLS_SERVER_NAME, "--tls-server-name", "CACHEFENCE_TLS_SERVER_NAME",
	 offsetof(struct tls_options, server_name), 'w', 0},
};
#define NTLS (sizeof(tls_settings) / sizeof(tls_settings[0]))

static const char **tls_field(struct tls_options *t, const struct tls_setting *ts)
{
	return (const char **)((char *)t + ts->offset);
}

/* the bit of o->tls_flags an option sets */
static unsigned tls_bit(int opt)
{
	return 1u << (opt - OPT_TLS_CA_FILE);
}

static const struct {
	const char *name;
	enum subcommand cmd;
	int groups;
} subcommands[] = {
	{"run", CMD_RUN, GROUP_GLOBAL | GROUP_RUN | GROUP_SCOPE},
	{"get", CMD_GET, GROUP_GLOBAL | GROUP_GET},
	{"invalidate", CMD_INVALIDATE, GROUP_GLOBAL | GROUP_INVALIDATE | GROUP_SCOPE},
	{"inspect", CMD_INSPECT, GROUP_GLOBAL | GROUP_JSON},
	{"list", CMD_LIST, GROUP_GLOBAL | GROUP_JSON | GROUP_LIST},
	{"stats", CMD_STATS, GROUP_GLOBAL | GROUP_JSON | GROUP_STATS},
	{"ping", CMD_PING, GROUP_GLOBAL},
	{"key", CMD_KEY, GROUP_GLOBAL | GROUP_KEY | GROUP_SCOPE},
};

void options_init(struct options *o)
{
	memset(o, 0, sizeof(*o));
	o->cmd = CMD_RUN;
	o->ns = "cachefence";
	o->redis_timeout_ms = 1000;
	o->lease_ms = 10000;
	o->ttl_ms = -1;
	o->failure_ttl_ms = -1;
	o->beta = 1.0;
	o->max_size = 64ull << 20;
	o->compress_min = 4096;
}

void options_free(struct options *o)
{
	url_free(&o->url);
	if (o->password)
		memset(o->password, 0, strlen(o->password));
	free(o->password);
	if (o->sentinel_password)
		memset(o->sentinel_password, 0, strlen(o->sentinel_password));
	free(o->sentinel_password);
	free(o->scope_env);
	free(o->scope_file);
	free(o->tags);
	sign_keys_free(o->sign);
}

/* append one value of a repeatable option */
static void push_value(const char ***list, int *n, const char *v)
{
	*list = xrealloc(*list, (*n + 1) * sizeof(**list));
	(*list)[(*n)++] = v;
}

void options_usage(void)
{
	fputs("usage: cachefence [GLOBAL] [run] [RUN OPTIONS] [--] COMMAND [ARG]...\n"
	      "       cachefence [GLOBAL] get [--fresh] KEY\n"
	      "       cachefence [GLOBAL] inspect [--json] KEY\n"
	      "       cachefence [GLOBAL] list [--json] [--tags] [GLOB]\n"
	      "       cachefence [GLOBAL] invalidate KEY... | --match GLOB | --tag NAME\n"
	      "       cachefence [GLOBAL] invalidate [SCOPE] -- COMMAND [ARG]...\n"
	      "       cachefence [GLOBAL] key [SCOPE] [--] COMMAND [ARG]... | -k KEY\n"
	      "       cachefence [GLOBAL] stats [--json | --prometheus] [--reset]\n"
	      "       cachefence [GLOBAL] ping\n"
	      "       cachefence --help | --version\n"
	      "\n"
	      "Runs COMMAND once for everyone who asks at the same time and caches its\n"
	      "standard output under a key with a time to live.\n"
	      "\n"
	      "global options:\n"
	      "  -u, --url URL           redis://[[USER]:PASSWORD@]HOST[:PORT][/DB],\n"
	      "                          rediss://... (TLS), unix:///PATH[?db=N] or\n"
	      "                          file:///DIR (env\n"
	      "                          CACHEFENCE_URL, REDIS_URL; default: the local\n"
	      "                          store in $XDG_CACHE_HOME/cachefence)\n"
	      "  -n, --namespace NS      prefix of every key (env CACHEFENCE_NAMESPACE;\n"
	      "                          default cachefence)\n"
	      "      --redis-timeout DUR connect and per-command timeout (default 1s)\n"
	      "  -v, --verbose           one line per decision on stderr\n"
	      "  -q, --quiet             no warnings\n"
	      "      --tls-ca-file FILE  rediss://: trust the CA certificates in FILE (PEM;\n"
	      "                          env CACHEFENCE_TLS_CA_FILE)\n"
	      "      --tls-ca-dir DIR    rediss://: trust the hashed CA certificates in DIR\n"
	      "                          (env CACHEFENCE_TLS_CA_DIR; default: SSL_CERT_DIR,\n"
	      "                          else the system's, unless --tls-ca-file is given)\n"
	      "      --tls-cert FILE     rediss://: present the client certificate in FILE\n"
	      "                          (PEM; env CACHEFENCE_TLS_CERT)\n"
	      "      --tls-key FILE      its private key (PEM, no passphrase; env\n"
	      "                          CACHEFENCE_TLS_KEY; default: the --tls-cert file)\n"
	      "      --tls-server-name NAME  the name sent (SNI) and verified in the server's\n"
	      "                          certificate (env CACHEFENCE_TLS_SERVER_NAME;\n"
	      "                          default: the URL's host)\n"
	      "      --tls-insecure      do not verify the server's certificate (warns; env\n"
	      "                          CACHEFENCE_TLS_INSECURE=1)\n"
	      "      --sign-key-file FILE  sign stored entries with the key in FILE, and\n"
	      "                          serve only entries signed with it (env\n"
	      "                          CACHEFENCE_SIGN_KEY_FILE; FILE private to you)\n"
	      "      --sign-old-key-file FILE  also accept entries signed with this older\n"
	      "                          key (env CACHEFENCE_SIGN_OLD_KEY_FILE)\n"
	      "  -h, --help              this help\n"
	      "  -V, --version           print the version\n"
	      "\n"
	      "run options:\n"
	      "  -k, --key KEY           cache key (default: a hash of COMMAND's argv)\n"
	      "  -t, --ttl DUR           how long a result is fresh (required; env\n"
	      "                          CACHEFENCE_TTL gives a default)\n"
	      "      --lock-lease DUR    lease of the single-flight lock (default 10s)\n"
	      "  -w, --wait DUR          longest wait for another run's result, then\n"
	      "                          exit 124 (default: no limit)\n"
	      "      --wait-then-run     when --wait expires, run COMMAND uncached and exit\n"
	      "                          with its status instead of 124\n"
	      "  -s, --stale DUR         after the TTL, serve the old result for DUR while\n"
	      "                          one process refreshes it in the background\n"
	      "      --stale-if-error DUR  when a refresh fails, serve the old result for\n"
	      "                          up to DUR past its TTL\n"
	      "      --beta X            XFetch early refresh factor (default 1.0; 0: off)\n"
	      "      --refresh           run COMMAND now, under the lock, and replace the entry\n"
	      "      --warm              print nothing and exit 0 at once; refresh the entry\n"
	      "                          in the background unless it is fresh (--refresh:\n"
	      "                          even then) or another process is refreshing it\n"
	      "      --timeout DUR       kill COMMAND after DUR (SIGTERM, SIGKILL 2s later);\n"
	      "                          exit 124, nothing stored\n"
	      "      --cache-failures    also store results with a non-zero status\n"
	      "      --failure-ttl DUR   TTL of a stored failure (default: the TTL)\n"
	      "      --cache-stderr      also store stderr and replay it on a hit\n"
	      "      --max-size SIZE     do not store outputs larger than SIZE (default 64M)\n"
	      "      --compress          store outputs compressed (zstd); every reader\n"
	      "                          decompresses them, with or without this option\n"
	      "      --compress-min SIZE  with --compress, store smaller outputs as they are\n"
	      "                          (default 4k)\n"
	      "      --scope-cwd         put the working directory into the derived key\n"
	      "      --scope-env NAME    put variable NAME into the derived key (repeatable)\n"
	      "      --scope-file PATH   put PATH's size and mtime into the derived key\n"
	      "                          (repeatable)\n"
	      "      --stdin             hash standard input into the key and feed it to\n"
	      "                          COMMAND (--stdin=ignore: COMMAND may read it, the\n"
	      "                          key does not depend on it: no warning)\n"
	      "      --tag NAME          file the entry under a tag (repeatable)\n"
	      "      --fail-closed       exit 125 instead of running uncached when the\n"
	      "                          store is unreachable\n"
	      "\n"
	      "subcommand options:\n"
	      "      --fresh             get: only a fresh entry counts\n"
	      "      --json              inspect, list, stats: JSON output\n"
	      "      --tags              list: the tags entries are filed under, not keys\n"
	      "      --match GLOB        invalidate: every entry whose key matches GLOB\n"
	      "      --tag NAME          invalidate: every entry filed under NAME\n"
	      "      --prometheus        stats: Prometheus text exposition format\n"
	      "      --reset             stats: zero the counters after printing them\n"
	      "SCOPE is any of --scope-cwd, --scope-env NAME, --scope-file PATH and --stdin:\n"
	      "key prints, and invalidate -- COMMAND deletes, the key run would derive with\n"
	      "the same options.\n"
	      "\n"
	      "DUR is a number with an optional unit: ms, s (default), m, h, d.\n"
	      "SIZE is a number with an optional k, M or G (powers of 1024).\n"
	      "Exit status: COMMAND's; 124 wait expired; 125 cachefence failed;\n"
	      "126 COMMAND not executable; 127 COMMAND not found.\n"
	      "See cachefence(1).\n",
	      stdout);
}

/* prefix the recorded error with the option it came from */
static int option_error(const char *opt)
{
	char why[512];

	snprintf(why, sizeof(why), "%s", err_msg());
	err_set("%s: %s", opt, why);
	return -1;
}

static int set_duration(const char *opt, const char *arg, int64_t *ms)
{
	return parse_duration(arg, ms) < 0 ? option_error(opt) : 0;
}

/* build the getopt tables for the given option groups */
static void build_table(int groups, struct option *table, char *shortopts)
{
	size_t n = 0, s = 0;

	shortopts[s++] = '+';
	shortopts[s++] = ':';
	for (size_t i = 0; i < NDEFS; i++) {
		if (!(opt_defs[i].group & groups))
			continue;
		table[n++] = opt_defs[i].lo;
		int c = opt_defs[i].lo.val;
		if (c < 256) {
			shortopts[s++] = (char)c;
			if (opt_defs[i].lo.has_arg == required_argument)
				shortopts[s++] = ':';
		}
	}
	memset(&table[n], 0, sizeof(table[n]));
	shortopts[s] = '\0';
}

/* name an option for a message: the long name, or -c */
static const char *option_name(int c, char *tmp, size_t tmplen)
{
	for (size_t i = 0; i < NDEFS; i++) {
		if (opt_defs[i].lo.val == c) {
			snprintf(tmp, tmplen, "--%s", opt_defs[i].lo.name);
			return tmp;
		}
	}
	snprintf(tmp, tmplen, "-%c", c);
	return tmp;
}

/* a tag names a Redis key and a file, so it is a short printable word */
static int validate_tag(const char *opt, const char *tag)
{
	size_t len = strlen(tag);

	if (len == 0 || len > 200) {
		err_set("%s: a tag is 1 to 200 bytes", opt);
		return -1;
	}
	for (const char *c = tag; *c; c++) {
		if ((unsigned char)*c <= ' ' || *c == 0x7f) {
			err_set("%s: \"%s\" holds a space or control character (tags are words)",
				opt, tag);
			return -1;
		}
	}
	return 0;
}

static int apply_option(struct options *o, int c, const char *arg, const char **url)
{
	switch (c) {
	case 'u':
		*url = arg;
		return 0;
	case 'n':
		o->ns = arg;
		return 0;
	case OPT_REDIS_TIMEOUT:
		return set_duration("--redis-timeout", arg, &o->redis_timeout_ms);
	case 'v':
		o->verbose = true;
		return 0;
	case 'q':
		o->quiet = true;
		return 0;
	case 'h':
		o->cmd = CMD_HELP;
		return 0;
	case 'V':
		o->cmd = CMD_VERSION;
		return 0;
	case 'k':
		o->key = arg;
		return 0;
	case 't':
		return set_duration("--ttl", arg, &o->ttl_ms);
	case OPT_LOCK_LEASE:
		return set_duration("--lock-lease", arg, &o->lease_ms);
	case 'w':
		return set_duration("--wait", arg, &o->wait_ms);
	case OPT_WAIT_THEN_RUN:
		o->wait_then_run = true;
		return 0;
	case OPT_CACHE_FAILURES:
		o->cache_failures = true;
		return 0;
	case OPT_FAIL_CLOSED:
		o->fail_closed = true;
		return 0;
	case OPT_FRESH:
		o->fresh = true;
		return 0;
	case OPT_FAILURE_TTL:
		return set_duration("--failure-ttl", arg, &o->failure_ttl_ms);
	case 's':
		return set_duration("--stale", arg, &o->stale_ms);
	case OPT_STALE_IF_ERROR:
		return set_duration("--stale-if-error", arg, &o->sie_ms);
	case OPT_BETA:
		return parse_nonneg_double(arg, &o->beta) < 0 ? option_error("--beta") : 0;
	case OPT_REFRESH:
		o->refresh = true;
		return 0;
	case OPT_WARM:
		o->warm = true;
		return 0;
	case OPT_TIMEOUT:
		o->timeout_set = true;
		return set_duration("--timeout", arg, &o->timeout_ms);
	case OPT_CACHE_STDERR:
		o->cache_stderr = true;
		return 0;
	case OPT_MAX_SIZE:
		return parse_size(arg, &o->max_size) < 0 ? option_error("--max-size") : 0;
	case OPT_COMPRESS:
		o->compress = true;
		return 0;
	case OPT_COMPRESS_MIN:
		o->compress_min_set = true;
		return parse_size(arg, &o->compress_min) < 0 ? option_error("--compress-min") : 0;
	case OPT_SCOPE_CWD:
		o->scope_cwd = true;
		return 0;
	case OPT_SCOPE_ENV:
		if (!*arg || strchr(arg, '=')) {
			err_set("--scope-env: \"%s\" is not a variable name (give NAME, without =)",
				arg);
			return -1;
		}
		push_value(&o->scope_env, &o->nscope_env, arg);
		return 0;
	case OPT_SCOPE_FILE:
		if (!*arg) {
			err_set("--scope-file: the path is empty");
			return -1;
		}
		push_value(&o->scope_file, &o->nscope_file, arg);
		return 0;
	case OPT_STDIN:
		/* --stdin=ignore: COMMAND may read stdin, and the key is meant
		 * not to depend on it; no warning when it does */
		if (arg && strcmp(arg, "ignore") == 0) {
			o->stdin_ignored = true;
			return 0;
		}
		if (arg) {
			err_set("--stdin: \"%s\" is not a choice (--stdin hashes standard input into "
				"the key; --stdin=ignore says it does not matter)",
				arg);
			return -1;
		}
		o->use_stdin = true;
		return 0;
	case OPT_TAG:
		if (validate_tag("--tag", arg) < 0)
			return -1;
		push_value(&o->tags, &o->ntags, arg);
		return 0;
	case OPT_JSON:
		o->json = true;
		return 0;
	case OPT_TAGS:
		o->list_tags = true;
		return 0;
	case OPT_PROMETHEUS:
		o->prometheus = true;
		return 0;
	case OPT_RESET:
		o->reset = true;
		return 0;
	case OPT_MATCH:
		if (!*arg) {
			err_set("--match: the pattern is empty (use * for every entry)");
			return -1;
		}
		o->match = arg;
		return 0;
	case OPT_INV_TAG:
		if (validate_tag("--tag", arg) < 0)
			return -1;
		o->tag = arg;
		return 0;
	case OPT_SIGN_KEY_FILE:
	case OPT_SIGN_OLD_KEY_FILE:
		if (!*arg) {
			err_set("%s: the path is empty",
				c == OPT_SIGN_KEY_FILE ? "--sign-key-file" : "--sign-old-key-file");
			return -1;
		}
		*(c == OPT_SIGN_KEY_FILE ? &o->sign_key_file : &o->sign_old_key_file) = arg;
		return 0;
	case OPT_TLS_INSECURE:
		o->tls.insecure = true;
		o->tls_flags |= tls_bit(c);
		return 0;
	}
	for (size_t i = 0; i < NTLS; i++) {
		if (tls_settings[i].opt != c)
			continue;
		if (!*arg) {
			err_set("%s: the value is empty", tls_settings[i].name);
			return -1;
		}
		*tls_field(&o->tls, &tls_settings[i]) = arg;
		o->tls_flags |= tls_bit(c);
		return 0;
	}
	err_set("internal error: unhandled option %d", c);
	return -1;
}

/* one of run's options (the scopes included): a word after it is COMMAND */
static bool is_run_option(int c)
{
	for (size_t i = 0; i < NDEFS; i++)
		if (opt_defs[i].lo.val == c)
			return (opt_defs[i].group & (GROUP_RUN | GROUP_SCOPE)) != 0;
	return false;
}

/* the optimal string alignment distance between a and b (insertions,
 * deletions, substitutions and swaps of two neighbours), capped at 9 */
static int edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int d[16][16];

	if (la > 15 || lb > 15)
		return 9;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			int cost = a[i - 1] != b[j - 1];
			int v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

/* a word close enough to name to be a typo of it: one edit for short
 * names, two for longer ones */
static bool is_typo_of(const char *word, const char *name)
{
	int d = edit_distance(word, name);

	return d > 0 && d <= (strlen(name) > 4 ? 2 : 1);
}

/* the long option of the given groups that "--word" is a typo of, or NULL */
static const char *long_option_like(const char *word, int groups)
{
	for (size_t i = 0; i < NDEFS; i++)
		if ((opt_defs[i].group & groups) && is_typo_of(word, opt_defs[i].lo.name))
			return opt_defs[i].lo.name;
	return NULL;
}

/* the subcommand that word is a typo of, or NULL */
static const char *subcommand_like(const char *word)
{
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		if (is_typo_of(word, subcommands[i].name))
			return subcommands[i].name;
	return NULL;
}

/* the error for an unknown long option ARG ("--name" or "--name=value") */
static void unknown_long_option(const char *arg, int groups)
{
	char name[64];
	const char *like;

	snprintf(name, sizeof(name), "%.*s", (int)strcspn(arg + 2, "="), arg + 2);
	if (strncmp(arg, "--", 2) == 0 && (like = long_option_like(name, groups)))
		err_set("unknown option %s: did you mean --%s? (see cachefence --help)", arg, like);
	else
		err_set("unknown option %s (see cachefence --help)", arg);
}

/* Parse options of the given groups from argv[0..argc) (argv[0] is the
 * program or subcommand name). On return *next indexes the first operand,
 * *saw_dashdash says whether "--" ended the options, and *saw_run whether a
 * run option was given. */
static int parse_group(struct options *o, int groups, int argc, char **argv, int *next,
		       bool *saw_dashdash, bool *saw_run, const char **url)
{
	struct option table[NDEFS + 1];
	char shortopts[2 * NDEFS + 3];
	char tmp[64];
	const char *last_arg = NULL;
	int c;

	build_table(groups, table, shortopts);
	optind = 0; /* glibc: start over, also for a second pass */
	opterr = 0;
	*saw_dashdash = false;
	while ((c = getopt_long(argc, argv, shortopts, table, NULL)) != -1) {
		if (c == '?') {
			if (optopt)
				err_set("unknown option -%c (see cachefence --help)", optopt);
			else
				unknown_long_option(argv[optind - 1], groups);
			return -1;
		}
		if (c == ':') {
			err_set("%s needs a value (see cachefence --help)",
				optopt ? option_name(optopt, tmp, sizeof(tmp)) : argv[optind - 1]);
			return -1;
		}
		if (is_run_option(c))
			*saw_run = true;
		if (apply_option(o, c, optarg, url) < 0)
			return -1;
		last_arg = optarg;
	}
	/* getopt skips a "--" that ends the options; it is the word before the
	 * first operand unless that word was an option's value */
	if (optind > 1 && strcmp(argv[optind - 1], "--") == 0 && last_arg != argv[optind - 1])
		*saw_dashdash = true;
	*next = optind;
	return 0;
}

static int validate_namespace(const char *ns)
{
	size_t len = strlen(ns);

	/* the namespace names a Redis key prefix and a directory of the local
	 * store, so it may hold neither glob nor hash-tag characters nor a path */
	if (len == 0 || len > NS_MAX || ns[0] == '.' || strpbrk(ns, "{}*?[]\\/ \t\n")) {
		err_set("--namespace: \"%s\" is not a namespace (use up to %d letters, digits, "
			"'-', '_', '.' or ':')",
			ns, NS_MAX);
		return -1;
	}
	return 0;
}

/* the local store's default directory: $XDG_CACHE_HOME/cachefence, else
 * ~/.cache/cachefence; with neither, no path: opening the store fails then,
 * which a run survives by running COMMAND uncached (fail-open) */
static int default_store(struct url *u)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");

	memset(u, 0, sizeof(*u));
	u->kind = URL_FILE;
	/* the XDG spec says a relative path is invalid and is ignored */
	if (xdg && xdg[0] == '/')
		u->path = xasprintf("%s/cachefence", xdg);
	else if (home && home[0] == '/')
		u->path = xasprintf("%s/.cache/cachefence", home);
	return 0;
}

/* the store URL: -u, else CACHEFENCE_URL, else REDIS_URL, else the local store */
static int resolve_url(struct options *o, const char *flag)
{
	const char *src = "--url", *url = flag;

	if (!url && (url = getenv("CACHEFENCE_URL")) && *url)
		src = "CACHEFENCE_URL";
	else if (!flag && (url = getenv("REDIS_URL")) && *url)
		src = "REDIS_URL";
	else if (!flag)
		return default_store(&o->url);
	if (url_parse(url, &o->url) < 0)
		return option_error(src);
	return 0;
}

/* COMMAND's first word where a subcommand could have stood (first word,
 * no "--", no run option before it) and no TTL was given: a typo of a
 * subcommand, or "help", is far likelier than a command to cache.
 * 0, or -1 with err_set() */
static int refuse_subcommand_typo(const struct options *o, bool command_first)
{
	const char *word = o->command[0], *like;

	if (!command_first || o->ttl_ms >= 0)
		return 0;
	if (strcmp(word, "help") == 0) {
		err_set("\"help\" is not a subcommand: for help run cachefence --help, or man "
			"cachefence");
		return -1;
	}
	if ((like = subcommand_like(word))) {
		err_set("\"%s\" is not a subcommand: did you mean %s? (to cache a command of "
			"that name: cachefence -t 5m -- %s)",
			word, like, word);
		return -1;
	}
	return 0;
}

static bool has_scope(const struct options *o)
{
	return o->scope_cwd || o->nscope_env || o->nscope_file || o->use_stdin;
}

/* -k, or the scopes of a derived key: not both (run and key); 0 or -1 */
static int validate_key_choice(const struct options *o)
{
	if (o->key && key_validate(o->key, strlen(o->key)) < 0)
		return option_error("--key");
	if (o->key && has_scope(o)) {
		err_set("--key: the --scope-* options and --stdin shape the derived key, so they do "
			"not go with --key (drop one or the other)");
		return -1;
	}
	return 0;
}

static int validate_run(struct options *o, bool command_first)
{
	if (!o->command || !o->command[0]) {
		err_set("no COMMAND given (usage: cachefence -t 5m -- COMMAND [ARG]...)");
		return -1;
	}
	if (refuse_subcommand_typo(o, command_first) < 0)
		return -1;
	/* bkt's habit: a default TTL from the environment, -t wins */
	const char *env_ttl = getenv("CACHEFENCE_TTL");
	bool ttl_from_env = o->ttl_ms < 0 && env_ttl && *env_ttl;
	if (ttl_from_env && set_duration("CACHEFENCE_TTL", env_ttl, &o->ttl_ms) < 0)
		return -1;
	if (o->ttl_ms < 0) {
		err_set("--ttl is required (for example: cachefence -t 5m -- %s; or set "
			"CACHEFENCE_TTL)",
			o->command[0]);
		return -1;
	}
	if (o->ttl_ms == 0) {
		err_set("%s: 0 would never be fresh (give at least 1ms, for example 30s)",
			ttl_from_env ? "CACHEFENCE_TTL" : "--ttl");
		return -1;
	}
	if (o->lease_ms < 100) {
		err_set("--lock-lease: must be at least 100ms (it is renewed every lease/3)");
		return -1;
	}
	if (validate_key_choice(o) < 0)
		return -1;
	if (o->ntags > 32) {
		err_set("--tag: at most 32 tags per entry");
		return -1;
	}
	if (o->failure_ttl_ms == 0) {
		err_set("--failure-ttl: 0 would never be fresh (give at least 1ms, for example 10s)");
		return -1;
	}
	if (o->failure_ttl_ms > 0 && !o->cache_failures) {
		err_set("--failure-ttl: only means something with --cache-failures (add it)");
		return -1;
	}
	if (o->wait_then_run && o->wait_ms == 0) {
		err_set("--wait-then-run: only means something with --wait (add, for example, -w 5s)");
		return -1;
	}
	if (o->timeout_ms == 0 && o->timeout_set) {
		err_set("--timeout: 0 would kill COMMAND at once (give a duration, for example 30s)");
		return -1;
	}
	if (o->compress_min_set && !o->compress) {
		err_set("--compress-min: only means something with --compress (add it)");
		return -1;
	}
	return 0;
}

/* operands and flag combinations of the operator subcommands */
static int validate_subcommand(const struct options *o)
{
	switch (o->cmd) {
	case CMD_GET:
	case CMD_INSPECT:
		if (o->nargs != 1) {
			err_set("%s: give exactly one KEY (see cachefence --help)",
				o->cmd == CMD_GET ? "get" : "inspect");
			return -1;
		}
		break;
	case CMD_LIST:
		if (o->nargs > 1) {
			err_set("list: give at most one GLOB (quote it: cachefence list 'user:*')");
			return -1;
		}
		break;
	case CMD_INVALIDATE:
		if (o->command && !o->command[0]) {
			err_set("invalidate: no COMMAND after -- (usage: cachefence invalidate -- "
				"COMMAND [ARG]...)");
			return -1;
		}
		if ((o->match != NULL) + (o->tag != NULL) + (o->nargs > 0) + (o->command != NULL) !=
		    1) {
			err_set("invalidate: give KEY..., or --match GLOB, or --tag NAME, or -- COMMAND "
				"[ARG]... (one of them)");
			return -1;
		}
		if (has_scope(o) && !o->command) {
			err_set("invalidate: the --scope-* options and --stdin shape the key derived from "
				"COMMAND: give it after -- (cachefence invalidate --scope-cwd -- make)");
			return -1;
		}
		break;
	case CMD_KEY:
		if (!o->key && !o->command[0]) {
			err_set("key: no COMMAND given (usage: cachefence key [--] COMMAND [ARG]..., or "
				"key -k KEY)");
			return -1;
		}
		return validate_key_choice(o);
	case CMD_STATS:
		if (o->json && o->prometheus) {
			err_set("stats: --json and --prometheus are two formats: pick one");
			return -1;
		}
		/* fall through */
	case CMD_PING:
		if (o->nargs > 0) {
			err_set("%s: takes no operands (got \"%s\")",
				o->cmd == CMD_PING ? "ping" : "stats", o->args[0]);
			return -1;
		}
		break;
	default:
		break;
	}
	return 0;
}

/* the TLS settings from the environment, which options then override */
static void tls_from_env(struct options *o)
{
	for (size_t i = 0; i < NTLS; i++) {
		const char *v = getenv(tls_settings[i].env);
		if (v && *v)
			*tls_field(&o->tls, &tls_settings[i]) = v;
	}
	const char *v = getenv("CACHEFENCE_TLS_INSECURE");
	o->tls.insecure = v && strcmp(v, "1") == 0;
}

/* TLS settings are checked here, so that a file that cannot be read is a
 * usage error (125) before anything runs. Given on the command line with a
 * store other than rediss://, they are refused, as a mistake; from the
 * environment they are ignored, since a shell may set them for every
 * call. */
static int validate_tls(const struct options *o)
{
	if (o->url.kind != URL_REDIS_TLS) {
		for (int opt = OPT_TLS_CA_FILE; opt <= OPT_TLS_INSECURE; opt++) {
			char tmp[64];
			if (o->tls_flags & tls_bit(opt)) {
				err_set("%s: only means something with a rediss:// URL (Redis over TLS)",
					option_name(opt, tmp, sizeof(tmp)));
				return -1;
			}
		}
		return 0;
	}
	const char *insecure = getenv("CACHEFENCE_TLS_INSECURE");
	if (!(o->tls_flags & tls_bit(OPT_TLS_INSECURE)) && insecure && *insecure &&
	    strcmp(insecure, "0") != 0 && strcmp(insecure, "1") != 0) {
		err_set("CACHEFENCE_TLS_INSECURE: \"%s\" is not 1 (skip verification) or 0",
			insecure);
		return -1;
	}
	for (size_t i = 0; i < NTLS; i++) {
		const struct tls_setting *ts = &tls_settings[i];
		const char *v = *tls_field((struct tls_options *)&o->tls, ts);
		const char *name = o->tls_flags & tls_bit(ts->opt) ? ts->name : ts->env;
		struct stat st;
		if (!v || ts->kind == 'w')
			continue;
		*(const char **)((char *)&o->tls + ts->from) = name;
		if (stat(v, &st) < 0 || access(v, R_OK) < 0) {
			err_set("%s: %s: %s", name, v, strerror(errno));
			return -1;
		}
		if (ts->kind == 'd' && !S_ISDIR(st.st_mode)) {
			err_set("%s: %s is not a directory (give a directory of hashed CA certificates, "
				"or the file with --tls-ca-file)",
				name, v);
			return -1;
		}
		if (ts->kind == 'f' && S_ISDIR(st.st_mode)) {
			err_set("%s: %s is a directory (a PEM file is expected)", name, v);
			return -1;
		}
	}
	if (o->tls.key && !o->tls.cert) {
		err_set("%s: a client key goes with its certificate: give --tls-cert too",
			o->tls_flags & tls_bit(OPT_TLS_KEY) ? "--tls-key" : "CACHEFENCE_TLS_KEY");
		return -1;
	}
	return 0;
}

/* --sign-key-file and --sign-old-key-file, else their variables: load the
 * keys; 0, or -1 with err_set() */
static int load_sign_keys(struct options *o)
{
	const char *opt = "--sign-key-file", *old_opt = "--sign-old-key-file";
	const char *env = getenv("CACHEFENCE_SIGN_KEY_FILE"),
		   *old_env = getenv("CACHEFENCE_SIGN_OLD_KEY_FILE");

	if (!o->sign_key_file && env && *env) {
		o->sign_key_file = env;
		opt = "CACHEFENCE_SIGN_KEY_FILE";
	}
	if (!o->sign_old_key_file && old_env && *old_env) {
		o->sign_old_key_file = old_env;
		old_opt = "CACHEFENCE_SIGN_OLD_KEY_FILE";
	}
	if (!o->sign_key_file && o->sign_old_key_file) {
		err_set("%s: an old key is for reading beside the current one: give "
			"--sign-key-file too",
			old_opt);
		return -1;
	}
	if (!o->sign_key_file)
		return 0;
	o->sign = sign_keys_load(o->sign_key_file, opt, o->sign_old_key_file, old_opt);
	return o->sign ? 0 : -1;
}

static int validate_common(struct options *o, const char *url)
{
	if (o->redis_timeout_ms <= 0) {
		err_set("--redis-timeout: must be more than 0 (for example 500ms)");
		return -1;
	}
	if (validate_namespace(o->ns) < 0)
		return -1;
	if (resolve_url(o, url) < 0 || validate_tls(o) < 0)
		return -1;
	return load_sign_keys(o);
}

/* a secret from the environment, copied (NULL when unset or empty) and
 * removed, so that COMMAND and /proc/PID/environ never see it */
static char *take_secret(const char *name)
{
	const char *v = getenv(name);
	char *copy = v && *v ? xstrdup(v) : NULL;

	if (v)
		unsetenv(name);
	return copy;
}

int options_parse(struct options *o, int argc, char **argv)
{
	const char *url = NULL;
	bool dashdash = false, saw_run = false;
	int next;

	o->password = take_secret("CACHEFENCE_PASSWORD");
	o->sentinel_password = take_secret("CACHEFENCE_SENTINEL_PASSWORD");
	const char *env_ns = getenv("CACHEFENCE_NAMESPACE");
	if (env_ns && *env_ns)
		o->ns = env_ns;
	tls_from_env(o);
	if (parse_group(o, GROUP_GLOBAL | GROUP_RUN | GROUP_SCOPE, argc, argv, &next, &dashdash,
			&saw_run, &url) < 0)
		return -1;
	if (o->cmd == CMD_HELP || o->cmd == CMD_VERSION)
		return 0;

	/* a subcommand name counts only as the first word, before any "--" or
	 * run option: `cachefence -t 1m ping` runs the command ping */
	int groups = GROUP_GLOBAL | GROUP_RUN | GROUP_SCOPE;
	if (next < argc && !dashdash && !saw_run) {
		for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
			if (strcmp(argv[next], subcommands[i].name) != 0)
				continue;
			o->cmd = subcommands[i].cmd;
			groups = subcommands[i].groups;
			int sub_next;
			if (parse_group(o, groups, argc - next, argv + next, &sub_next, &dashdash,
					&saw_run, &url) < 0)
				return -1;
			next += sub_next;
			break;
		}
	}
	if (o->cmd == CMD_HELP || o->cmd == CMD_VERSION)
		return 0;
	if (validate_common(o, url) < 0)
		return -1;
	o->args = argv + next;
	o->nargs = argc - next;
	if (o->cmd == CMD_RUN) {
		o->command = argv + next;
		return validate_run(o, !dashdash && !saw_run);
	}
	/* key's words are COMMAND; so are invalidate's after "--", and it
	 * then has no KEY operands */
	if (o->cmd == CMD_KEY || (o->cmd == CMD_INVALIDATE && dashdash)) {
		o->command = argv + next;
		o->args = argv + argc;
		o->nargs = 0;
	}
	return validate_subcommand(o);
}
