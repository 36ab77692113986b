/* Unit tests of the RESP reader and writer, fed bytes directly and through
 * connections (conn.c) on real descriptors: replies that arrive one byte at
 * a time, a peer that closes mid-value, commands whose values come from
 * files, deadlines, and bytes handed from hiredis's reader to the stream. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "conn.h"
#include "resp.h"
#include "tap.h"
#include "util.h"

/* a peer process writing data to the returned descriptor in pieces of
 * `piece` bytes, one every `usec` microseconds, then closing it; the caller
 * reaps it with waitpid */
static int peer_every(const char *data, size_t len, size_t piece, int usec, pid_t *pid)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	*pid = fork();
	if (*pid == 0) {
		close(sv[0]);
		for (size_t off = 0; off < len; off += piece) {
			size_t n = len - off < piece ? len - off : piece;
			if (write_all(sv[1], data + off, n) < 0)
				_exit(1);
			usleep(usec);
		}
		_exit(0);
	}
	close(sv[1]);
	return sv[0];
}

static int peer(const char *data, size_t len, size_t piece, pid_t *pid)
{
	return peer_every(data, len, piece, 200, pid);
}

struct collected {
	struct buf b;
	int pieces;
};

static void collect(void *ctx, const char *p, size_t n)
{
	struct collected *c = ctx;

	buf_append(&c->b, p, n);
	c->pieces++;
}

static void test_split_reads(void)
{
	static const char reply[] = "*3\r\n$4\r\nwait\r\n:1234\r\n$5\r\nhello\r\n";
	char word[16];
	int64_t n, v;
	pid_t pid;

	struct conn *conn = conn_of_fd(peer(reply, sizeof(reply) - 1, 1, &pid));
	struct resp_reader *r = conn_reader(conn, 0);
	ok(resp_number(r, '*', &n) == 0 && n == 3,
	   "an array header read one byte at a time parses");
	ok(resp_number(r, '$', &n) == 0 && n == 4 && resp_read(r, word, 4) == 0 &&
		   memcmp(word, "wait", 4) == 0 && resp_crlf(r) == 0,
	   "a bulk string split across reads is read whole");
	ok(resp_number(r, ':', &v) == 0 && v == 1234, "an integer split across reads parses");
	struct collected c = {0};
	ok(resp_number(r, '$', &n) == 0 && resp_stream(r, n, collect, &c) == 0 && c.b.len == 5 &&
		   memcmp(c.b.data, "hello", 5) == 0 && resp_crlf(r) == 0,
	   "a streamed value arrives in pieces and in order");
	conn_free(conn);
	waitpid(pid, NULL, 0);
	buf_free(&c.b);
}

static void test_cut_mid_value(void)
{
	static const char reply[] = "$10\r\nhalf";
	struct collected c = {0};
	int64_t n;
	pid_t pid;

	struct conn *conn = conn_of_fd(peer(reply, sizeof(reply) - 1, 3, &pid));
	struct resp_reader *r = conn_reader(conn, 0);
	ok(resp_number(r, '$', &n) == 0 && n == 10,
	   "the header of a value that will be cut parses");
	ok(resp_stream(r, n, collect, &c) < 0, "a peer that closes mid-value is an error");
	ok(c.b.len == 4, "the bytes before the cut were handed over, and no more");
	ok(strstr(err_msg(), "closed") != NULL, "the error says the connection closed");
	ok(conn->err == CONN_ERR_EOF && conn_reader(conn, 0) == NULL,
	   "the connection is failed, and gives no reader after");
	conn_free(conn);
	waitpid(pid, NULL, 0);
	buf_free(&c.b);
}

static void test_bad_replies(void)
{
	static const char *const bad[] = {
		"*1\0junk\r\n", "-NOSCRIPT No matching script\r\n", ":12x\r\n", "*1\n", "+OK\r\n",
	};
	static const size_t lens[] = {9, 30, 6, 3, 5};
	static const int want[] = {-1, -2, -1, -1, -1};
	static const char *const why[] = {
		"a header holding a NUL byte is rejected",
		"an error reply comes back as -2 with its text",
		"a number with junk is rejected",
		"a line not ended by CRLF is rejected",
		"a reply of the wrong type is rejected",
	};
	struct resp_reader *r = xmalloc(sizeof(*r));

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t n;
		resp_reader_init(r, NULL, NULL);
		ok(resp_feed(r, bad[i], lens[i]) == lens[i] &&
			   resp_number(r, bad[i][0] == ':' ? ':' : '*', &n) == want[i],
		   "%s", why[i]);
	}
	ok(strstr(err_msg(), "unexpected") != NULL || err_msg()[0], "a failure leaves a message");
	free(r);
}

static void test_send_file_argument(void)
{
	char path[] = "/tmp/cf-resp-XXXXXX";
	int fd = mkstemp(path);
	int p[2];
	char got[256];

	unlink(path);
	if (fd < 0 || write_all(fd, "a\0b\r\nc", 6) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
	    pipe(p) < 0)
		abort();
	struct resp_arg args[3] = {
		{.p = "HSET", .len = 4, .fd = -1},
		{.p = "k", .len = 1, .fd = -1},
		{.len = 6, .fd = fd},
	};
	struct conn *w = conn_of_fd(p[1]);
	ok(resp_send(conn_push, w, args, 3, 0) == 0, "a command with a file argument is sent");
	conn_free(w);
	ssize_t n = read_full(p[0], got, sizeof(got));
	static const char want[] = "*3\r\n$4\r\nHSET\r\n$1\r\nk\r\n$6\r\na\0b\r\nc\r\n";
	ok(n == (ssize_t)sizeof(want) - 1 && memcmp(got, want, n) == 0,
	   "the file's bytes go out as one bulk string, NUL and CRLF included");
	ok(resp_size(args, 3) == sizeof(want) - 1, "resp_size counts the bytes resp_send writes");
	close(p[0]);
	args[2].len = 100;
	lseek(fd, 0, SEEK_SET);
	w = conn_of_fd(open("/dev/null", O_WRONLY));
	ok(resp_send(conn_push, w, args, 3, 0) < 0,
	   "a file shorter than its argument's length is an error");
	conn_free(w);
	close(fd);
}

/* a reply that trickles in, a byte every 20 ms, fails at the exchange's
 * deadline however often a byte comes; and a peer that reads nothing stops a
 * send at its deadline */
static void test_deadlines(void)
{
	static char reply[400];
	char type, line[512];
	pid_t pid;

	memset(reply, 'x', sizeof(reply));
	reply[0] = '+';
	memcpy(reply + sizeof(reply) - 2, "\r\n", 2);
	struct conn *conn = conn_of_fd(peer_every(reply, sizeof(reply), 1, 20000, &pid));
	struct resp_reader *r = conn_reader(conn, monotonic_ms() + 300);
	int64_t start = monotonic_ms();
	int rc = resp_header(r, &type, line, sizeof(line));
	int64_t took = monotonic_ms() - start;
	ok(rc < 0 && strstr(err_msg(), "--redis-timeout") && took >= 250 && took < 2000,
	   "a trickling reply fails at the deadline (%lld ms: %s)", (long long)took, err_msg());
	conn_free(conn);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	static char big[8 << 20];
	struct resp_arg args[1] = {{.p = big, .len = sizeof(big), .fd = -1}};
	conn = conn_of_fd(sv[0]);
	start = monotonic_ms();
	rc = resp_send(conn_push, conn, args, 1, monotonic_ms() + 300);
	took = monotonic_ms() - start;
	ok(rc < 0 && strstr(err_msg(), "--redis-timeout") && took >= 250 && took < 2000,
	   "a send nobody reads fails at the deadline (%lld ms: %s)", (long long)took, err_msg());
	ok(conn->err == CONN_ERR_TIMEOUT, "the connection keeps the timeout as its error");
	conn_free(conn);
	close(sv[1]);

	ok(resp_budget_ms(0) == 0 && resp_budget_ms(1) == 1 &&
		   resp_budget_ms(RESP_MIN_RATE) == 1000 &&
		   resp_budget_ms((uint64_t)64 * RESP_MIN_RATE + 1) == 64001,
	   "a value's time budget is its size at RESP_MIN_RATE, rounded up");
}

/* bytes fed in pieces, with no I/O at all: the fuzzer's way in */
static void test_fed_bytes(void)
{
	static const char reply[] = "*2\r\n:7\r\n$3\r\nabc\r\n";
	struct resp_reader *r = xmalloc(sizeof(*r));
	int64_t n, v;
	char word[4];

	resp_reader_init(r, NULL, NULL);
	ok(resp_feed(r, reply, 9) == 9 && resp_number(r, '*', &n) == 0 && n == 2 &&
		   resp_number(r, ':', &v) == 0 && v == 7,
	   "a reader with no source reads what it was fed");
	ok(resp_number(r, '$', &n) < 0 && strstr(err_msg(), "closed"),
	   "and meets the end of what it was fed as a closed connection");
	resp_reader_init(r, NULL, NULL);
	resp_feed(r, reply, 13);
	resp_feed(r, reply + 13, sizeof(reply) - 1 - 13);
	ok(resp_number(r, '*', &n) == 0 && resp_number(r, ':', &v) == 0 &&
		   resp_number(r, '$', &n) == 0 && n == 3 && resp_read(r, word, 3) == 0 &&
		   memcmp(word, "abc", 3) == 0 && resp_crlf(r) == 0 && r->pos == r->len,
	   "pieces fed one after another read as one stream");
	free(r);
}

/* hiredis reads ahead: a reply it holds past the one it returned is handed
 * to the stream reader, not lost */
static void test_reader_handoff(void)
{
	static const char replies[] = "+OK\r\n$5\r\nhello\r\n+after\r\n";
	int sv[2];
	int64_t n;
	char word[8];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 ||
	    write_all(sv[1], replies, sizeof(replies) - 1) < 0)
		abort();
	struct conn *c = conn_of_fd(sv[0]);
	struct redisReply *first = conn_reply(c, monotonic_ms() + 1000);
	ok(first && first->type == REDIS_REPLY_STATUS && strcmp(first->str, "OK") == 0,
	   "hiredis parses the first reply");
	freeReplyObject(first);
	struct resp_reader *r = conn_reader(c, monotonic_ms() + 1000);
	ok(r && resp_number(r, '$', &n) == 0 && n == 5 && resp_read(r, word, 5) == 0 &&
		   memcmp(word, "hello", 5) == 0 && resp_crlf(r) == 0,
	   "the stream reader reads the bytes hiredis had read ahead");
	/* the stream reader read ahead in turn: hiredis gets those bytes */
	struct redisReply *last = conn_reply(c, monotonic_ms() + 1000);
	ok(last && last->type == REDIS_REPLY_STATUS && strcmp(last->str, "after") == 0,
	   "and hiredis the bytes the stream reader had read ahead");
	freeReplyObject(last);
	conn_free(c);
	close(sv[1]);
}

static void test_decimal(void)
{
	char out[24];
	const struct {
		uint64_t v;
		const char *want;
	} cases[] = {{0, "0"},
		     {9, "9"},
		     {10, "10"},
		     {1048576, "1048576"},
		     {UINT64_MAX, "18446744073709551615"}};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = dec_u64(out, cases[i].v);
		ok(n == strlen(cases[i].want) && strcmp(out, cases[i].want) == 0,
		   "dec_u64 writes %s", cases[i].want);
	}
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_split_reads();
	test_cut_mid_value();
	test_bad_replies();
	test_send_file_argument();
	test_deadlines();
	test_fed_bytes();
	test_reader_handoff();
	test_decimal();
	return done_testing();
}
