/* reply: the replies that carry an entry (src/lua/lookup.lua and get.lua,
 * then HMGET for a value too large to inline), read off a RESP stream.
 * Apart from store_redis.c so that it needs no hiredis: the RESP fuzzer
 * reads hostile bytes with this very code. */
#ifndef CACHEFENCE_REPLY_H
#define CACHEFENCE_REPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "entry.h"
#include "resp.h"
#include "store.h"

/* a script's verdict reply: "none", "lead", "wait", "bypass", or "hit" / "stale" /
 * "done" with an entry. An entry's bytes come inline when they add up to at
 * most inline_max (lib.lua's INLINE_MAX); they are read whole before any is
 * handed to out and err, so a reply cut mid-value hands over nothing. Larger
 * ones come as nil and big is set, with the run id of the entry the
 * metadata belongs to: fetch the bytes with body_reply_read. */
struct entry_reply {
	struct lookup *res; /* filled in */
	uint64_t inline_max;
	resp_piece_fn out, err; /* receive an inlined stdout and stderr */
	/* NULL, or told the entry's metadata before out and err get its bytes */
	void (*start)(void *ctx, const struct entry_meta *m);
	void *ctx;        /* for out, err and start */
	char verdict[16]; /* as the script said it */
	bool big;
	char rid[64];     /* big: the run id ("" for an entry without one) */
	char holder[512]; /* wait: the lock's whole value (token, host, pid, ...) */
};

/* read one such reply into the struct entry_reply at ctx; 0, -2 for a Redis
 * error reply, or -1 with err_set() */
int entry_reply_read(struct resp_reader *rd, void *ctx);

/* the reply to HMGET ENTRY rid out err, the bytes of a large entry whose
 * metadata came with run id rid. One command's reply is one moment of the
 * entry: if its run id is rid, out and err are that run's, and are handed
 * to out and err as they arrive; if not, another run replaced the entry in
 * between, and nothing is handed over. */
struct body_reply {
	const char *rid;
	uint64_t out_len, err_len; /* from the metadata */
	resp_piece_fn out, err;
	void *ctx;
	bool changed; /* set: the entry is another run's; read again */
};

/* read one such reply for the struct body_reply at ctx; as entry_reply_read */
int body_reply_read(struct resp_reader *rd, void *ctx);

#endif
