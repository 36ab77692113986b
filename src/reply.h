/* reply: the replies that carry an entry (src/lua/lookup.lua and get.lua,
 * then HGET for a value too large to inline), read off a RESP stream.
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
 * ones come as nil and big is set: fetch them with value_reply_read. */
struct entry_reply {
	struct lookup *res;    /* filled in */
	uint64_t inline_max;
	resp_piece_fn out, err; /* receive an inlined stdout and stderr */
	void *ctx;              /* for out and err */
	char verdict[16];       /* as the script said it */
	bool big;
};

/* read one such reply into the struct entry_reply at ctx; 0, -2 for a Redis
 * error reply, or -1 with err_set() */
int entry_reply_read(struct resp_reader *rd, void *ctx);

/* the reply to HGET of one large value, which must be want bytes long:
 * handed to piece as it arrives */
struct value_reply {
	uint64_t want;
	resp_piece_fn piece;
	void *ctx;
};

/* read one such reply for the struct value_reply at ctx; as entry_reply_read */
int value_reply_read(struct resp_reader *rd, void *ctx);

#endif
