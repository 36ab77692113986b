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

	/* the reply's first line: $LEN\r\n, $-1\r\n, or -ERR ...\r\n */
	size_t have = 0;
	char *eol = NULL;
	while (!(eol = memchr(buf, '\n', have))) {
		if (have == sizeof(buf)) {
			fprintf(stderr, "ref_raw: reply line too long\n");
			return 2;
		}
		ssize_t r = read(fd, buf + have, sizeof(buf) - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "ref_raw: connection closed before the reply\n");
			return 2;
		}
		have += (size_t)r;
	}
	if (buf[0] != '$') {
		fprintf(stderr, "ref_raw: unexpected reply: %.*s\n", (int)(eol - buf), buf);
		return 2;
	}
	long long len = strtoll(buf + 1, NULL, 10);
	if (len < 0)
		return 1;

	/* the payload: what came with the first line, then 1 MiB reads */
	size_t off = (size_t)(eol + 1 - buf);
	unsigned long long left = (unsigned long long)len;
	size_t n = have - off < left ? have - off : (size_t)left;
	if (write_all(STDOUT_FILENO, buf + off, n) < 0) {
		perror("ref_raw: write");
		return 2;
	}
	left -= n;
	while (left > 0) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr,
				"ref_raw: connection closed mid-value (%llu bytes missing)\n",
				left);
			return 2;
		}
		n = (size_t)r < left ? (size_t)r : (size_t)left;
		if (write_all(STDOUT_FILENO, buf, n) < 0) {
			perror("ref_raw: write");
			return 2;
		}
		left -= n;
	}
	/* the trailing CRLF is left unread: the process exits */
	return 0;
}
