/* Unit tests of cluster.c: the slot of a key (the examples of the Redis
 * Cluster specification), the slot tags, a CLUSTER SLOTS reply made into a
 * map, redirections, and the map's cache on disk. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster.h"
#include "crc16.h"
#include "tap.h"
#include "util.h"

/* the reply that RESP bytes resp parse into; freeReplyObject() it */
static redisReply *reply_of(const char *resp)
{
	redisReader *rd = redisReaderCreate();
	void *r = NULL;

	redisReaderFeed(rd, resp, strlen(resp));
	if (redisReaderGetReply(rd, &r) != REDIS_OK)
		r = NULL;
	redisReaderFree(rd);
	return r;
}

static void test_slots(void)
{
	ok(crc16("123456789", 9) == 0x31c3, "CRC16 of the check string is 0x31c3 (XMODEM)");
	ok(cluster_slot("123456789", 9) == 12739, "the slot of \"123456789\" is 12739");
	ok(cluster_slot("{user1000}.following", 20) == cluster_slot("{user1000}.followers", 20),
	   "keys with the same hash tag share a slot");
	ok(cluster_slot("{user1000}.following", 20) == 3443,
	   "a hash tag hashes like the bare word (CLUSTER KEYSLOT says 3443)");
	ok(cluster_slot("foo{}{bar}", 10) == 8363,
	   "an empty first tag makes the whole key hashed (CLUSTER KEYSLOT says 8363)");
	ok(cluster_slot("foo{{bar}}zap", 13) == cluster_slot("{bar", 4),
	   "the tag runs from the first '{' to the next '}'");
	ok(cluster_slot("foo{bar}{zap}", 13) == cluster_slot("bar", 3),
	   "only the first tag counts");
	ok(cluster_slot("a\0{b}", 5) == cluster_slot("b", 1),
	   "a NUL byte before the tag is a byte like any");

	/* cluster.c's constants, derived again: the CRC of the tag of nibbles
	 * 0, and for each slot bit the nibbles that solve "the CRC's low 14
	 * bits flip that bit alone" by Gaussian elimination (free bits 0) */
	char t[CLUSTER_SLOT_TAG_MAX + 1];
	cluster_tag_of_nibbles(0, t);
	unsigned base = crc16(t, 5);
	ok(base == CLUSTER_TAG_BASE_CRC, "CLUSTER_TAG_BASE_CRC is the CRC of %s (0x%04x)", t, base);
	unsigned col[16];
	for (int i = 0; i < 16; i++) {
		cluster_tag_of_nibbles(1u << i, t);
		col[i] = crc16(t, 5) ^ base;
	}
	int wrong = 0;
	for (int b = 0; b < 14; b++) {
		uint32_t row[14];
		for (int r = 0; r < 14; r++) {
			row[r] = (uint32_t)(r == b) << 16;
			for (int i = 0; i < 16; i++)
				row[r] |= ((col[i] >> r) & 1u) << i;
		}
		int pivot[14], rank = 0;
		for (int i = 0; i < 16 && rank < 14; i++) {
			int r = rank;
			while (r < 14 && !(row[r] >> i & 1))
				r++;
			if (r == 14)
				continue;
			uint32_t x = row[r];
			row[r] = row[rank];
			row[rank] = x;
			for (int q = 0; q < 14; q++)
				if (q != rank && (row[q] >> i & 1))
					row[q] ^= row[rank];
			pivot[rank++] = i;
		}
		unsigned v = 0;
		for (int r = 0; r < rank; r++)
			v |= ((row[r] >> 16) & 1u) << pivot[r];
		if (rank != 14 || v != cluster_tag_bit_solutions[b])
			wrong++;
	}
	ok(wrong == 0, "cluster_tag_bit_solutions[] solve the CRC's equations (%d wrong)", wrong);

	int bad = 0;
	for (unsigned s = 0; s < CLUSTER_SLOTS; s++) {
		cluster_slot_tag(s, t);
		size_t len = strlen(t);
		if (len != 5 || t[0] != '%' || strspn(t + 1, "@ABCDEFGHIJKLMNO") != 4 ||
		    cluster_slot(t, len) != s)
			bad++;
	}
	ok(bad == 0, "every slot has a tag %%[@A-O]{4} that hashes to it (%d wrong)", bad);
	char key[64];
	cluster_slot_tag(cluster_slot("k", 1), t);
	int n = snprintf(key, sizeof(key), "ns:{%s}:stats", t);
	ok(cluster_slot(key, (size_t)n) == cluster_slot("k", 1),
	   "a key tagged with a slot's tag is in that slot");
}

static void test_map(void)
{
	struct slot_map m;
	slot_map_init(&m);

	/* Redis 7: [start, end, [host, port, id, metadata], replica...] */
	redisReply *r =
		reply_of("*3\r\n"
			 "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
			 "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nir\r\n"
			 "*3\r\n:5461\r\n:10922\r\n*2\r\n$0\r\n\r\n:7001\r\n"
			 "*3\r\n:10923\r\n:16383\r\n*2\r\n$-1\r\n:7002\r\n");
	ok(r && slot_map_from_slots(&m, r, "10.0.0.9") == 0, "a CLUSTER SLOTS reply makes a map");
	const struct cluster_node *a = slot_map_owner(&m, 0), *b = slot_map_owner(&m, 5461),
				  *c = slot_map_owner(&m, 16383);
	ok(a && strcmp(a->host, "127.0.0.1") == 0 && a->port == 7000,
	   "slot 0 is served by the first primary");
	ok(slot_map_owner(&m, 5460) == a, "the range's last slot too, not its replica");
	ok(b && strcmp(b->host, "10.0.0.9") == 0 && b->port == 7001,
	   "an empty endpoint means the node asked");
	ok(c && strcmp(c->host, "10.0.0.9") == 0 && c->port == 7002, "a NULL endpoint too");
	ok(m.n_nodes == 3, "three primaries, each once");
	freeReplyObject(r);

	r = reply_of("*1\r\n*3\r\n:0\r\n:99\r\n*2\r\n$1\r\n?\r\n:7000\r\n");
	ok(r && slot_map_from_slots(&m, r, "h") == 0 && !slot_map_owner(&m, 5),
	   "an unknown endpoint ('?') leaves its slots unknown");
	freeReplyObject(r);

	static const char *bad[] = {
		"+OK\r\n",
		"*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",
		"*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",
		"*1\r\n*2\r\n:0\r\n:5\r\n",
		"*1\r\n*3\r\n$1\r\n0\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = reply_of(bad[i]);
		ok(r && slot_map_from_slots(&m, r, "h") < 0 && m.n_nodes == 0,
		   "a reply that is not a slot map is refused and leaves the map empty (case %zu)",
		   i + 1);
		freeReplyObject(r);
	}
	slot_map_free(&m);
}

static void test_redirects(void)
{
	struct redirect r;

	ok(cluster_parse_redirect("MOVED 3999 127.0.0.1:6381", "x", &r) && !r.ask &&
		   r.slot == 3999 && strcmp(r.host, "127.0.0.1") == 0 && r.port == 6381,
	   "MOVED names the slot and its new owner");
	ok(cluster_parse_redirect("ASK 12 ::1:7000", "x", &r) && r.ask &&
		   strcmp(r.host, "::1") == 0 && r.port == 7000,
	   "ASK with an IPv6 address: the port follows the last ':'");
	ok(cluster_parse_redirect("MOVED 7 :7002", "seed", &r) && strcmp(r.host, "seed") == 0,
	   "an empty host is the node asked");
	ok(cluster_parse_redirect("ASK 7 [fe80::1]:7002", "seed", &r) &&
		   strcmp(r.host, "fe80::1") == 0,
	   "an IPv6 address in brackets loses them");
	static const char *bad[] = {"MOVED",      "MOVED 16384 h:1", "MOVED x h:1",
				    "MOVED 1 h",  "MOVED 1 h:0",     "MOVED 1 h:70000",
				    "ASK 1 h:1x", "ERR MOVED 1 h:1", "TRYAGAIN"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ok(!cluster_parse_redirect(bad[i], "x", &r), "\"%s\" is no redirection", bad[i]);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static void test_cache(void)
{
	char dir[] = "/tmp/cachefence-test-cluster.XXXXXX";
	if (!mkdtemp(dir)) {
		ok(0, "mkdtemp");
		return;
	}
	setenv("XDG_CACHE_HOME", dir, 1);
	char *p1 = slot_map_cache_path("h1:7000,h2:7001"), *p2 = slot_map_cache_path("h3:7000");
	ok(p1 && p2 && strcmp(p1, p2) != 0 && strncmp(p1, dir, strlen(dir)) == 0,
	   "each seed list has its own cache file under XDG_CACHE_HOME");
	struct stat st;
	char *cdir = xasprintf("%s/cachefence-cluster", dir);
	ok(stat(cdir, &st) < 0, "naming the cache file makes nothing");

	struct slot_map m, back;
	slot_map_init(&m);
	slot_map_init(&back);
	ok(slot_map_load(&back, p1) < 0, "no file, no map");
	size_t x = slot_map_node(&m, "127.0.0.1", 7000), y = slot_map_node(&m, "::1", 7001);
	for (unsigned s = 0; s < CLUSTER_SLOTS; s++)
		if (s >= 100)
			slot_map_set(&m, s, s % 3 ? x : y);
	slot_map_save(&m, p1);
	ok(stat(cdir, &st) == 0 && (st.st_mode & 0777) == 0700,
	   "saving makes the cache directory, private (0700)");
	ok(stat(p1, &st) == 0 && (st.st_mode & 0777) == 0600, "the cache file is private (0600)");
	int same = slot_map_load(&back, p1) == 0;
	for (unsigned s = 0; same && s < CLUSTER_SLOTS; s++)
		same = slot_map_index(&back, s) == slot_map_index(&m, s);
	ok(same && back.n_nodes == 2 &&
		   strcmp(back.nodes[slot_map_index(&back, 101)].host, "127.0.0.1") == 0 &&
		   back.nodes[slot_map_index(&back, 102)].port == 7001,
	   "a saved map loads back the same, unknown slots included");

	chmod(p1, 0644);
	ok(slot_map_load(&back, p1) < 0 && back.n_nodes == 0,
	   "a cache file others may read is not used");
	static const char *bad[] = {
		"",
		"cachefence-slots 2\n0 1 h 1\n",
		"cachefence-slots 1\n0 1 h\n",
		"cachefence-slots 1\n0 16384 h 1\n",
		"cachefence-slots 1\n5 1 h 1\n",
		"cachefence-slots 1\n0 1 h 1 extra\n",
		"cachefence-slots 1\n0 1 h 1",
		"cachefence-slots 1\n",
		"cachefence-slots 1\n0 1 h 0\n",
		"cachefence-slots 1\n-1 1 h 1\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(p1, bad[i], 0600);
		ok(slot_map_load(&back, p1) < 0 && back.n_nodes == 0,
		   "a cache file that does not parse is no map (case %zu)", i + 1);
	}
	char *link = xasprintf("%s/link", cdir);
	slot_map_save(&m, p2);
	ok(symlink(p2, link) == 0 && slot_map_load(&back, link) < 0,
	   "a symbolic link is not followed");

	unsetenv("XDG_CACHE_HOME");
	char *home = getenv("HOME") ? xstrdup(getenv("HOME")) : NULL;
	unsetenv("HOME");
	ok(slot_map_cache_path("h:1") == NULL, "without XDG_CACHE_HOME or HOME there is no cache");
	if (home)
		setenv("HOME", home, 1);
	free(home);

	slot_map_free(&m);
	slot_map_free(&back);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	ok(system(cmd) == 0, "clean up");
	free(cmd);
	free(link);
	free(cdir);
	free(p1);
	free(p2);
}

int main(void)
{
	test_slots();
	test_map();
	test_redirects();
	test_cache();
	return done_testing();
}
