/* sign: entries that no writer without the key can forge (SPEC 7, issue
 * 18). An entry's signature is an HMAC-SHA256, under a key read from a file
 * private to the user, over the namespace, the user key, the metadata that
 * the writer sets (not the created-at, which the store's clock stamps) and
 * the SHA-256 of stdout and of stderr. The digests are taken while the bytes
 * stream in (child.c's tap, as COMMAND's output is spooled) and out (the
 * sink's tap, as a hit is written), so no value is read twice or held
 * whole for it. */
#ifndef CACHEFENCE_SIGN_H
#define CACHEFENCE_SIGN_H

#include <nettle/sha2.h>
#include <stdbool.h>
#include <stddef.h>

#include "entry.h"

/* the key id: the first hex digits of a hash of the key, so that a reader
 * knows which of its keys an entry claims, without trying each */
#define SIGN_KEY_ID_LEN 8
/* a key file holds at least this many bytes (trailing white space aside) */
#define SIGN_KEY_MIN 16
#define SIGN_KEY_MAX 4096

struct sign_key {
	unsigned char secret[SIGN_KEY_MAX];
	size_t len;
	char id[SIGN_KEY_ID_LEN + 1];
};

/* the key that signs, and an older one still accepted for reading */
struct sign_keys {
	struct sign_key key[2];
	int n; /* 1, or 2 with an old key */
};

/* load the signing key from path and, unless NULL, the old key from
 * old_path, into a malloc'ed struct (sign_keys_free); NULL with err_set()
 * naming what (opt, old_opt: the option or variable each came from) is
 * wrong: unreadable, not a regular file, not private to the user (owned by
 * another, or readable by group or others), shorter than SIGN_KEY_MIN */
struct sign_keys *sign_keys_load(const char *path, const char *opt, const char *old_path,
				 const char *old_opt);
/* wipe and free; accepts NULL */
void sign_keys_free(struct sign_keys *k);

/* which of an entry's two streams bytes belong to */
enum sign_stream { SIGN_OUT, SIGN_ERR };

/* the running SHA-256 of an entry's stdout and stderr */
struct sign_digest {
	struct sha256_ctx ctx[2];
};

void sign_digest_init(struct sign_digest *d);
/* a tap (child.c's and the sink's): hash n bytes of stream which into the
 * struct sign_digest at ctx */
void sign_digest_tap(void *ctx, int which, const void *p, size_t n);

/* write the signature of an entry with metadata m under ns and the user
 * key into m->sig, with the signing key; d is used up */
void sign_entry(const struct sign_keys *k, const char *ns, const char *key, size_t key_len,
		struct entry_meta *m, struct sign_digest *d);

/* whether m->sig is the signature, by the signing or the old key, of an
 * entry with metadata m under ns and the user key whose bytes went through
 * d; d is used up. An unsigned entry is not authentic. */
bool sign_check(const struct sign_keys *k, const char *ns, const char *key, size_t key_len,
		const struct entry_meta *m, struct sign_digest *d);

struct sink;

/* with keys k (NULL: no signing, nothing to do), make sink check the entry
 * that goes into it: its bytes hashed through d, and held back while they
 * fit SINK_HOLD_MAX (store.h) */
void sign_sink_init(struct sink *sink, const struct sign_keys *k, struct sign_digest *d);

/* An entry with metadata m has gone into a sink from sign_sink_init(),
 * under ns and the user key: settle it. 1 whole (it decoded, and with keys
 * k its signature matches): what was held back is written now; 0 not
 * (sink->damaged: it did not decode, with err_set(); else not authentic)
 * and none of it written: the sink dropped it, and takes another entry;
 * -1 not, and bytes of it went out before its end could be checked. */
int sign_sink_settle(struct sink *sink, const struct sign_keys *k, struct sign_digest *d,
		     const char *ns, const char *key, size_t key_len, const struct entry_meta *m);

/* why an entry with metadata m that settled as not authentic is not, in
 * words for a warning (a static string) */
const char *sign_why_not(const struct entry_meta *m);

#endif
