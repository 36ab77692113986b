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
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (1 << 20)

static char buf[CHUNK];

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int connect_to(const char *host, int port)
{
	struct sockaddr_in6 a6 = {0};
	struct sockaddr_in a4 = {0};
	struct sockaddr *sa;
	socklen_t len;
	int family;

	if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
		a4.sin_family = AF_INET;
		a4.sin_port = htons((unsigned short)port);
		sa = (struct sockaddr *)&a4, len = sizeof(a4), family = AF_INET;
	} else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
		a6.sin6_family = AF_INET6;
		a6.sin6_port = htons((unsigned short)port);
		sa = (struct sockaddr *)&a6, len = sizeof(a6), family = AF_INET6;
	} else {
		fprintf(stderr, "ref_raw: HOST must be a numeric address: %s\n", host);
		return -1;
	}
	int fd = socket(family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, sa, len) < 0) {
		perror("ref_raw: connect");
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
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
			fprintf(stderr, "ref_raw: connection closed mid-value (%llu bytes missing)\n",
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
