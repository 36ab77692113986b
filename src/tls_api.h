/* tls_api: OpenSSL, loaded with dlopen(3) the first time a rediss:// URL
 * needs it, so that a plain redis:// or file:// run pays nothing for TLS:
 * linked in, libcrypto's relocations cost every start more than a whole
 * hit (see meson.build). conn.c, the only file that speaks TLS, includes
 * this after OpenSSL's headers: each OpenSSL function it calls, directly or
 * through OpenSSL's macros, then goes through the table below. */
#ifndef CACHEFENCE_TLS_API_H
#define CACHEFENCE_TLS_API_H

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* every OpenSSL function conn.c calls; a new call is added here */
#define TLS_API_FUNCTIONS(X)                                                                       \
	X(ERR_clear_error)                                                                         \
	X(ERR_get_error)                                                                           \
	X(ERR_peek_last_error)                                                                     \
	X(ERR_reason_error_string)                                                                 \
	X(SSL_CIPHER_get_name)                                                                     \
	X(SSL_CTX_check_private_key)                                                               \
	X(SSL_CTX_ctrl)                                                                            \
	X(SSL_CTX_free)                                                                            \
	X(SSL_CTX_load_verify_dir)                                                                 \
	X(SSL_CTX_load_verify_file)                                                                \
	X(SSL_CTX_new)                                                                             \
	X(SSL_CTX_set_cert_cb)                                                                     \
	X(SSL_CTX_set_default_passwd_cb)                                                           \
	X(SSL_CTX_set_verify)                                                                      \
	X(SSL_CTX_use_PrivateKey_file)                                                             \
	X(SSL_CTX_use_certificate_chain_file)                                                      \
	X(SSL_connect)                                                                             \
	X(SSL_ctrl)                                                                                \
	X(SSL_free)                                                                                \
	X(SSL_get0_param)                                                                          \
	X(SSL_get_certificate)                                                                     \
	X(SSL_get_current_cipher)                                                                  \
	X(SSL_get_error)                                                                           \
	X(SSL_get_ex_data)                                                                         \
	X(SSL_get_verify_mode)                                                                     \
	X(SSL_get_verify_result)                                                                   \
	X(SSL_get_version)                                                                         \
	X(SSL_new)                                                                                 \
	X(SSL_pending)                                                                             \
	X(SSL_read)                                                                                \
	X(SSL_set1_host)                                                                           \
	X(SSL_set_ex_data)                                                                         \
	X(SSL_set_fd)                                                                              \
	X(SSL_set_hostflags)                                                                       \
	X(SSL_shutdown)                                                                            \
	X(SSL_write)                                                                               \
	X(TLS_client_method)                                                                       \
	X(X509_VERIFY_PARAM_set1_ip_asc)                                                           \
	X(X509_get_default_cert_dir)                                                               \
	X(X509_get_default_cert_dir_env)                                                           \
	X(X509_verify_cert_error_string)

#define TLS_API_POINTER(f) __typeof__(&f) f;
struct tls_api {
	TLS_API_FUNCTIONS(TLS_API_POINTER)
};
#undef TLS_API_POINTER

extern struct tls_api tls_api;

/* load libssl.so.3 and fill tls_api, once; 0, or -1 with err_set() */
int tls_api_load(void);

/* from here on, each name is its pointer (tls_api.c itself needs the names) */
#ifndef TLS_API_NO_REDIRECT
#define ERR_clear_error tls_api.ERR_clear_error
#define ERR_get_error tls_api.ERR_get_error
#define ERR_peek_last_error tls_api.ERR_peek_last_error
#define ERR_reason_error_string tls_api.ERR_reason_error_string
#define SSL_CIPHER_get_name tls_api.SSL_CIPHER_get_name
#define SSL_CTX_check_private_key tls_api.SSL_CTX_check_private_key
#define SSL_CTX_ctrl tls_api.SSL_CTX_ctrl
#define SSL_CTX_free tls_api.SSL_CTX_free
#define SSL_CTX_load_verify_dir tls_api.SSL_CTX_load_verify_dir
#define SSL_CTX_load_verify_file tls_api.SSL_CTX_load_verify_file
#define SSL_CTX_new tls_api.SSL_CTX_new
#define SSL_CTX_set_cert_cb tls_api.SSL_CTX_set_cert_cb
#define SSL_CTX_set_default_passwd_cb tls_api.SSL_CTX_set_default_passwd_cb
#define SSL_CTX_set_verify tls_api.SSL_CTX_set_verify
#define SSL_CTX_use_PrivateKey_file tls_api.SSL_CTX_use_PrivateKey_file
#define SSL_CTX_use_certificate_chain_file tls_api.SSL_CTX_use_certificate_chain_file
#define SSL_connect tls_api.SSL_connect
#define SSL_ctrl tls_api.SSL_ctrl
#define SSL_free tls_api.SSL_free
#define SSL_get0_param tls_api.SSL_get0_param
#define SSL_get_certificate tls_api.SSL_get_certificate
#define SSL_get_current_cipher tls_api.SSL_get_current_cipher
#define SSL_get_error tls_api.SSL_get_error
#define SSL_get_ex_data tls_api.SSL_get_ex_data
#define SSL_get_verify_mode tls_api.SSL_get_verify_mode
#define SSL_get_verify_result tls_api.SSL_get_verify_result
#define SSL_get_version tls_api.SSL_get_version
#define SSL_new tls_api.SSL_new
#define SSL_pending tls_api.SSL_pending
#define SSL_read tls_api.SSL_read
#define SSL_set1_host tls_api.SSL_set1_host
#define SSL_set_ex_data tls_api.SSL_set_ex_data
#define SSL_set_fd tls_api.SSL_set_fd
#define SSL_set_hostflags tls_api.SSL_set_hostflags
#define SSL_shutdown tls_api.SSL_shutdown
#define SSL_write tls_api.SSL_write
#define TLS_client_method tls_api.TLS_client_method
#define X509_VERIFY_PARAM_set1_ip_asc tls_api.X509_VERIFY_PARAM_set1_ip_asc
#define X509_get_default_cert_dir tls_api.X509_get_default_cert_dir
#define X509_get_default_cert_dir_env tls_api.X509_get_default_cert_dir_env
#define X509_verify_cert_error_string tls_api.X509_verify_cert_error_string
#endif

#endif
