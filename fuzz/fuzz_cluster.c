/* fuzz_cluster: what cluster.c reads from outside, on any bytes: a cached
 * slot map (a file any process of the user could have written badly) and a
 * node's redirection text. A map that parses holds only nodes with a host
 * and a port in range, and slots that name them; one that does not leaves
 * the map empty. A redirection that parses names a slot
 * and a port in range and a host of the text (or the node asked). */
#include <stdbool.h>

#include "cluster.h"
#include "fuzz.h"

static void check_map(const uint8_t *data, size_t size)
{
	struct slot_map m;

	slot_map_init(&m);
	if (slot_map_parse(&m, (const char *)data, size) < 0) {
		CHECK(m.n_nodes == 0 && !m.nodes);
		for (unsigned s = 0; s < CLUSTER_SLOTS; s++)
			CHECK(slot_map_index(&m, s) == CLUSTER_NO_NODE);
		return;
	}
	CHECK(m.n_nodes > 0);
	for (size_t i = 0; i < m.n_nodes; i++)
		CHECK(m.nodes[i].host && m.nodes[i].host[0] && m.nodes[i].port >= 1 &&
		      m.nodes[i].port <= 65535);
	for (unsigned s = 0; s < CLUSTER_SLOTS; s++)
		CHECK(slot_map_index(&m, s) == CLUSTER_NO_NODE ||
		      slot_map_index(&m, s) < m.n_nodes);
	slot_map_free(&m);
}

static void check_redirect(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	struct redirect r;

	if (cluster_parse_redirect(s, "asked", &r)) {
		CHECK(r.slot < CLUSTER_SLOTS);
		CHECK(r.port >= 1 && r.port <= 65535);
		CHECK(r.host[0] && strlen(r.host) < sizeof(r.host));
		CHECK(strcmp(r.host, "asked") == 0 || strstr(s, r.host));
	}
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_map(data, size);
	check_redirect(data, size);
	return 0;
}
