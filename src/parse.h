/* parse: the value grammars of the command line: durations, sizes and store
 * URLs. Pure functions with no I/O, so they are unit-tested and fuzzed alone. */
#ifndef CACHEFENCE_PARSE_H
#define CACHEFENCE_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* parse "250ms", "30", "5m", "1.5h", "2d" (no unit means seconds) into
 * milliseconds; -1 with err_set() on anything else, negative values, or overflow */
int parse_duration(const char *s, int64_t *ms);
/* parse "512", "64k", "64M", "1G" (powers of 1024) into bytes; -1 with err_set() */
int parse_size(const char *s, uint64_t *bytes);
/* parse a decimal number >= 0 such as "1.0" or "0" (for --beta); -1 with err_set() */
int parse_nonneg_double(const char *s, double *out);

enum url_kind {
	URL_REDIS_TCP,  /* redis://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...][/DB] */
	URL_REDIS_UNIX, /* unix:///path/sock[?db=N] */
	URL_REDIS_TLS,  /* rediss://..., Redis over TLS (the fields of TCP) */
	/* redis+sentinel:// and rediss+sentinel:// are TCP and TLS with
	 * sentinel set: HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB], the hosts
	 * the sentinels (port 26379 by default) */
	URL_FILE, /* file:///DIR, the local store */
};

/* the most hosts a redis:// or rediss:// URL may name */
#define URL_HOSTS_MAX 64

/* a parsed store URL; every string is malloc'ed and owned by the struct */
struct url {
	enum url_kind kind;
	char *host; /* TCP: host name or address, without IPv6 brackets */
	int port;   /* TCP: default 6379 */
	/* TCP: the hosts named after the first, in order (seeds of a
	 * cluster); each host malloc'ed, the array too */
	struct url_host {
		char *host;
		int port;
	} * more;
	int n_more;
	bool sentinel;  /* the hosts are sentinels, asked for service's primary */
	char *service;  /* sentinel: the primary's name at the sentinels */
	char *path;     /* UNIX: socket path; FILE: directory */
	char *user;     /* NULL when absent */
	char *password; /* NULL when absent; percent-decoded */
	int db;         /* default 0 */
};

/* the TLS settings of a rediss:// store (--tls-* and CACHEFENCE_TLS_*);
 * NULL strings are unset */
struct tls_options {
	const char *ca_file;     /* CA certificates (PEM) to trust */
	const char *ca_dir;      /* a hashed directory of them (c_rehash); default:
				  * the system's (X509_get_default_cert_dir) */
	const char *cert, *key;  /* a client certificate and its key (PEM) */
	const char *server_name; /* SNI and the name verified; default: the host */
	bool insecure;           /* do not verify the server at all */
	/* where each file came from, for its error line: the option's name or
	 * the variable's (NULL: the option's) */
	const char *ca_file_from, *ca_dir_from, *cert_from, *key_from;
};

/* parse a store URL into *u; -1 with err_set() saying what is wrong; on
 * success the caller releases it with url_free() */
int url_parse(const char *s, struct url *u);
/* a deep copy of src into *dst, released with url_free() */
void url_copy(struct url *dst, const struct url *src);
/* release the strings of a URL filled by url_parse(); accepts a zeroed struct */
void url_free(struct url *u);
/* a malloc'ed printable form of the URL with any password masked as "***" */
char *url_display(const struct url *u);

#endif
