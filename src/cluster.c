/* cluster: slots, the slot map and its cache on disk (see cluster.h). */
#include "cluster.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc16.h"
#include "private_cache.h"
#include "util.h"

unsigned cluster_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open) {
		size_t rest = len - (size_t)(open + 1 - key);
		const char *close = memchr(open + 1, '}', rest);
		/* "{}" is no tag: the whole key is hashed */
		if (close && close > open + 1)
			return crc16(open + 1, (size_t)(close - open - 1)) & (CLUSTER_SLOTS - 1);
	}
	return crc16(key, len) & (CLUSTER_SLOTS - 1);
}

/* The tag is computed, not looked up: the table of 16384 tags it replaces
 * (96 kB) was read on every lookup, and on a machine where mapping pages is
 * dear a hit paid for its pages (#19). The four letters are 0x40 and a
 * nibble each, and CRC16 is linear over GF(2): the CRC of the tag with
 * nibbles v is that of "%@@@@" (CLUSTER_TAG_BASE_CRC) XOR a linear map of
 * v, whose low 14 bits (the slot) take every value. So v is linear in the
 * slot XOR that CRC's low bits: the XOR of one solution per set bit,
 * cluster_tag_bit_solutions[] (tests/unit/test_cluster.c derives them
 * from crc16 by Gaussian elimination, and checks every slot's tag). */
const uint16_t cluster_tag_bit_solutions[14] = {
	0x88d4, 0x808a, 0x9007, 0x9efb, 0x19a2, 0x0c93, 0x1184,
	0x8eed, 0x1efb, 0x8022, 0x89c4, 0x82aa, 0x9447, 0x967b,
};

void cluster_tag_of_nibbles(unsigned v, char tag[CLUSTER_SLOT_TAG_MAX + 1])
{
	tag[0] = '%';
	for (int k = 0; k < 4; k++)
		tag[1 + k] = (char)(0x40 | ((v >> (4 * k)) & 15));
	tag[5] = '\0';
}

void cluster_slot_tag(unsigned slot, char tag[CLUSTER_SLOT_TAG_MAX + 1])
{
	unsigned want = (slot ^ CLUSTER_TAG_BASE_CRC) & (CLUSTER_SLOTS - 1), v = 0;

	for (int b = 0; b < 14; b++)
		if (want >> b & 1)
			v ^= cluster_tag_bit_solutions[b];
	cluster_tag_of_nibbles(v, tag);
}

/* --- the map -------------------------------------------------------------------------------- */

void slot_map_init(struct slot_map *m)
{
	m->nodes = NULL;
	m->n_nodes = 0;
	m->owner = NULL;
}

void slot_map_free(struct slot_map *m)
{
	for (size_t i = 0; i < m->n_nodes; i++)
		free(m->nodes[i].host);
	free(m->nodes);
	free(m->owner);
	slot_map_init(m);
}

size_t slot_map_node(struct slot_map *m, const char *host, int port)
{
	for (size_t i = 0; i < m->n_nodes; i++)
		if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0)
			return i;
	m->nodes = xrealloc(m->nodes, (m->n_nodes + 1) * sizeof(*m->nodes));
	m->nodes[m->n_nodes].host = xstrdup(host);
	m->nodes[m->n_nodes].port = port;
	return m->n_nodes++;
}

void slot_map_set(struct slot_map *m, unsigned slot, size_t node)
{
	if (slot >= CLUSTER_SLOTS || node >= CLUSTER_NO_NODE)
		return;
	if (!m->owner) {
		m->owner = xmalloc(CLUSTER_SLOTS * sizeof(*m->owner));
		memset(m->owner, 0xff, CLUSTER_SLOTS * sizeof(*m->owner)); /* CLUSTER_NO_NODE */
	}
	m->owner[slot] = (uint16_t)node;
}

size_t slot_map_index(const struct slot_map *m, unsigned slot)
{
	return m->owner && slot < CLUSTER_SLOTS ? m->owner[slot] : CLUSTER_NO_NODE;
}

const struct cluster_node *slot_map_owner(const struct slot_map *m, unsigned slot)
{
	size_t i = slot_map_index(m, slot);

	return i == CLUSTER_NO_NODE ? NULL : &m->nodes[i];
}

/* a node's host and port in a CLUSTER SLOTS entry; "" for the node asked,
 * NULL for an endpoint the node does not know ("?") or a bad entry */
static const char *endpoint(const redisReply *n, int *port)
{
	if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
	    n->element[1]->type != REDIS_REPLY_INTEGER || n->element[1]->integer <= 0 ||
	    n->element[1]->integer > 65535)
		return NULL;
	*port = (int)n->element[1]->integer;
	const redisReply *h = n->element[0];
	if (h->type == REDIS_REPLY_NIL)
		return "";
	if (h->type != REDIS_REPLY_STRING || h->len >= 256 || memchr(h->str, ' ', h->len) ||
	    strcmp(h->str, "?") == 0)
		return NULL;
	return h->str;
}

int slot_map_from_slots(struct slot_map *m, const redisReply *r, const char *asked_host)
{
	slot_map_free(m);
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		err_set("CLUSTER SLOTS: the reply is not a list of slot ranges");
		return -1;
	}
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		int port;
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER || e->element[0]->integer < 0 ||
		    e->element[1]->integer >= CLUSTER_SLOTS ||
		    e->element[0]->integer > e->element[1]->integer) {
			slot_map_free(m);
			err_set("CLUSTER SLOTS: entry %zu is not a slot range and its primary",
				i + 1);
			return -1;
		}
		const char *host = endpoint(e->element[2], &port);
		if (!host)
			continue; /* unknown for now: a MOVED will say */
		size_t node = slot_map_node(m, *host ? host : asked_host, port);
		for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
			slot_map_set(m, (unsigned)s, node);
	}
	return 0;
}

/* --- redirections -------------------------------------------------------------------------- */

bool cluster_parse_redirect(const char *err, const char *asked_host, struct redirect *r)
{
	const char *p;

	if (strncmp(err, "MOVED ", 6) == 0) {
		r->ask = false;
		p = err + 6;
	} else if (strncmp(err, "ASK ", 4) == 0) {
		r->ask = true;
		p = err + 4;
	} else {
		return false;
	}
	char *end;
	errno = 0;
	unsigned long slot = strtoul(p, &end, 10);
	if (errno || end == p || *end != ' ' || slot >= CLUSTER_SLOTS)
		return false;
	p = end + 1;
	/* the port follows the last ':' (an IPv6 address holds others) */
	const char *colon = strrchr(p, ':');
	if (!colon || (size_t)(colon - p) >= sizeof(r->host))
		return false;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port <= 0 || port > 65535)
		return false;
	size_t hlen = (size_t)(colon - p);
	if (hlen >= 2 && p[0] == '[' && p[hlen - 1] == ']') {
		p++; /* [IPv6]:port */
		hlen -= 2;
	}
	if (hlen == 0) {
		if (strlen(asked_host) >= sizeof(r->host))
			return false;
		strcpy(r->host, asked_host);
	} else {
		memcpy(r->host, p, hlen);
		r->host[hlen] = '\0';
	}
	r->slot = (unsigned)slot;
	r->port = (int)port;
	return true;
}

/* --- the cache on disk ---------------------------------------------------------------------- */

/* First line of a cache file; then "START END HOST PORT" per range. */
#define CACHE_MAGIC "cachefence-slots 1\n"

char *slot_map_cache_path(const char *seeds)
{
	return private_cache_path("cluster", seeds);
}

/* one line "START END HOST PORT" into m; false when it is not one */
static bool load_range(struct slot_map *m, const char *line)
{
	unsigned start, end;
	int port, used = -1;
	char host[256];

	if (sscanf(line, "%5u %5u %255s %5d%n", &start, &end, host, &port, &used) != 4 ||
	    line[used] != '\0' || start > end || end >= CLUSTER_SLOTS || port <= 0 || port > 65535)
		return false;
	size_t node = slot_map_node(m, host, port);
	if (node >= CLUSTER_NO_NODE)
		return false;
	for (unsigned s = start; s <= end; s++)
		slot_map_set(m, s, node);
	return true;
}

int slot_map_parse(struct slot_map *m, const char *p, size_t n)
{
	size_t magic = strlen(CACHE_MAGIC);
	struct buf b = {0};
	int rc = 0;

	slot_map_free(m);
	if (n < magic || n > PRIVATE_CACHE_MAX || memcmp(p, CACHE_MAGIC, magic) != 0 ||
	    memchr(p, '\0', n) || p[n - 1] != '\n')
		return -1;
	buf_append(&b, p, n); /* a copy whose lines can be cut */
	char *line = b.data + magic, *nl;
	for (; rc == 0 && (nl = strchr(line, '\n')); line = nl + 1) {
		*nl = '\0';
		if (!load_range(m, line))
			rc = -1;
	}
	buf_free(&b);
	if (rc < 0 || m->n_nodes == 0) {
		slot_map_free(m);
		return -1;
	}
	return 0;
}

int slot_map_load(struct slot_map *m, const char *path)
{
	struct buf b = {0};

	slot_map_free(m);
	int rc = private_cache_read(path, &b) < 0 ? -1 : slot_map_parse(m, b.data, b.len);
	buf_free(&b);
	return rc;
}

void slot_map_save(const struct slot_map *m, const char *path)
{
	struct buf b = {0};

	buf_append(&b, CACHE_MAGIC, strlen(CACHE_MAGIC));
	for (unsigned s = 0; s < CLUSTER_SLOTS;) {
		unsigned e = s;
		size_t node = slot_map_index(m, s);
		while (e + 1 < CLUSTER_SLOTS && slot_map_index(m, e + 1) == node)
			e++;
		if (node != CLUSTER_NO_NODE)
			buf_appendf(&b, "%u %u %s %d\n", s, e, m->nodes[node].host,
				    m->nodes[node].port);
		s = e + 1;
	}
	private_cache_write(path, b.data, b.len);
	buf_free(&b);
}
