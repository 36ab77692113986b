/* ref_raw: the transfer limit for a large hit. Connects to Redis over TCP,
 * sends GET KEY in RESP, and streams the bulk reply's payload to stdout in
 * reads of at most 1 MiB, never holding more than one read's worth.
 *
 *   ref_raw HOST PORT KEY
 *
 * HOST is a numeric IPv4 or IPv6 address. Exit 0 when the value was
 * written whole, 1 when the key is missing, 2 on any error (including a
 * server that closes the connection mid-value).
 */
#include <stdlib.h>

static const char ref_name[] = "ref_raw";

#include "ref_io.h"

#define CHUNK (1 << 20)

static char buf[CHUNK];

/* a read of the socket *ctx, EINTR retried; 0 when it closed or failed */
static size_t fd_read(void *ctx, char *p, size_t n)
{
	ssize_t r;

	while ((r = read(*(int *)ctx, p, n)) < 0 && errno == EINTR)
		;
	return r > 0 ? (size_t)r : 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: ref_raw HOST PORT KEY\n");
		return 2;
	}
	int fd = connect_to(argv[1], atoi(argv[2]));
	if (fd < 0)
		return 2;

	size_t klen = strlen(argv[3]);
	char head[64];
	int hlen = snprintf(head, sizeof(head), "*2\r\n$3\r\nGET\r\n$%zu\r\n", klen);
	if (write_all(fd, head, (size_t)hlen) < 0 || write_all(fd, argv[3], klen) < 0 ||
	    write_all(fd, "\r\n", 2) < 0) {
		perror("ref_raw: send");
		return 2;
	}

	return copy_bulk_reply(fd_read, &fd, buf, sizeof(buf));
}
