/* entry: what a stored result is, apart from its bytes, and its codec. An
 * entry's metadata travels as named text fields: the Redis store keeps them
 * as fields of a hash (readable with HGETALL), the local store as header lines
 * of a file. Decoding is strict: anything that does not decode is a miss. */
#ifndef CACHEFENCE_ENTRY_H
#define CACHEFENCE_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy_names.h"
#include "util.h"

/* the limits the Lua scripts share (policy_names.h) */
#define ENTRY_VERSION FORMAT_VERSION
#define ENTRY_HOST_MAX HOST_MAX
#define ENTRY_CMD_MAX CMD_MAX
/* the optional field that holds it: not one of the ENTRY_NFIELDS, which a
 * hit reads; only inspect and list read it, and an entry without it (written
 * before it existed) decodes with the command unknown */
#define ENTRY_CMD_FIELD FIELD_CMD
/* the named fields entry_meta_encode() produces, by index; ENTRY_NFIELDS
 * is their number */
enum entry_field_index { ENTRY_META_LIST(POLICY_ENUM) ENTRY_NFIELDS };

/* the fields' names, in the order they are written (lib.lua's META order) */
extern const char *const entry_field_names[ENTRY_NFIELDS];

struct entry_meta {
	int status;         /* COMMAND's exit status, 0..255 */
	int64_t created_ms; /* store clock (Redis server time), ms since the epoch */
	int64_t ttl_ms;     /* fresh for this long after created_ms */
	int64_t stale_ms;   /* then servable while one process refreshes */
	int64_t sie_ms;     /* servable if a refresh fails, up to this long past the TTL */
	int64_t compute_ms; /* how long COMMAND took: XFetch's delta */
	uint64_t out_len;   /* bytes of stored stdout */
	uint64_t err_len;   /* bytes of stored stderr */
	char host[ENTRY_HOST_MAX];
	char cmd[ENTRY_CMD_MAX + 1]; /* COMMAND as entry_command_display() shows it,
				      * printable ASCII; "" when unknown */
	char sig[SIG_MAX + 1];       /* the signature (sign.h), or "" */
	bool zstd;                   /* out_len and err_len bytes of zstd frames (codec.h) */
	uint64_t raw_out_len;        /* zstd: the bytes they decompress to */
	uint64_t raw_err_len;
};

/* one field as text: name and NUL-terminated value */
struct entry_field {
	const char *name;
	char value[ENTRY_HOST_MAX];
};

enum freshness {
	ENTRY_FRESH,          /* within its TTL */
	ENTRY_STALE,          /* past the TTL, inside the stale window */
	ENTRY_STALE_IF_ERROR, /* past both, less than sie_ms past the TTL */
	ENTRY_EXPIRED,        /* past every window: a miss */
};

/* fill fields[] with the metadata as text, in a fixed order, the format
 * version first */
void entry_meta_encode(const struct entry_meta *m, struct entry_field fields[ENTRY_NFIELDS]);

/* decode metadata from n name/value pairs (values need not be NUL-terminated;
 * unknown names are ignored; ENTRY_CMD_FIELD is optional, and its bytes
 * outside printable ASCII read as '?'); 0, or -1 with err_set() when a field
 * is missing, malformed, out of range, or of another format version */
int entry_meta_decode(struct entry_meta *m, const char *const *names, const char *const *values,
		      const size_t *value_lens, size_t n);

/* COMMAND's argv as one line of printable ASCII, for list and inspect to
 * show where a derived key came from: the words joined by spaces, each as a
 * POSIX shell (or bash and zsh, for $'...') reads it back: bare when it holds
 * only letters, digits and _@%+=:,./- (and is not a first word with '='),
 * else in '...', else, when it holds a byte outside printable ASCII, in
 * $'...' with \n, \t, \r, \\, \' and \xNN. Longer than ENTRY_CMD_MAX, it is
 * cut between two characters or escapes and ends with "...". */
void entry_command_display(char out[ENTRY_CMD_MAX + 1], char *const *argv);

/* the "z" field of m: "" for stored bytes as they are, else
 * "zstd:RAWOUT:RAWERR" */
void entry_codec_text(const struct entry_meta *m, char out[64]);

/* how long past its creation an entry can still be served at all */
int64_t entry_lifetime(const struct entry_meta *m);

/* judge an entry at time now_ms on the same clock as created_ms: fresh for
 * the TTL, then stale for stale_ms, and servable on a failed refresh until
 * sie_ms past the TTL (the two windows overlap; the longer one ends it) */
enum freshness entry_freshness(const struct entry_meta *m, int64_t now_ms);

/* -ln(r) for r in (0, 1] (and only there: callers check), to within a few
 * ulps, and zero (perhaps -0.0) for r = 1, without libm: libm's only
 * use here was this, and loading it cost every hit (a short-lived process)
 * about 0.4 ms of start-up, more than a tenth of the whole hit (bench:
 * 1 KiB Redis hit 1.14x the hiredis program with it). r = m * 2^e with m
 * in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <
 * 0.18, a series that reaches double precision in 20 terms. */
double entry_neg_ln(double r);

/* XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): refresh a fresh
 * entry early when age + compute * beta * -ln(rand) reaches its TTL; rand is
 * uniform in (0, 1], beta 0 turns it off. policy.c decides with it; the
 * Redis store's lookup.lua mirrors it. */
bool entry_xfetch_fires(const struct entry_meta *m, int64_t age_ms, double beta, double rand);

/* XFetch's beta and draw as lookup.lua takes them, NUL-terminated: beta as
 * a decimal, the draw as the integer it is times 2^53 (xfetch_draw() in
 * run.c draws in steps of 2^-53; any other draw is rounded up to one), so
 * that the usual values format without printf's floating point, which was
 * the costliest formatting of a hit */
#define ENTRY_XFETCH_ARG_MAX 32
void entry_xfetch_args(double beta, double rand, char beta_out[ENTRY_XFETCH_ARG_MAX],
		       char draw_out[ENTRY_XFETCH_ARG_MAX]);

/* The local store's file header: the magic line, "name=value" lines (the
 * ENTRY_NFIELDS, then ENTRY_CMD_FIELD when the command is known), then
 * "sum=" and the first ENTRY_SUM_LEN hex digits of the SHA-256 of all the
 * header before that line, then an empty line. The checksum makes a header
 * whose sizes were changed but still add up a miss: stdout and stderr sit
 * back to back in the file, and only the sizes say where one ends. */
#define ENTRY_MAGIC "cachefence-entry\n"
#define ENTRY_SUM_LEN 16

/* the checksum of the len header bytes at p, as the "sum=" line holds it */
void entry_header_sum(char out[ENTRY_SUM_LEN + 1], const char *p, size_t len);
/* append a file header for m to b */
void entry_header_write(struct buf *b, const struct entry_meta *m);
/* parse a file header from the first len bytes of p; on success 0 and *hdr_len is
 * the offset of the stored bytes; -1 with err_set() if it does not decode or
 * does not match its checksum */
int entry_header_parse(const char *p, size_t len, struct entry_meta *m, size_t *hdr_len);

/* parse a decimal in [0, max] with nothing else around it; 0 or -1 */
int parse_decimal(const char *p, size_t len, int64_t max, int64_t *out);

#endif
