#!/bin/sh
# naive.sh: cache-aside in shell, the way it is usually written today:
# redis-cli GET; on a miss run the command, then redis-cli SET with a TTL.
# No lock (every caller of a cold key runs the command), text only (command
# substitution drops trailing newlines and NULs), and a non-empty value is
# the only test of a hit.
#
#   naive.sh PORT KEY TTL_SECONDS COMMAND [ARG]...
port=$1 key=$2 ttl=$3
shift 3
v=$(redis-cli -h 127.0.0.1 -p "$port" GET "$key")
if [ -n "$v" ]; then
	printf '%s\n' "$v"
	exit 0
fi
v=$("$@") || exit
redis-cli -h 127.0.0.1 -p "$port" SET "$key" "$v" EX "$ttl" >/dev/null
printf '%s\n' "$v"
