/* ref_io: what the reference programs of bench/ share, kept to the least a
 * program needs to talk to Redis, so that the references stay a floor.
 * Each program defines ref_name (for its error lines) before including it. */
#ifndef REF_IO_H
#define REF_IO_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
		fprintf(stderr, "%s: HOST must be a numeric address: %s\n", ref_name, host);
		return -1;
	}
	int fd = socket(family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, sa, len) < 0) {
		fprintf(stderr, "%s: connect: %s\n", ref_name, strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Copy the value of one RESP bulk reply to stdout: its first line, then
 * the payload, read by rd(ctx, p, n) (the bytes read, 0 when the connection
 * closed or failed) into buf, cap bytes, in reads of at most cap. The
 * trailing CRLF is left unread: the caller exits. 0 the value written, 1 no
 * value ($-1), 2 an error, said on stderr. */
static int copy_bulk_reply(size_t (*rd)(void *ctx, char *p, size_t n), void *ctx, char *buf,
			   size_t cap)
{
	/* the reply's first line: $LEN\r\n, $-1\r\n, or -ERR ...\r\n */
	size_t have = 0;
	char *eol = NULL;
	while (!(eol = memchr(buf, '\n', have))) {
		if (have == cap) {
			fprintf(stderr, "%s: reply line too long\n", ref_name);
			return 2;
		}
		size_t r = rd(ctx, buf + have, cap - have);
		if (r == 0) {
			fprintf(stderr, "%s: connection closed before the reply\n", ref_name);
			return 2;
		}
		have += r;
	}
	if (buf[0] != '$') {
		fprintf(stderr, "%s: unexpected reply: %.*s\n", ref_name, (int)(eol - buf), buf);
		return 2;
	}
	long long len = strtoll(buf + 1, NULL, 10);
	if (len < 0)
		return 1;

	/* the payload: what came with the first line, then reads of cap */
	size_t off = (size_t)(eol + 1 - buf);
	unsigned long long left = (unsigned long long)len;
	size_t n = have - off < left ? have - off : (size_t)left;
	for (;;) {
		if (write_all(STDOUT_FILENO, off ? buf + off : buf, n) < 0) {
			fprintf(stderr, "%s: write: %s\n", ref_name, strerror(errno));
			return 2;
		}
		left -= n;
		off = 0;
		if (left == 0)
			return 0;
		size_t r = rd(ctx, buf, cap);
		if (r == 0) {
			fprintf(stderr, "%s: connection closed mid-value (%llu bytes missing)\n",
				ref_name, left);
			return 2;
		}
		n = r < left ? r : (size_t)left;
	}
}

#endif
