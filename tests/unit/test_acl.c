/* Unit tests of acl_denial: the refusals of Redis 6.2 to 7.2, at the top
 * level and inside a script, each turned into the permission to add. */
#include <stdio.h>
#include <string.h>

#include "acl.h"
#include "tap.h"

/* a script whose line 2 calls one command and line 3 two */
static const char src[] =
	"local t = redis.call('TIME')\n"
	"local v = redis.call('GET', KEYS[1])\n"
	"if redis.call('TYPE', k).ok == 'hash' and redis.pcall('HGET', k, 'f') and "
	"redis.call('TYPE', k) then end\n"
	"return v";

/* whether acl_denial(text) gives want, printing what it gave if not */
static int says(const char *text, const char *want)
{
	char out[512] = "";

	if (!acl_denial(text, "ns", src, sizeof(src) - 1, out, sizeof(out)))
		snprintf(out, sizeof(out), "(not a denial)");
	if (strcmp(out, want) == 0)
		return 1;
	printf("# got:  %s\n# want: %s\n", out, want);
	return 0;
}

int main(void)
{
	char out[64] = "untouched";

	ok(says("NOPERM this user has no permissions to run the 'evalsha' command",
		"the ACL user cannot run EVALSHA (add +evalsha to it)"),
	   "a command refused at the top level is named, with its rule (Redis 7.0)");
	ok(says("NOPERM User cf has no permissions to run the 'client|list' command",
		"the ACL user cannot run CLIENT|LIST (add +client|list to it)"),
	   "a subcommand refused is named with its rule (Redis 7.2)");
	ok(says("NOPERM this user has no permissions to access one of the keys used as arguments",
		"the ACL user cannot access keys ns:* (add ~ns:* to it)"),
	   "keys outside the user's patterns name the namespace's pattern");
	ok(says("NOPERM No permissions to access a channel",
		"the ACL user cannot use channels ns:* (add &ns:* to it)"),
	   "a channel outside the user's patterns names the namespace's pattern");
	ok(says("ERR The user executing the script can't run this command or subcommand script: "
		"1c24, on @user_script:2.",
		"the ACL user cannot run GET, which the script runs (add +get to it)"),
	   "a command refused inside a script is read from the script's line");
	ok(says("ERR The user executing the script can't run this command or subcommand script: "
		"1c24, on @user_script:3.",
		"the ACL user cannot run TYPE or HGET, which the script runs (add +type +hget to it)"),
	   "a line that calls two commands names both, each once");
	ok(says("ERR The user executing the script can't access at least one of the keys "
		"mentioned in the command script: 1c24, on @user_script:2.",
		"the ACL user cannot access keys ns:* (add ~ns:* to it)"),
	   "keys refused inside a script name the namespace's pattern");
	ok(says("ERR ACL failure in script: No permissions to run the 'time' command script: 1c24, "
		"on @user_script:1.",
		"the ACL user cannot run TIME (add +time to it)"),
	   "Redis 7.2's script refusal names the command itself");
	ok(says("ERR The user executing the script can't run this command or subcommand script: "
		"1c24, on @user_script:9.",
		"the ACL user was refused: ERR The user executing the script can't run this command "
		"or subcommand script: 1c24, on @user_script:9."),
	   "a line past the script's end keeps the server's words");
	ok(says("ERR The user executing the script can't run this command or subcommand script: "
		"1c24, on @user_script:4.",
		"the ACL user was refused: ERR The user executing the script can't run this command "
		"or subcommand script: 1c24, on @user_script:4."),
	   "a line that calls no command keeps the server's words");
	ok(!acl_denial("ERR unknown command 'evalsha'", "ns", NULL, 0, out, sizeof(out)) &&
		   strcmp(out, "untouched") == 0,
	   "an error that is no ACL refusal is left alone");
	ok(!acl_denial("READONLY You can't write against a read only replica.", "ns", NULL, 0, out,
		       sizeof(out)),
	   "a replica's READONLY is no ACL refusal");
	ok(acl_denial("NOPERM this user has no permissions to run the 'hset' command", "ns", NULL,
		      0, out, 20) &&
		   strlen(out) == 19,
	   "the phrase is cut to the buffer it is given");
	return done_testing();
}
