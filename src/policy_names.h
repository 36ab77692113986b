/* policy_names: the names and limits that the C code and the Lua scripts
 * share. src/lua/embed.py reads this header at build time and prepends the
 * same values, as Lua locals of the same names, to every script, so neither
 * side can spell a counter, a verdict or a limit differently from the other.
 *
 * embed.py reads only two shapes of line, so keep to them:
 *   #define NAME 123                    a number: local NAME = 123
 *   #define NAME "text"                 a string: local NAME = 'text'
 *   X(NAME, "text") rows of a *_LIST    a string: local NAME = 'text', and
 *                                       the list as a table of its strings,
 *                                       in order: local NAME_LIST = {...}
 * (X(NAME, "text", ...) rows may carry more arguments; only the first two
 * are read.) */
#ifndef CACHEFENCE_POLICY_NAMES_H
#define CACHEFENCE_POLICY_NAMES_H

/* bumped whenever the meaning of an entry field changes; other versions are misses */
#define FORMAT_VERSION 1
/* a time or size in ms above this (2^52) does not decode: far beyond any
 * real time, it keeps sums from overflowing (and is exact in Lua's doubles) */
#define MS_MAX 4503599627370496
/* an entry's host name is shorter than this */
#define HOST_MAX 256
/* the longest display form of COMMAND kept with an entry, "..." included */
#define CMD_MAX 1024
/* a lock token's length: 128 random bits in hex; a lock's value starts with it */
#define TOKEN_LEN 32
/* an entry's signature (sign.h: key id, ':', 64 hex digits) is at most this
 * long; a longer value is read as no signature */
#define SIG_MAX 80
/* Values up to this size travel inside a script's reply; larger ones cost
 * seconds to pass through Lua, so the script returns false for them and
 * the client streams them with a plain HMGET (lib.lua's read_entry). */
#define INLINE_MAX 1048576
/* A leader's result whose stored stdout and stderr add up to at most this
 * rides on the wake-up itself (finish.lua): the waiters write it without
 * another round trip. Larger ones wake the waiters, who fetch them. Small
 * enough that 200 waiters' copies cost the server little. */
#define CARRY_MAX 16384

/* The counters `stats` reports, in the order the local store's counters
 * file keeps them (file_stats.h): add new ones at the end only. */
#define STAT_LIST(X)                                                                               \
	X(STAT_HITS, "hits")                                                                       \
	X(STAT_MISSES, "misses")                                                                   \
	X(STAT_STALE, "stale_served")                        /* stale entries served */            \
	X(STAT_EARLY, "early_refreshes")                     /* XFetch early refreshes started */  \
	X(STAT_BACKGROUND, "background_refreshes")           /* refreshes of stale entries */      \
	X(STAT_WAITS, "waits")                               /* callers that waited */             \
	X(STAT_TAKEOVERS, "lock_takeovers")                  /* a leader's lease ran out */        \
	X(STAT_FAIL_OPEN, "fail_open_runs")                  /* runs without the store */          \
	X(STAT_TOO_LARGE, "stores_skipped_too_large")        /* output above --max-size */         \
	X(STAT_LOST_LOCK, "stores_skipped_lost_lock")        /* fenced out */                      \
	X(STAT_STORE_FAILED, "stores_failed")                /* the store refused the write */     \
	X(STAT_TAKEOVERS_GONE, "lock_takeovers_holder_gone") /* its holder was gone */             \
	X(STAT_REFRESH_FAILED, "refreshes_failed")           /* stale-if-error refresh failed */   \
	X(STAT_NOT_AUTHENTIC, "entries_not_authentic")       /* signature missing or wrong */

/* The verdicts of a lookup, as lookup.lua's reply names them (store.h says
 * what each means); "none" is get.lua's answer for no entry. */
#define VERDICT_LIST(X)                                                                            \
	X(VERDICT_HIT, "hit")                                                                      \
	X(VERDICT_STALE, "stale")                                                                  \
	X(VERDICT_DONE, "done")                                                                    \
	X(VERDICT_LEAD, "lead")                                                                    \
	X(VERDICT_WAIT, "wait")                                                                    \
	X(VERDICT_BYPASS, "bypass")

/* An entry's metadata fields, in the order they are written and read
 * (entry.c's entry_field_names, lib.lua's ENTRY_META_LIST). Short, because
 * Redis stores one copy per entry; readable, because operators use HGETALL. */
#define ENTRY_META_LIST(X)                                                                         \
	X(META_VERSION, "v")  /* FORMAT_VERSION */                                                 \
	X(META_STATUS, "st")  /* COMMAND's exit status */                                          \
	X(META_CREATED, "ct") /* created at, ms */                                                 \
	X(META_TTL, "ttl")                                                                         \
	X(META_STALE, "sw")   /* --stale */                                                        \
	X(META_SIE, "se")     /* --stale-if-error */                                               \
	X(META_COMPUTE, "dt") /* XFetch's delta */                                                 \
	X(META_OUT_LEN, "olen")                                                                    \
	X(META_ERR_LEN, "elen")                                                                    \
	X(META_HOST, "host")                                                                       \
	X(META_SIG, "sig") /* --sign-key-file: the signature, or empty */                          \
	X(META_CODEC, "z") /* --compress: "zstd:RAWOUT:RAWERR", or empty */

/* an entry's fields besides its metadata, and the mark an over-sized
 * round leaves its waiters */
#define FIELD_OUT "out"            /* stored stdout */
#define FIELD_ERR "err"            /* stored stderr */
#define FIELD_RUN_ID "rid"         /* the token of the leader that stored it */
#define FIELD_BACKOFF "bo"         /* a failed refresh holds off the next until then */
#define FIELD_CMD "cmd"            /* COMMAND's display form (inspect, list) */
#define MARK_TOO_LARGE "too-large" /* the round's output was over --max-size */

/* the X for an enum of a list's names, for the array of its strings by
 * name, and for its strings in order */
#define POLICY_ENUM(name, text) name,
#define POLICY_TEXT(name, text) [name] = text,
#define POLICY_STRING(name, text) text,

#endif
