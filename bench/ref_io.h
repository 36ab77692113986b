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

#endif
