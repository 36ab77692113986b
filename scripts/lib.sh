# shellcheck shell=bash
# scripts/lib.sh: what scripts/test and scripts/demo share. Source it from
# the repository root.

# say something on stderr, prefixed with the calling script's name
note() {
	echo "${0##*/}: $*" >&2
}

# install, with apt-get, the Debian packages whose commands or headers are
# missing; does nothing when all are there
ensure_deps() {
	local missing=() pair cmd pkg
	for pair in meson:meson ninja:ninja-build pkg-config:pkg-config gcc:gcc \
		redis-server:redis-server redis-cli:redis-tools bats:bats jq:jq \
		python3:python3 flock:util-linux timeout:coreutils faketime:faketime \
		mandoc:mandoc zsh:zsh fish:fish; do
		cmd=${pair%%:*} pkg=${pair#*:}
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
	done
	[[ -f /usr/include/hiredis/hiredis.h ]] || missing+=(libhiredis-dev)
	[[ -f /usr/include/nettle/sha2.h ]] || missing+=(nettle-dev)
	((${#missing[@]})) || return 0

	note "installing ${missing[*]}"
	local sudo=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 || {
			note "not root and no sudo: run apt-get install ${missing[*]}"
			return 1
		}
		sudo=(sudo)
	fi
	command -v apt-get >/dev/null 2>&1 || {
		note "no apt-get: install ${missing[*]} (or your system's names for them)"
		return 1
	}
	# The redis-server package would start the system's redis on port 6379;
	# policy-rc.d tells the maintainer scripts not to start any service.
	local policy=/usr/sbin/policy-rc.d own_policy=
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		own_policy=1
	fi
	local rc=0
	"${sudo[@]}" apt-get update -qq &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends "${missing[@]}" >/dev/null || rc=$?
	[[ -n $own_policy ]] && "${sudo[@]}" rm -f "$policy"
	((rc == 0)) || note "apt-get failed (status $rc)"
	return "$rc"
}

# configure (once) and build DIR, with any extra meson setup options
build() {
	local dir=$1
	shift
	if [[ ! -f $dir/build.ninja ]]; then
		meson setup "$dir" --werror "$@" >/dev/null || {
			note "meson setup $dir failed; see $dir/meson-logs/meson-log.txt"
			return 1
		}
	fi
	local out
	out=$(ninja -C "$dir" 2>&1) || {
		printf '%s\n' "$out" >&2
		note "build in $dir failed"
		return 1
	}
}

# a free TCP port on 127.0.0.1 in 20000-60000 (never 6379)
free_port() {
	local port _
	for _ in $(seq 100); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
		(exec 9<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return 0; }
	done
	return 1
}
