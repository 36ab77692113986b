#!/usr/bin/env bats
# The documentation: the man page is clean mdoc and documents every option of
# --help (and no other), the bash, zsh and fish completions parse and know
# every long option, the first word completes to a subcommand, and the
# README repeats the man page's examples. Needs no store.

bats_require_minimum_version 1.5.0

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
CACHEFENCE_BIN=${CACHEFENCE_BIN:-$ROOT/build/cachefence}
MAN=$ROOT/man/cachefence.1
BASH_COMPLETION=$ROOT/completions/cachefence.bash
ZSH_COMPLETION=$ROOT/completions/_cachefence
FISH_COMPLETION=$ROOT/completions/cachefence.fish

# skip unless command $1 exists; $2 names the Debian package
need() {
	command -v "$1" >/dev/null 2>&1 || skip "$1 is not installed (apt-get install ${2:-$1})"
}

# the long options --help lists, one per line, without the dashes
help_options() {
	"$CACHEFENCE_BIN" --help | grep -o -- '--[a-z][a-z-]*' | sed 's/^--//' | sort -u
}

# the man page as text, one long line per paragraph (no line breaks inside
# an option name)
man_text() {
	mandoc -Tascii -Owidth=1000 "$MAN" | col -b
}

# the completions bash offers for the words given (the last is the word
# being completed), one per line
bash_complete() {
	bash -c '
		source "$1" || exit 1
		shift
		COMP_WORDS=("$@")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMPREPLY=()
		_cachefence || exit 1
		printf "%s\n" "${COMPREPLY[@]}"
	' bash "$BASH_COMPLETION" "$@"
}

setup_file() {
	[[ -x $CACHEFENCE_BIN ]] || {
		echo "no cachefence binary at $CACHEFENCE_BIN (build it, or set CACHEFENCE_BIN)" >&2
		return 1
	}
}

@test "--help lists long options to check (the list below is not empty)" {
	run help_options
	[[ $status -eq 0 ]]
	# a sample of each group: global, run, subcommands
	for o in url ttl stale-if-error scope-file prometheus match; do
		grep -qx -- "$o" <<<"$output"
	done
}

# --- the man page ----------------------------------------------------------------

@test "every C file of the tree is laid out as .clang-format says" {
	command -v clang-format >/dev/null || { echo "clang-format not found (Debian package clang-format)" >&2; return 1; }
	cd "$BATS_TEST_DIRNAME/.."
	mapfile -t files < <(find src tests fuzz bench -name '*.[ch]' | sort)
	((${#files[@]} > 50)) || { echo "only ${#files[@]} C files found" >&2; return 1; }
	clang-format --style=file --dry-run --Werror "${files[@]}"
}

@test "the man page is clean under mandoc -Tlint -W warning" {
	need mandoc
	run mandoc -Tlint -W warning "$MAN"
	echo "$output"
	[[ $status -eq 0 ]]
	[[ -z $output ]]
}

@test "the man page's ACL SETUSER line is the one the acl store runs with (tests/lib/acl_rules)" {
	need mandoc
	want=$(<"$ROOT/tests/lib/acl_rules")
	[[ $want == "ACL SETUSER cf "* ]]
	man_text | sed 's/^[[:space:]]*//' | grep -qxF -- "$want" || {
		echo "the man page has no line: $want; its ACL SETUSER lines:" >&2
		man_text | grep 'ACL SETUSER cf on' >&2
		false
	}
	# and says what each of its commands is for
	for cmd in $(tr ' ' '\n' <<<"$want" | sed -n 's/^+//p'); do
		man_text | grep -qE -- "^[[:space:]]*([A-Z|]+, )*${cmd^^}(,|[[:space:]]|$)" ||
			{ echo "the man page does not say what ${cmd^^} is for" >&2; false; }
	done
	# and the acl store runs the suites that run as a user
	for suite in core freshness ops faults acl; do
		grep -qE "^  '$suite' : \[.*'acl'" "$ROOT/tests/meson.build" ||
			{ echo "$suite does not run on the acl store" >&2; false; }
	done
}

@test "every long option of --help appears in the man page" {
	need mandoc
	text=$(man_text)
	missing=()
	for o in $(help_options); do
		grep -qE -- "(^|[^a-z-])--$o([^a-z-]|$)" <<<"$text" || missing+=("--$o")
	done
	echo "missing from man/cachefence.1: ${missing[*]}"
	[[ ${#missing[@]} -eq 0 ]]
}

@test "the man page documents no long option that --help lacks" {
	opts=$(help_options)
	extra=()
	# "Fl \-name", but not the family "Fl \-scope\-*"
	for o in $(grep -oP 'Fl \\-\K[a-z][a-z-]*(?![a-z-]|\\)' "$MAN" | sort -u); do
		grep -qx -- "$o" <<<"$opts" || extra+=("--$o")
	done
	echo "in the man page but not in --help: ${extra[*]}"
	[[ ${#extra[@]} -eq 0 ]]
}

@test "the man page has the sections a reader looks for" {
	need mandoc
	text=$(man_text)
	for s in NAME SYNOPSIS DESCRIPTION OPTIONS 'THE THREE WINDOWS' STORES 'REDIS LAYOUT' \
		STATISTICS ENVIRONMENT 'EXIT STATUS' EXAMPLES 'SEE ALSO'; do
		grep -qx -- "$s" <<<"$text" || { echo "no section $s"; return 1; }
	done
	for v in CACHEFENCE_URL REDIS_URL CACHEFENCE_PASSWORD CACHEFENCE_NAMESPACE XDG_CACHE_HOME \
		HOME TMPDIR; do
		grep -q -- "$v" <<<"$text" || { echo "no $v"; return 1; }
	done
}

# --- the completions ---------------------------------------------------------------

@test "every long option of --help appears in the bash completion" {
	missing=()
	for o in $(help_options); do
		grep -qE -- "(^|[^a-z-])--$o([^a-z-]|$)" "$BASH_COMPLETION" || missing+=("--$o")
	done
	echo "missing from completions/cachefence.bash: ${missing[*]}"
	[[ ${#missing[@]} -eq 0 ]]
}

@test "every long option of --help appears in the zsh completion" {
	missing=()
	for o in $(help_options); do
		grep -qE -- "(^|[^a-z-])--$o([^a-z-]|$)" "$ZSH_COMPLETION" || missing+=("--$o")
	done
	echo "missing from completions/_cachefence: ${missing[*]}"
	[[ ${#missing[@]} -eq 0 ]]
}

@test "every long option of --help appears in the fish completion" {
	missing=()
	for o in $(help_options); do
		grep -qE -- "-l $o([^a-z-]|$)" "$FISH_COMPLETION" || missing+=("--$o")
	done
	echo "missing from completions/cachefence.fish: ${missing[*]}"
	[[ ${#missing[@]} -eq 0 ]]
}

@test "bash -n accepts the bash completion" {
	run bash -n "$BASH_COMPLETION"
	echo "$output"
	[[ $status -eq 0 ]]
}

@test "zsh -n accepts the zsh completion" {
	need zsh
	run zsh -n "$ZSH_COMPLETION"
	echo "$output"
	[[ $status -eq 0 ]]
}

@test "fish -n accepts the fish completion" {
	need fish
	run fish -n "$FISH_COMPLETION"
	echo "$output"
	[[ $status -eq 0 ]]
}

@test "bash completion of 'cachefence in' offers inspect and invalidate" {
	run bash_complete cachefence in
	echo "$output"
	[[ $status -eq 0 ]]
	[[ $(sort <<<"$output" | tr '\n' ' ') == "inspect invalidate " ]]
}

@test "bash completion offers every subcommand as the first word, also after global options" {
	run bash_complete cachefence -u file:///tmp/x ''
	echo "$output"
	[[ $status -eq 0 ]]
	[[ $(sort <<<"$output" | tr '\n' ' ') == "get inspect invalidate key list ping run stats " ]]
}

@test "bash completion offers no subcommand after a run option: the next word is COMMAND" {
	run bash_complete cachefence -t 1m ins
	echo "$output"
	[[ $status -eq 0 ]]
	! grep -qx inspect <<<"$output"
}

@test "bash completion offers each subcommand's own options" {
	run bash_complete cachefence stats --
	[[ $status -eq 0 ]]
	for o in --json --prometheus --reset --url; do grep -qx -- "$o" <<<"$output"; done
	! grep -qx -- --ttl <<<"$output"
	run bash_complete cachefence invalidate --
	for o in --match --tag; do grep -qx -- "$o" <<<"$output"; done
	run bash_complete cachefence run --cache-
	[[ $(sort <<<"$output" | tr '\n' ' ') == "--cache-failures --cache-stderr " ]]
}

@test "bash completion completes files for --scope-file and commands after --" {
	dir=$BATS_TEST_TMPDIR/scope
	mkdir -p "$dir"
	touch "$dir/app.conf"
	run bash_complete cachefence --scope-file "$dir/app"
	[[ $output == "$dir/app.conf" ]]
	run bash_complete cachefence -t 1m -- bas
	grep -qx bash <<<"$output"
}

@test "fish completion of 'cachefence in' offers inspect and invalidate" {
	need fish
	run fish -c 'source $argv[1]; complete -C"cachefence in"' "$FISH_COMPLETION"
	echo "$output"
	[[ $status -eq 0 ]]
	[[ $(cut -f1 <<<"$output" | sort | tr '\n' ' ') == "inspect invalidate " ]]
}

# --- the README --------------------------------------------------------------------

@test "the README repeats the man page's example command lines" {
	need mandoc
	missing=()
	while IFS= read -r line; do
		grep -qF -- "$line" "$ROOT/README.md" || missing+=("$line")
	done < <(man_text | sed -n '/^EXAMPLES$/,/^SEE ALSO$/p' | sed -n 's/^ *\(cachefence .*\)$/\1/p')
	printf 'not in README.md: %s\n' "${missing[@]}"
	[[ ${#missing[@]} -eq 0 ]]
}

# install the build into a scratch DESTDIR with PREFIX; prints the DESTDIR
install_to() {
	local prefix=$1 dir=$BATS_TEST_TMPDIR/build-$RANDOM dest=$BATS_TEST_TMPDIR/dest-$RANDOM
	meson setup "$dir" "$ROOT" --prefix="$prefix" >/dev/null 2>&1 || return 1
	meson install -C "$dir" --destdir "$dest" --quiet >/dev/null 2>&1 || return 1
	echo "$dest"
}

# the directory, once installed, of the one file under DEST/*/share whose
# name is NAME
installed_dir() {
	local dest=$1 name=$2 f
	f=$(find "$dest" -type f -path '*/share/*' -name "$name")
	[[ -n $f && $(wc -l <<<"$f") == 1 ]] || { echo "installed $name: '$f'" >&2; return 1; }
	f=${f#"$dest"}
	echo "${f%/*}"
}

@test "installed completions land where each shell looks, with prefix /usr/local and with /usr" {
	need meson
	need zsh
	need fish
	local prefix dest d
	for prefix in /usr/local /usr; do
		dest=$(install_to "$prefix")
		# zsh: a directory of its default $fpath
		d=$(installed_dir "$dest" _cachefence)
		zsh -fc 'print -l $fpath' | grep -qx -- "$d" ||
			{ echo "prefix $prefix: zsh does not search $d" >&2; return 1; }
		# fish: a directory of its completion path, with no XDG_DATA_DIRS set
		d=$(installed_dir "$dest" cachefence.fish)
		env -u XDG_DATA_DIRS fish -c 'string join \n $fish_complete_path' | grep -qx -- "$d" ||
			{ echo "prefix $prefix: fish does not search $d" >&2; return 1; }
		# bash-completion loads completions/NAME from each of $XDG_DATA_DIRS,
		# which defaults to /usr/local/share:/usr/share
		d=$(installed_dir "$dest" cachefence)
		[[ $d == /usr/local/share/bash-completion/completions ||
			$d == /usr/share/bash-completion/completions ]] ||
			{ echo "prefix $prefix: bash-completion does not search $d" >&2; return 1; }
	done
}

@test "bash and fish complete get, inspect and invalidate with the keys of the store the line names" {
	need fish
	local store=$BATS_TEST_TMPDIR/store other=$BATS_TEST_TMPDIR/other k
	export CACHEFENCE_URL=file://$store
	for k in alpha beta; do
		"$CACHEFENCE_BIN" -t 1m -k "$k" -- true
	done
	"$CACHEFENCE_BIN" -u "file://$other" -t 1m -k gamma -- true
	# the completions run the cachefence they complete: this build's
	PATH=$(dirname "$CACHEFENCE_BIN"):$PATH
	run bash_complete cachefence get ''
	[[ $(sort <<<"$output" | tr '\n' ' ') == "alpha beta " ]]
	run bash_complete cachefence inspect b
	[[ $output == beta ]]
	run bash_complete cachefence invalidate alpha ''
	[[ $(sort <<<"$output" | tr '\n' ' ') == "alpha beta " ]]
	run bash_complete cachefence -u "file://$other" get ''
	[[ $output == gamma ]]
	run fish -c 'source $argv[1]; complete -C"cachefence inspect "' "$FISH_COMPLETION"
	[[ $(cut -f1 <<<"$output" | sort | tr '\n' ' ') == "alpha beta " ]]
	run fish -c 'source $argv[1]; complete -C"cachefence -u $argv[2] get "' "$FISH_COMPLETION" "file://$other"
	[[ $(cut -f1 <<<"$output") == gamma ]]
}

@test "bash and fish complete --tag with the tags of the store the line names" {
	need fish
	local store=$BATS_TEST_TMPDIR/store other=$BATS_TEST_TMPDIR/other
	export CACHEFENCE_URL=file://$store
	"$CACHEFENCE_BIN" -t 1m -k a --tag reports --tag users -- true
	"$CACHEFENCE_BIN" -u "file://$other" -t 1m -k b --tag feed -- true
	PATH=$(dirname "$CACHEFENCE_BIN"):$PATH
	run bash_complete cachefence invalidate --tag ''
	[[ $(sort <<<"$output" | tr '\n' ' ') == "reports users " ]]
	run bash_complete cachefence -t 1m --tag u
	[[ $output == users ]]
	run bash_complete cachefence run --tag=r
	[[ $output == reports ]]
	run bash_complete cachefence -u "file://$other" invalidate --tag ''
	[[ $output == feed ]]
	run bash_complete cachefence list --ta
	[[ $output == --tags ]]
	run fish -c 'source $argv[1]; complete -C"cachefence invalidate --tag "' "$FISH_COMPLETION"
	[[ $(cut -f1 <<<"$output" | sort | tr '\n' ' ') == "reports users " ]]
	run fish -c 'source $argv[1]; complete -C"cachefence -u $argv[2] -t 1m --tag "' "$FISH_COMPLETION" "file://$other"
	[[ $(cut -f1 <<<"$output") == feed ]]
}
