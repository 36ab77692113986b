/* acl: what a Redis ACL refusal says is missing, in the words an operator
 * acts on (the rule to add). Pure: the server's text in, a phrase out. */
#ifndef CACHEFENCE_ACL_H
#define CACHEFENCE_ACL_H

#include <stdbool.h>
#include <stddef.h>

/* When text is the server refusing the ACL user a command, keys or
 * channels, write to out (size bytes) what is missing, as "the ACL user
 * cannot run EVALSHA (add +evalsha to it)", "... cannot access keys NS:*
 * (add ~NS:* to it)" or "... cannot use channels NS:* (add &NS:* to it)";
 * src (len bytes; NULL when no script was running) is the source of the
 * script that was refused. false, out untouched, when text is no refusal. */
bool acl_denial(const char *text, const char *ns, const char *src, size_t len, char *out,
		size_t size);

#endif
