/* ref_tls_get: the reference for a hit over TLS, as a minimal C program
 * would do it with OpenSSL: connect, TLS handshake, one GET in RESP, write
 * the value to stdout, exit. It streams the bulk reply's payload in reads
 * of at most 1 MiB (SSL_read hands over at most one TLS record a call),
 * never holding more than one read's worth, so it serves as both the 1 KiB
 * reference and the large-value limit over TLS (ref_raw's twin).
 *
 *   ref_tls_get HOST PORT KEY CA_FILE
 *
 * HOST is a numeric IPv4 or IPv6 address. The server's certificate is
 * verified as cachefence --tls-ca-file CA_FILE verifies it (same work):
 * TLS 1.2 or later, the CA certificates of CA_FILE only, HOST checked
 * against the certificate's IP addresses (no SNI for an address). Exit 0
 * when the value was written whole, 1 when the key is missing, 2 on any
 * error. No SSL_shutdown and no frees: exit does it, as a tool in a hurry
 * would.
 */
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

static const char ref_name[] = "ref_tls_get";

#include "ref_io.h"

#define CHUNK (1 << 20)

static char buf[CHUNK];

static int fail(const char *what)
{
	unsigned long e = ERR_peek_last_error();

	fprintf(stderr, "%s: %s: %s\n", ref_name, what,
		e ? ERR_reason_error_string(e) : strerror(errno));
	return 2;
}

/* one SSL_read of at most n bytes: > 0, or 0 on the end or an error */
static size_t tls_read(void *ssl, char *p, size_t n)
{
	int r = SSL_read(ssl, p, (int)n);

	return r > 0 ? (size_t)r : 0;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: ref_tls_get HOST PORT KEY CA_FILE\n");
		return 2;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return fail("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_load_verify_file(ctx, argv[4]) != 1)
		return fail(argv[4]);

	int fd = connect_to(argv[1], atoi(argv[2]));
	if (fd < 0)
		return 2;
	SSL *ssl = SSL_new(ctx);
	if (!ssl || !SSL_set_fd(ssl, fd) ||
	    !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), argv[1]))
		return fail("cannot start TLS");
	if (SSL_connect(ssl) != 1) {
		long v = SSL_get_verify_result(ssl);
		if (v != X509_V_OK) {
			fprintf(stderr, "%s: TLS handshake: %s\n", ref_name,
				X509_verify_cert_error_string(v));
			return 2;
		}
		return fail("TLS handshake");
	}

	/* one record: the command is small */
	size_t klen = strlen(argv[3]);
	int clen = snprintf(buf, sizeof(buf), "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n", klen, argv[3]);
	if (clen < 0 || (size_t)clen >= sizeof(buf) || SSL_write(ssl, buf, clen) != clen)
		return fail("send");

	return copy_bulk_reply(tls_read, ssl, buf, sizeof(buf));
}
