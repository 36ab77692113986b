/* tls_api: see tls_api.h */
#define TLS_API_NO_REDIRECT
#include "tls_api.h"

#include <dlfcn.h>
#include <stdbool.h>

#include "util.h"

/* OpenSSL 3's soname: the ABI conn.c is compiled against */
#define LIBSSL "libssl.so.3"

struct tls_api tls_api;

int tls_api_load(void)
{
	static bool loaded;

	if (loaded)
		return 0;
	/* libssl's dependency, libcrypto, is searched too */
	void *lib = dlopen(LIBSSL, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		err_set("rediss:// needs OpenSSL 3, which cannot be loaded (%s): install libssl3",
			dlerror());
		return -1;
	}
#define TLS_API_LOOKUP(f)                                                                          \
	if (!(*(void **)&tls_api.f = dlsym(lib, #f))) {                                            \
		err_set("rediss:// needs OpenSSL 3: " LIBSSL " lacks %s", #f);                     \
		dlclose(lib);                                                                      \
		return -1;                                                                         \
	}
	TLS_API_FUNCTIONS(TLS_API_LOOKUP)
#undef TLS_API_LOOKUP
	loaded = true; /* never closed: OpenSSL keeps state until exit */
	return 0;
}
