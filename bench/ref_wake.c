/* ref_wake: the floor of a wake-up on this machine. The least a waiter
 * can do: block in one BLPOP on Redis, then write the reply to stdout and
 * exit. And the least a waker can do: take the time, then send one RPUSH
 * that wakes them all.
 *
 *   ref_wake wait PORT KEY      block until KEY has an element; print the reply
 *   ref_wake push PORT KEY N    print CLOCK_REALTIME in microseconds, then
 *                               RPUSH N elements to KEY (the time is taken
 *                               after connecting, right before the send)
 *
 * Redis on 127.0.0.1. Exit 0, or 2 on any error.
 */
#include <stdlib.h>
#include <time.h>

static const char ref_name[] = "ref_wake";

#include "ref_io.h"

/* append one RESP bulk string to buf at *len */
static void bulk(char *buf, size_t cap, size_t *len, const char *s)
{
	int n = snprintf(buf + *len, cap - *len, "$%zu\r\n%s\r\n", strlen(s), s);

	if (n < 0 || (size_t)n >= cap - *len) {
		fprintf(stderr, "%s: the command does not fit in %zu bytes\n", ref_name, cap);
		exit(2);
	}
	*len += (size_t)n;
}

static int wait_for(int fd, const char *key)
{
	char buf[4096];
	size_t len = snprintf(buf, sizeof(buf), "*3\r\n");

	bulk(buf, sizeof(buf), &len, "BLPOP");
	bulk(buf, sizeof(buf), &len, key);
	bulk(buf, sizeof(buf), &len, "0");
	if (write_all(fd, buf, len) < 0)
		return 2;
	ssize_t r;
	while ((r = read(fd, buf, sizeof(buf))) < 0 && errno == EINTR)
		;
	if (r <= 0 || buf[0] != '*' || write_all(STDOUT_FILENO, buf, (size_t)r) < 0)
		return 2;
	return 0;
}

static int push(int fd, const char *key, int n)
{
	static char buf[1 << 16];
	size_t len = snprintf(buf, sizeof(buf), "*%d\r\n", n + 2);
	struct timespec ts;
	char num[16];

	bulk(buf, sizeof(buf), &len, "RPUSH");
	bulk(buf, sizeof(buf), &len, key);
	for (int i = 1; i <= n; i++) {
		snprintf(num, sizeof(num), "%d", i);
		bulk(buf, sizeof(buf), &len, num);
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	printf("%lld\n", (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
	fflush(stdout);
	if (write_all(fd, buf, len) < 0 || read(fd, buf, sizeof(buf)) <= 0 || buf[0] != ':')
		return 2;
	return 0;
}

int main(int argc, char **argv)
{
	int wait = argc == 4 && strcmp(argv[1], "wait") == 0;
	int n = argc == 5 && strcmp(argv[1], "push") == 0 ? atoi(argv[4]) : 0;

	if (!wait && (n < 1 || n > 1000)) {
		fprintf(stderr,
			"usage: ref_wake wait PORT KEY | ref_wake push PORT KEY N (N 1 to 1000)\n");
		return 2;
	}
	int fd = connect_to("127.0.0.1", atoi(argv[2]));
	if (fd < 0)
		return 2;
	return wait ? wait_for(fd, argv[3]) : push(fd, argv[3], n);
}
