/* resp: RESP2 reading and writing through callbacks, in bounded memory;
 * every pull and push carries the exchange's deadline. */
#include "resp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

int64_t resp_budget_ms(uint64_t n)
{
	return (int64_t)(n / RESP_MIN_RATE * 1000 +
			 ((n % RESP_MIN_RATE) * 1000 + RESP_MIN_RATE - 1) / RESP_MIN_RATE);
}

void resp_reader_init(struct resp_reader *r, resp_pull_fn pull, void *ctx)
{
	r->pull = pull;
	r->ctx = ctx;
	r->deadline = 0;
	r->pos = r->len = 0;
}

/* move what is left to the start of the buffer */
static void compact(struct resp_reader *r)
{
	if (r->pos > 0) {
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->len -= r->pos;
		r->pos = 0;
	}
}

size_t resp_feed(struct resp_reader *r, const void *p, size_t n)
{
	compact(r);
	if (n > sizeof(r->buf) - r->len)
		n = sizeof(r->buf) - r->len;
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	return n;
}

void resp_reader_extend(struct resp_reader *r, uint64_t n)
{
	if (r->deadline)
		r->deadline += resp_budget_ms(n);
}

/* read more bytes into the buffer, after moving what is left to its start */
static int fill(struct resp_reader *r)
{
	compact(r);
	ssize_t n = r->pull ? r->pull(r->ctx, r->buf + r->len, sizeof(r->buf) - r->len, r->deadline)
			    : 0;
	if (n > 0) {
		r->len += n;
		return 0;
	}
	if (n == 0)
		err_set("the connection closed in the middle of a reply");
	return -1;
}

int resp_header(struct resp_reader *r, char *type, char *line, size_t max)
{
	for (;;) {
		char *cr = memchr(r->buf + r->pos, '\r', r->len - r->pos);
		if (cr && cr + 1 < r->buf + r->len) {
			if (cr[1] != '\n') {
				err_set("a reply line is not ended by CRLF");
				return -1;
			}
			size_t n = cr - (r->buf + r->pos);
			bool error = n > 0 && r->buf[r->pos] == '-';
			if (n == 0 || (n - 1 >= max && !error)) {
				err_set("a reply line is empty or too long");
				return -1;
			}
			size_t keep = n - 1 < max ? n - 1 : max - 1;
			if (memchr(r->buf + r->pos, '\0', keep + 1)) {
				err_set("a reply line holds a NUL byte");
				return -1;
			}
			*type = r->buf[r->pos];
			memcpy(line, r->buf + r->pos + 1, keep);
			line[keep] = '\0';
			r->pos += n + 2;
			return 0;
		}
		bool error = r->len > r->pos && r->buf[r->pos] == '-';
		if ((r->len - r->pos >= max + 3 && !error) || r->len - r->pos == sizeof(r->buf)) {
			err_set("a reply line is too long");
			return -1;
		}
		if (fill(r) < 0)
			return -1;
	}
}

/* a signed decimal with nothing else around it */
static int parse_signed(const char *s, int64_t *out)
{
	int neg = *s == '-';
	int64_t v = 0;

	if (neg)
		s++;
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*s - '0');
	}
	*out = neg ? -v : v;
	return 0;
}

int resp_number(struct resp_reader *r, char want, int64_t *n)
{
	char type, line[512];

	if (resp_header(r, &type, line, sizeof(line)) < 0)
		return -1;
	if (type == '-') {
		err_set("%s", line);
		return -2;
	}
	if (type != want || parse_signed(line, n) < 0) {
		err_set("unexpected reply: %c%.40s", type, line);
		return -1;
	}
	return 0;
}

int resp_read(struct resp_reader *r, void *p, size_t n)
{
	char *out = p;

	while (n > 0) {
		if (r->pos == r->len && fill(r) < 0)
			return -1;
		size_t take = r->len - r->pos < n ? r->len - r->pos : n;
		memcpy(out, r->buf + r->pos, take);
		r->pos += take;
		out += take;
		n -= take;
	}
	return 0;
}

int resp_crlf(struct resp_reader *r)
{
	char crlf[2];

	if (resp_read(r, crlf, 2) < 0)
		return -1;
	if (crlf[0] != '\r' || crlf[1] != '\n') {
		err_set("a bulk string is not ended by CRLF");
		return -1;
	}
	return 0;
}

int resp_stream(struct resp_reader *r, uint64_t n, resp_piece_fn fn, void *ctx)
{
	while (n > 0) {
		if (r->pos == r->len) {
			r->pos = r->len = 0;
			if (fill(r) < 0)
				return -1;
		}
		size_t take = r->len - r->pos < n ? r->len - r->pos : (size_t)n;
		fn(ctx, r->buf + r->pos, take);
		r->pos += take;
		n -= take;
	}
	return 0;
}

/* the writer: one buffer, pushed when full and at the end */
struct writer {
	resp_push_fn push;
	void *ctx;
	int64_t deadline;
	size_t len;
	char buf[65536];
};

static int write_before(struct writer *w, const char *p, size_t n)
{
	return w->push(w->ctx, p, n, w->deadline);
}

static int flush(struct writer *w)
{
	if (w->len && write_before(w, w->buf, w->len) < 0)
		return -1;
	w->len = 0;
	return 0;
}

static int put(struct writer *w, const void *p, size_t n)
{
	if (w->len + n > sizeof(w->buf) && flush(w) < 0)
		return -1;
	if (n > sizeof(w->buf))
		return write_before(w, p, n);
	memcpy(w->buf + w->len, p, n);
	w->len += n;
	return 0;
}

/* copy len bytes of a file argument into the command, a piece at a time */
static int put_file(struct writer *w, int fd, uint64_t len)
{
	while (len > 0) {
		if (w->len == sizeof(w->buf) && flush(w) < 0)
			return -1;
		size_t room = sizeof(w->buf) - w->len;
		size_t want = len < room ? (size_t)len : room;
		ssize_t n = read_full(fd, w->buf + w->len, want);
		if (n < 0 || (size_t)n < want) {
			err_set("cannot read a value to send: %s",
				n < 0 ? strerror(errno) : "it is shorter than said");
			return -1;
		}
		w->len += n;
		len -= n;
	}
	return 0;
}

/* the decimal digits of v */
static int digits(uint64_t v)
{
	int d = 1;

	while (v >= 10) {
		v /= 10;
		d++;
	}
	return d;
}

uint64_t resp_size(const struct resp_arg *args, int n)
{
	uint64_t size = 3 + digits((uint64_t)n);

	for (int i = 0; i < n; i++)
		size += 5 + digits(args[i].len) + args[i].len;
	return size;
}

/* a header line: type, then v in decimal, then CRLF, into head (at least 24
 * bytes); its length. Not snprintf: a hit's command has a dozen of them,
 * and snprintf cost more than the rest of the command's making. */
static size_t header(char *head, char type, uint64_t v)
{
	size_t len = 1 + dec_u64(head + 1, v);

	head[0] = type;
	head[len++] = '\r';
	head[len++] = '\n';
	return len;
}

int resp_send(resp_push_fn push, void *ctx, const struct resp_arg *args, int n, int64_t deadline)
{
	static struct writer w; /* 64 KiB: kept off the stack */
	char head[32];

	w.push = push;
	w.ctx = ctx;
	w.deadline = deadline;
	w.len = 0;
	if (put(&w, head, header(head, '*', (uint64_t)n)) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (put(&w, head, header(head, '$', args[i].len)) < 0)
			return -1;
		if (args[i].fd >= 0 ? put_file(&w, args[i].fd, args[i].len) < 0
				    : put(&w, args[i].p, args[i].len) < 0)
			return -1;
		if (put(&w, "\r\n", 2) < 0)
			return -1;
	}
	return flush(&w);
}
