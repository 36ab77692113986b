# shellcheck shell=bash
# scripts/lib.sh: what scripts/test and scripts/demo share. Source it from
# the repository root.

# say something on stderr, prefixed with the calling script's name
note() {
	echo "${0##*/}: $*" >&2
}

# The Debian packages each task needs, named in full. A bare bookworm
# (debootstrap --variant=minbase) has none of them, and apt-get here never
# installs recommended packages, so nothing may arrive by chance: gcc only
# recommends libc6-dev (crt files, libc headers), `col` comes from
# bsdextrautils, pgrep and ps from procps. scripts/fresh-check proves the
# lists on such a chroot.
DEPS_BUILD=(gcc libc6-dev meson ninja-build pkg-config python3 libhiredis-dev nettle-dev libssl-dev libzstd-dev)
DEPS_DEMO=("${DEPS_BUILD[@]}" redis-server redis-tools util-linux coreutils)
DEPS_TEST=("${DEPS_DEMO[@]}" bats jq faketime mandoc bsdextrautils procps zsh fish openssl time clang-format)
DEPS_BENCH=("${DEPS_DEMO[@]}" hyperfine valgrind time openssl)
DEPS_DEB=("${DEPS_BUILD[@]}" build-essential dpkg-dev debhelper fakeroot lintian)

# the packages among PKG... that dpkg does not have installed
packages_missing() {
	local pkg
	for pkg in "$@"; do
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) == installed ]] ||
			echo "$pkg"
	done | sort -u
}

# install, with apt-get, those of the Debian packages PKG... that are not
# installed; does nothing when all are. Without dpkg (not Debian) it trusts
# that they are there under other names: the build says what it misses.
ensure_packages() {
	command -v dpkg-query >/dev/null 2>&1 || return 0
	local missing
	mapfile -t missing < <(packages_missing "$@")
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
	# The redis-server package would start the system's redis on port 6379;
	# policy-rc.d tells the maintainer scripts not to start any service.
	local policy=/usr/sbin/policy-rc.d own_policy=
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		own_policy=1
	fi
	local rc=0 apt=(apt-get -o DPkg::Lock::Timeout=300)
	"${sudo[@]}" "${apt[@]}" update -qq &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq \
			--no-install-recommends "${missing[@]}" >/dev/null || rc=$?
	[[ -n $own_policy ]] && "${sudo[@]}" rm -f "$policy"
	((rc == 0)) || note "apt-get failed (status $rc)"
	return "$rc"
}

# what scripts/test needs (a superset of the demo's and the build's)
ensure_deps() {
	ensure_packages "${DEPS_TEST[@]}"
}

# configure (once) and build DIR, with any extra meson setup options
build() {
	local dir=$1
	shift
	# reconfigure an existing build dir too: what meson found at its first
	# setup (bats, after scripts/demo installed less) may have changed since
	local again=()
	[[ -f $dir/build.ninja ]] && again=(--reconfigure)
	meson setup "${again[@]}" "$dir" --werror "$@" >/dev/null || {
		note "meson setup $dir failed; see $dir/meson-logs/meson-log.txt"
		return 1
	}
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
