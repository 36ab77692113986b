/* cluster: what routing to a Redis Cluster needs and no connection does:
 * the slot of a key, a word that pulls a key into a given slot, the map of
 * slots to primaries (from CLUSTER SLOTS, corrected by MOVED), the
 * redirections a node answers with, and the map's cache on disk between
 * runs, so that a short-lived process sends a hit straight to its owner. */
#ifndef CACHEFENCE_CLUSTER_H
#define CACHEFENCE_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct redisReply;

#define CLUSTER_SLOTS 16384
#define CLUSTER_SLOT_TAG_MAX 5
#define CLUSTER_NO_NODE UINT16_MAX /* all bits set: slot_map_set fills bytes */

/* the slot of a key: CRC16 of its hash tag (the bytes between the first
 * '{' and the next '}', when there are some), else of the whole key */
unsigned cluster_slot(const char *key, size_t len);

/* a tag whose slot is slot, into tag: '%' and four letters of [@A-O], so
 * that "NS:{TAG}..." lives in that slot, and no user key's name spells it
 * (a '%' in one is escaped) */
void cluster_slot_tag(unsigned slot, char tag[CLUSTER_SLOT_TAG_MAX + 1]);
/* how (cluster.c): the tag of four nibbles v (low first), the CRC16 of the
 * tag of nibbles 0, and the nibbles that flip each of the slot's 14 bits */
void cluster_tag_of_nibbles(unsigned v, char tag[CLUSTER_SLOT_TAG_MAX + 1]);
#define CLUSTER_TAG_BASE_CRC 0x1dda
extern const uint16_t cluster_tag_bit_solutions[14];

/* one primary: where to connect */
struct cluster_node {
	char *host;
	int port;
};

/* which primary serves each slot; nodes are owned by the map */
struct slot_map {
	struct cluster_node *nodes;
	size_t n_nodes;
	/* CLUSTER_SLOTS indexes into nodes, or CLUSTER_NO_NODE; NULL until a
	 * slot is known (a run on a standalone server never pays for it) */
	uint16_t *owner;
};

/* an empty map (every slot unknown), to be released with slot_map_free() */
void slot_map_init(struct slot_map *m);
/* release the nodes and empty the map; accepts an initialised empty map */
void slot_map_free(struct slot_map *m);
/* the index of host:port in the map's nodes, added if new */
size_t slot_map_node(struct slot_map *m, const char *host, int port);
/* slot is served by nodes[node] */
void slot_map_set(struct slot_map *m, unsigned slot, size_t node);
/* the index of the node serving slot, or CLUSTER_NO_NODE when unknown */
size_t slot_map_index(const struct slot_map *m, unsigned slot);
/* the node serving slot, or NULL when unknown */
const struct cluster_node *slot_map_owner(const struct slot_map *m, unsigned slot);
/* Fill m (emptied first) from a CLUSTER SLOTS reply that asked_host sent
 * (each range names its port; an empty or NULL endpoint means that host).
 * 0, or -1 with err_set() when the reply is not one (m is then left empty). */
int slot_map_from_slots(struct slot_map *m, const struct redisReply *r, const char *asked_host);

/* a redirection a node answered with instead of running a command */
struct redirect {
	bool ask; /* ASK: this command only; MOVED: the slot moved for good */
	unsigned slot;
	char host[256];
	int port;
};
/* Parse an error reply's text: "MOVED 3999 127.0.0.1:6381" or "ASK ...";
 * an empty host (a node that does not know its own address) means the
 * node asked (asked_host). true when it is one, into *r. */
bool cluster_parse_redirect(const char *err, const char *asked_host, struct redirect *r);

/* The file that caches the slot map of the cluster whose seeds are the
 * text seeds (the URL's host list): $XDG_CACHE_HOME/cachefence-cluster/ or
 * ~/.cache/cachefence-cluster/, then a digest of seeds (nothing is made
 * until a map is saved). NULL when there is no such place (neither variable
 * set); the caller frees the path. */
char *slot_map_cache_path(const char *seeds);
/* Parse the n bytes at p, a cached map as slot_map_save() writes it, into
 * m (emptied first); 0, or -1 (m left empty) when they are not one. */
int slot_map_parse(struct slot_map *m, const char *p, size_t n);
/* Load the map cached at path into m (emptied first). A file that is
 * missing, not ours, readable by others, or does not parse is no map: 0
 * loaded, -1 none (no message: the cluster is asked instead). */
int slot_map_load(struct slot_map *m, const char *path);
/* Write m to path (a private directory and file, renamed into place); a
 * failure is silent, as the cache only saves a round trip. */
void slot_map_save(const struct slot_map *m, const char *path);

#endif
