/* Unit tests of entry signatures (sign.c): what a signature binds, key ids
 * and rotation, and the sink that holds a small entry back until checked. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sign.h"
#include "store.h"
#include "tap.h"

/* a key file at path holding text, with mode */
static void key_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) < 0)
		abort();
	chmod(path, mode);
}

static struct entry_meta sample_meta(void)
{
	struct entry_meta m = {.status = 0,
			       .created_ms = 1000,
			       .ttl_ms = 60000,
			       .stale_ms = 5000,
			       .sie_ms = 0,
			       .compute_ms = 12,
			       .out_len = 5,
			       .err_len = 0};
	strcpy(m.host, "h1");
	return m;
}

/* sign the entry (meta m, stdout out) under ns/key with keys k into m->sig */
static void sign_sample(const struct sign_keys *k, const char *ns, const char *key,
			struct entry_meta *m, const char *out)
{
	struct sign_digest d;
	sign_digest_init(&d);
	sign_digest_tap(&d, SIGN_OUT, out, strlen(out));
	sign_entry(k, ns, key, strlen(key), m, &d);
}

static bool check_sample(const struct sign_keys *k, const char *ns, const char *key,
			 const struct entry_meta *m, const char *out, const char *err)
{
	struct sign_digest d;
	sign_digest_init(&d);
	/* in pieces, as a stream delivers them */
	for (size_t i = 0; out[i]; i++)
		sign_digest_tap(&d, SIGN_OUT, out + i, 1);
	sign_digest_tap(&d, SIGN_ERR, err, strlen(err));
	return sign_check(k, ns, key, strlen(key), m, &d);
}

int main(void)
{
	char dir[] = "/tmp/test_sign.XXXXXX", p1[64], p2[64], p3[64];
	if (!mkdtemp(dir))
		abort();
	snprintf(p1, sizeof(p1), "%s/k1", dir);
	snprintf(p2, sizeof(p2), "%s/k2", dir);
	snprintf(p3, sizeof(p3), "%s/k3", dir);
	key_file(p1, "0123456789abcdef-first\n", 0600);
	key_file(p2, "0123456789abcdef-second", 0400);

	struct sign_keys *k1 = sign_keys_load(p1, "--sign-key-file", NULL, NULL);
	struct sign_keys *k2 = sign_keys_load(p2, "--sign-key-file", NULL, NULL);
	struct sign_keys *rot = sign_keys_load(p2, "--sign-key-file", p1, "--sign-old-key-file");
	ok(k1 && k2 && rot, "private key files load (0600, 0400, a final newline)");
	ok(k1 && k2 && strlen(k1->key[0].id) == SIGN_KEY_ID_LEN &&
		   strcmp(k1->key[0].id, k2->key[0].id) != 0,
	   "each key has an id of its own");

	key_file(p3, "0123456789abcdef-first", 0600);
	struct sign_keys *same = sign_keys_load(p3, "x", NULL, NULL);
	ok(same && memcmp(same->key[0].secret, k1->key[0].secret, k1->key[0].len) == 0 &&
		   same->key[0].len == k1->key[0].len,
	   "white space at the end of a key file is no part of the key");
	sign_keys_free(same);

	key_file(p3, "0123456789abcdef", 0640);
	ok(!sign_keys_load(p3, "--sign-key-file", NULL, NULL) &&
		   strstr(err_msg(), "must be private to you"),
	   "a key file readable by the group is refused: %s", err_msg());
	key_file(p3, "0123456789abcde\n\n", 0600);
	ok(!sign_keys_load(p3, "--sign-key-file", NULL, NULL) && strstr(err_msg(), "at least 16"),
	   "a key of 15 bytes is refused: %s", err_msg());
	ok(!sign_keys_load(dir, "--sign-key-file", NULL, NULL) &&
		   strstr(err_msg(), "not a regular file"),
	   "a directory is refused: %s", err_msg());
	ok(!sign_keys_load(p1, "--sign-key-file", "/nonexistent/k",
			   "CACHEFENCE_SIGN_OLD_KEY_FILE") &&
		   strstr(err_msg(), "CACHEFENCE_SIGN_OLD_KEY_FILE: cannot open"),
	   "a missing old key is named by where it came from: %s", err_msg());

	struct entry_meta m = sample_meta();
	sign_sample(k1, "ns", "key", &m, "hello");
	ok(strlen(m.sig) == SIGN_KEY_ID_LEN + 1 + 64 && m.sig[SIGN_KEY_ID_LEN] == ':' &&
		   strncmp(m.sig, k1->key[0].id, SIGN_KEY_ID_LEN) == 0,
	   "a signature is the key id, a colon and 64 hex digits: %s", m.sig);
	ok(check_sample(k1, "ns", "key", &m, "hello", ""), "the same entry checks");
	ok(check_sample(rot, "ns", "key", &m, "hello", ""), "the old key of a rotation checks it");
	ok(!check_sample(k2, "ns", "key", &m, "hello", ""), "another key does not");
	ok(!check_sample(k1, "ns", "key", &m, "hellp", ""), "a changed byte does not");
	ok(!check_sample(k1, "ns", "key", &m, "hello", "x"), "bytes added to stderr do not");
	ok(!check_sample(k1, "ns", "kez", &m, "hello", ""), "another key does not");
	ok(!check_sample(k1, "ns2", "key", &m, "hello", ""), "another namespace does not");

	/* each field the writer sets is covered; created-at is not (the
	 * store's clock stamps it after signing) */
	struct entry_meta t;
	t = m, t.status = 1;
	ok(!check_sample(k1, "ns", "key", &t, "hello", ""), "the status is covered");
	t = m, t.ttl_ms++;
	ok(!check_sample(k1, "ns", "key", &t, "hello", ""), "the TTL is covered");
	t = m, t.stale_ms++;
	ok(!check_sample(k1, "ns", "key", &t, "hello", ""), "the stale window is covered");
	t = m, t.sie_ms++;
	ok(!check_sample(k1, "ns", "key", &t, "hello", ""), "the stale-if-error window is covered");
	t = m, t.compute_ms++;
	ok(!check_sample(k1, "ns", "key", &t, "hello", ""), "the compute time is covered");
	t = m, t.out_len++;
	ok(!check_sample(k1, "ns", "key", &t, "hello", ""), "the sizes are covered");
	t = m, strcpy(t.host, "h2");
	ok(!check_sample(k1, "ns", "key", &t, "hello", ""), "the host is covered");
	t = m, t.created_ms = 99999;
	ok(check_sample(k1, "ns", "key", &t, "hello", ""), "the created-at is not covered");
	t = m, t.sig[SIGN_KEY_ID_LEN + 5] ^= 1;
	ok(!check_sample(k1, "ns", "key", &t, "hello", ""), "a changed signature does not check");
	t = m, t.sig[0] = '\0';
	ok(!check_sample(k1, "ns", "key", &t, "hello", ""), "an unsigned entry does not check");

	/* the sink: a small entry is held back until checked */
	int fds[2];
	if (pipe(fds) < 0)
		abort();
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	struct sink sink = {.out_fd = fds[1], .err_fd = -1};
	struct sign_digest d;
	char got[16] = "";
	sign_sink_init(&sink, k1, &d);
	sink_write(&sink, SINK_OUT, "hel", 3);
	sink_write(&sink, SINK_OUT, "lp", 2);
	ok(read(fds[0], got, sizeof(got)) < 0 && !sink.emitted,
	   "nothing is written before the check");
	ok(sign_sink_settle(&sink, k1, &d, "ns", "key", 3, &m) == 0 && !sink.emitted &&
		   read(fds[0], got, sizeof(got)) < 0,
	   "a forged small entry is dropped unwritten");
	sink_write(&sink, SINK_OUT, "hello", 5);
	ok(sign_sink_settle(&sink, k1, &d, "ns", "key", 3, &m) == 1 &&
		   read(fds[0], got, sizeof(got)) == 5 && memcmp(got, "hello", 5) == 0,
	   "the sink takes the next entry, and an authentic one is written whole");
	sink_drop(&sink);
	close(fds[0]);
	close(fds[1]);

	sign_keys_free(k1);
	sign_keys_free(k2);
	sign_keys_free(rot);
	sign_keys_free(NULL);
	unlink(p1);
	unlink(p2);
	unlink(p3);
	rmdir(dir);
	return done_testing();
}
