/* ref_get: the reference for a fresh hit, as a minimal C program would do
 * it with hiredis: connect, one GET, write the value to stdout, exit.
 *
 *   ref_get HOST PORT KEY
 *
 * Exit 0 when the key holds a string, 1 when it is missing, 2 on an error.
 * hiredis reads the whole bulk reply into memory before handing it over
 * (and the reader's buffer holds it too), so a large value costs about
 * twice its size in RSS: that is the point of comparison for the large rows.
 */
#include <stdio.h>
#include <stdlib.h>

#include <hiredis/hiredis.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: ref_get HOST PORT KEY\n");
		return 2;
	}
	redisContext *c = redisConnect(argv[1], atoi(argv[2]));
	if (!c || c->err) {
		fprintf(stderr, "ref_get: connect: %s\n", c ? c->errstr : "out of memory");
		return 2;
	}
	redisReply *r = redisCommand(c, "GET %s", argv[3]);
	if (!r) {
		fprintf(stderr, "ref_get: GET: %s\n", c->errstr);
		return 2;
	}
	int rc = 0;
	if (r->type == REDIS_REPLY_STRING) {
		if (fwrite(r->str, 1, r->len, stdout) != r->len || fflush(stdout) != 0)
			rc = 2;
	} else if (r->type == REDIS_REPLY_NIL) {
		rc = 1;
	} else {
		fprintf(stderr, "ref_get: unexpected reply type %d\n", r->type);
		rc = 2;
	}
	/* no freeReplyObject/redisFree: exit does it, as a tool in a hurry would */
	return rc;
}
