/* sign: HMAC-SHA256 signatures of entries; see sign.h. */
#include "sign.h"

#include <errno.h>
#include <fcntl.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

/* what the key id hashes before the key, so that the id says nothing
 * usable about the key itself (it is not the SHA-256 of the key) */
#define KEY_ID_DOMAIN "cachefence key id"
/* the first thing a signature covers: the scheme, so that no other use of
 * the key can be replayed as an entry's signature */
#define SIG_DOMAIN "cachefence entry signature 1\n"

/* read one key file into key; 0, or -1 with err_set() */
static int key_read(struct sign_key *key, const char *path, const char *opt)
{
	struct stat sb;
	unsigned char more;

	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		err_set("%s: cannot open %s: %s", opt, path, strerror(errno));
		return -1;
	}
	int rc = -1;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		err_set("%s: %s is not a regular file", opt, path);
		goto out;
	}
	if (sb.st_uid != geteuid() || (sb.st_mode & 077)) {
		err_set("%s: %s must be private to you (owned by you, mode 0600 or 0400; "
			"try chmod 600 %s)",
			opt, path, path);
		goto out;
	}
	ssize_t n = read_full(fd, key->secret, sizeof(key->secret));
	if (n < 0 || read_full(fd, &more, 1) != 0) {
		err_set(n < 0 ? "%s: cannot read %s" : "%s: %s is longer than 4096 bytes", opt,
			path);
		goto out;
	}
	/* a key written with echo ends in a newline that is no part of it */
	while (n > 0 && (key->secret[n - 1] == '\n' || key->secret[n - 1] == '\r' ||
			 key->secret[n - 1] == ' ' || key->secret[n - 1] == '\t'))
		n--;
	if (n < SIGN_KEY_MIN) {
		err_set("%s: %s holds %zd bytes; a key needs at least %d (try: head -c 32 "
			"/dev/urandom | base64 > %s)",
			opt, path, n, SIGN_KEY_MIN, path);
		goto out;
	}
	key->len = (size_t)n;

	struct sha256_ctx h;
	unsigned char d[SHA256_DIGEST_SIZE];
	sha256_init(&h);
	sha256_update(&h, sizeof(KEY_ID_DOMAIN), (const uint8_t *)KEY_ID_DOMAIN);
	sha256_update(&h, key->len, key->secret);
	sha256_digest(&h, sizeof(d), d);
	for (int i = 0; i < SIGN_KEY_ID_LEN / 2; i++)
		snprintf(key->id + 2 * i, 3, "%02x", d[i]);
	rc = 0;
out:
	close(fd);
	return rc;
}

struct sign_keys *sign_keys_load(const char *path, const char *opt, const char *old_path,
				 const char *old_opt)
{
	struct sign_keys *k = xcalloc(1, sizeof(*k));

	if (key_read(&k->key[0], path, opt) < 0 ||
	    (old_path && key_read(&k->key[1], old_path, old_opt) < 0)) {
		sign_keys_free(k);
		return NULL;
	}
	k->n = old_path ? 2 : 1;
	return k;
}

void sign_keys_free(struct sign_keys *k)
{
	if (!k)
		return;
	explicit_bzero(k, sizeof(*k));
	free(k);
}

void sign_digest_init(struct sign_digest *d)
{
	sha256_init(&d->ctx[SIGN_OUT]);
	sha256_init(&d->ctx[SIGN_ERR]);
}

void sign_digest_tap(void *ctx, int which, const void *p, size_t n)
{
	struct sign_digest *d = ctx;

	sha256_update(&d->ctx[which == SIGN_ERR], n, p);
}

/* the HMAC of an entry under key, as hex, into out */
static void entry_mac(const struct sign_key *key, const char *ns, const char *user_key,
		      size_t key_len, const struct entry_meta *m,
		      const unsigned char digests[2][SHA256_DIGEST_SIZE], char out[65])
{
	struct hmac_sha256_ctx h;
	unsigned char mac[SHA256_DIGEST_SIZE];
	struct buf msg = {0};

	/* every variable part is length-prefixed or of fixed size, so no two
	 * entries make the same message */
	buf_appendf(&msg, "%s%zu:%s\n%zu:", SIG_DOMAIN, strlen(ns), ns, key_len);
	buf_append(&msg, user_key, key_len);
	buf_appendf(&msg,
		    "\nst=%d\nttl=%lld\nsw=%lld\nse=%lld\ndt=%lld\nolen=%llu\nelen=%llu\n"
		    "host=%zu:%s\n",
		    m->status, (long long)m->ttl_ms, (long long)m->stale_ms, (long long)m->sie_ms,
		    (long long)m->compute_ms, (unsigned long long)m->out_len,
		    (unsigned long long)m->err_len, strlen(m->host), m->host);
	char codec[64];
	entry_codec_text(m, codec);
	buf_appendf(&msg, "z=%s\n", codec);
	buf_append(&msg, digests, 2 * SHA256_DIGEST_SIZE);
	hmac_sha256_set_key(&h, key->len, key->secret);
	hmac_sha256_update(&h, msg.len, (const uint8_t *)msg.data);
	hmac_sha256_digest(&h, sizeof(mac), mac);
	for (size_t i = 0; i < sizeof(mac); i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
	buf_free(&msg);
	explicit_bzero(&h, sizeof(h));
}

static void digests_of(struct sign_digest *d, unsigned char out[2][SHA256_DIGEST_SIZE])
{
	sha256_digest(&d->ctx[SIGN_OUT], SHA256_DIGEST_SIZE, out[0]);
	sha256_digest(&d->ctx[SIGN_ERR], SHA256_DIGEST_SIZE, out[1]);
}

void sign_entry(const struct sign_keys *k, const char *ns, const char *key, size_t key_len,
		struct entry_meta *m, struct sign_digest *d)
{
	unsigned char digests[2][SHA256_DIGEST_SIZE];
	char mac[65];

	digests_of(d, digests);
	entry_mac(&k->key[0], ns, key, key_len, m, digests, mac);
	snprintf(m->sig, sizeof(m->sig), "%s:%s", k->key[0].id, mac);
}

/* the key of ours a signature names, or NULL for one that is no
 * signature or names none of them */
static const struct sign_key *key_named(const struct sign_keys *k, const char *sig)
{
	if (strlen(sig) != SIGN_KEY_ID_LEN + 1 + 64 || sig[SIGN_KEY_ID_LEN] != ':')
		return NULL;
	for (int i = 0; i < k->n; i++)
		if (memcmp(sig, k->key[i].id, SIGN_KEY_ID_LEN) == 0)
			return &k->key[i];
	return NULL;
}

bool sign_check(const struct sign_keys *k, const char *ns, const char *key, size_t key_len,
		const struct entry_meta *m, struct sign_digest *d)
{
	unsigned char digests[2][SHA256_DIGEST_SIZE];
	char mac[65];
	const struct sign_key *named = key_named(k, m->sig);

	digests_of(d, digests);
	if (!named)
		return false;
	entry_mac(named, ns, key, key_len, m, digests, mac);
	return memeql_sec(mac, m->sig + SIGN_KEY_ID_LEN + 1, 64);
}

/* the sink's vet: an entry whose signature cannot check (sign_check) has
 * none of its bytes go out, however large */
static bool sig_names_a_key(void *ctx, const struct entry_meta *m)
{
	return key_named(ctx, m->sig) != NULL;
}

void sign_sink_init(struct sink *sink, const struct sign_keys *k, struct sign_digest *d)
{
	if (!k)
		return;
	sign_digest_init(d);
	sink->tap = sign_digest_tap;
	sink->tap_ctx = d;
	sink->vet = sig_names_a_key;
	sink->vet_ctx = (void *)k;
	sink->hold = true;
}

int sign_sink_settle(struct sink *sink, const struct sign_keys *k, struct sign_digest *d,
		     const char *ns, const char *key, size_t key_len, const struct entry_meta *m)
{
	bool ok = sink_end(sink) == 0 && (!k || sign_check(k, ns, key, key_len, m, d));
	if (ok) {
		sink_release(sink);
		sign_sink_init(sink, k, d); /* ready for another entry */
		return 1;
	}
	if (sink->emitted)
		return -1;
	sink_drop(sink);
	sign_sink_init(sink, k, d);
	return 0;
}

const char *sign_why_not(const struct entry_meta *m)
{
	return m->sig[0] ? "its signature does not match" : "unsigned";
}
