/* acl: naming the permission an ACL user lacks. At the top level the
 * server names a refused command ("NOPERM this user has no permissions to
 * run the 'evalsha' command"); a command that a script runs it names only
 * by the script's line ("... can't run this command or subcommand script:
 * SHA, on @user_script:53."). That line is in the source this binary sent,
 * so the command is read from it: each redis.call('NAME' and
 * redis.pcall('NAME' on the line. */
#include "acl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the longest command name kept, subcommand included ("client|list") */
#define NAME_MAX_LEN 32

/* whether text is an ACL refusal: a command's NOPERM, or a script's (Redis
 * 7.0 "The user executing the script can't ...", 7.2 "ACL failure in
 * script") */
static bool is_denial(const char *text)
{
	return strncmp(text, "NOPERM", 6) == 0 || strstr(text, "executing the script can't") ||
	       strstr(text, "ACL failure in script");
}

/* the command named in quotes after "run the '", lower-case as the server
 * writes it, into name; false when text names none */
static bool quoted_command(const char *text, char name[NAME_MAX_LEN])
{
	const char *p = strstr(text, "run the '");

	if (!p)
		return false;
	p += 9;
	size_t n = strcspn(p, "'");
	if (n == 0 || n >= NAME_MAX_LEN || p[n] != '\'')
		return false;
	memcpy(name, p, n);
	name[n] = '\0';
	return true;
}

/* name in upper case into upper (NAME_MAX_LEN bytes, as name) */
static void upcase(char *upper, const char *name)
{
	size_t i = 0;

	for (; name[i]; i++)
		upper[i] = (char)toupper((unsigned char)name[i]);
	upper[i] = '\0';
}

/* the start of line number line (from 1) of src, or NULL past its end */
static const char *line_start(const char *src, size_t len, long line)
{
	const char *p = src, *end = src + len;

	for (long i = 1; i < line; i++) {
		p = memchr(p, '\n', (size_t)(end - p));
		if (!p)
			return NULL;
		p++;
	}
	return p < end ? p : NULL;
}

/* the first "call('" in the len bytes at p, or NULL */
static const char *find_call(const char *p, size_t len)
{
	for (size_t i = 0; i + 6 <= len; i++)
		if (memcmp(p + i, "call('", 6) == 0)
			return p + i;
	return NULL;
}

/* the most commands one script line calls that a message names */
#define LINE_CALLS_MAX 4

/* write to cmds and rules (size bytes each) the commands that the script
 * line holding the error's "@user_script:N" calls, each once, as "TYPE or
 * HGET" and "+type +hget"; false when the line or a call on it is not found */
static bool script_line_commands(const char *text, const char *src, size_t len, char *cmds,
				 char *rules, size_t size)
{
	const char *at = strstr(text, "@user_script:");
	char names[LINE_CALLS_MAX][NAME_MAX_LEN];
	int n = 0;

	if (!src || !at)
		return false;
	long line = strtol(at + 13, NULL, 10);
	const char *p = line > 0 ? line_start(src, len, line) : NULL;
	if (!p)
		return false;
	const char *eol = memchr(p, '\n', (size_t)(src + len - p));
	size_t left = (size_t)((eol ? eol : src + len) - p);
	while (n < LINE_CALLS_MAX) {
		const char *call = find_call(p, left);
		if (!call)
			break;
		left -= (size_t)(call + 6 - p);
		p = call + 6;
		size_t k = 0;
		for (; k < left && p[k] != '\'' && k + 1 < NAME_MAX_LEN; k++)
			names[n][k] = (char)tolower((unsigned char)p[k]);
		names[n][k] = '\0';
		bool seen = k == 0;
		for (int i = 0; i < n && !seen; i++)
			seen = strcmp(names[i], names[n]) == 0;
		n += !seen;
	}
	if (n == 0)
		return false;
	size_t cu = 0, ru = 0;
	for (int i = 0; i < n; i++) {
		char upper[NAME_MAX_LEN];
		upcase(upper, names[i]);
		cu += (size_t)snprintf(cmds + cu, size - cu, "%s%s", i ? " or " : "", upper);
		ru += (size_t)snprintf(rules + ru, size - ru, "%s+%s", i ? " " : "", names[i]);
		if (cu >= size || ru >= size)
			break;
	}
	return true;
}

bool acl_denial(const char *text, const char *ns, const char *src, size_t len, char *out,
		size_t size)
{
	char name[NAME_MAX_LEN], cmds[128] = "", rules[128] = "";

	if (!is_denial(text))
		return false;
	if (quoted_command(text, name)) {
		char upper[NAME_MAX_LEN];
		upcase(upper, name);
		snprintf(out, size, "the ACL user cannot run %s (add +%s to it)", upper, name);
	} else if (strstr(text, "channel")) {
		snprintf(out, size, "the ACL user cannot use channels %s:* (add &%s:* to it)", ns,
			 ns);
	} else if (strstr(text, "key")) {
		snprintf(out, size, "the ACL user cannot access keys %s:* (add ~%s:* to it)", ns,
			 ns);
	} else if (script_line_commands(text, src, len, cmds, rules, sizeof(cmds))) {
		snprintf(out, size,
			 "the ACL user cannot run %s, which the script runs (add %s to it)", cmds,
			 rules);
	} else {
		/* a refusal in words this code does not know: the server's own */
		snprintf(out, size, "the ACL user was refused: %s", text);
	}
	return true;
}
