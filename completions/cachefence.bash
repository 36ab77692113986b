# bash completion for cachefence(1)
#
# Completes the subcommand as the first word, the options of the global
# group plus those of the subcommand in use (run's when there is none), value
# hints for options that take one, the keys in the store (from `cachefence
# list`, with the line's -u, -n and --tls-* options) for get, inspect and invalidate, the
# tags in the store (from `cachefence list --tags`) for --tag, and
# COMMAND with its own completion after "--" or after the first word that is
# not an option (for run and key; for invalidate, after "--" only).
#
# Install as /usr/share/bash-completion/completions/cachefence, or source it.
# It needs nothing from the bash-completion package, but uses its
# _command_offset for COMMAND's arguments when that is loaded.

_cachefence_subcommands='run get inspect list invalidate stats ping key'

_cachefence_global_opts='--url --namespace --redis-timeout --tls-ca-file --tls-ca-dir --tls-cert
	--tls-key --tls-server-name --tls-insecure --sign-key-file --sign-old-key-file --verbose --quiet
	--help --version'
_cachefence_run_opts='--key --ttl --stale --stale-if-error --beta --lock-lease --wait
	--wait-then-run --timeout --refresh --warm --cache-failures --failure-ttl --cache-stderr --max-size
	--compress --compress-min --scope-cwd --scope-env --scope-file --stdin --tag --fail-closed'
# what shapes a derived key: run's, and key's and invalidate's before "--"
_cachefence_scope_opts='--scope-cwd --scope-env --scope-file --stdin'

# the long options of one subcommand, beyond the global ones
_cachefence_sub_opts() {
	case $1 in
	run) echo "$_cachefence_run_opts" ;;
	get) echo --fresh ;;
	inspect) echo --json ;;
	list) echo --json --tags ;;
	invalidate) echo --match --tag "$_cachefence_scope_opts" ;;
	key) echo --key "$_cachefence_scope_opts" ;;
	stats) echo --json --prometheus --reset ;;
	esac
}

# does option $1 (long, or one short letter as -X) take a value?
_cachefence_takes_value() {
	case $1 in
	-u | --url | -n | --namespace | --redis-timeout | -k | --key | -t | --ttl | -s | --stale | \
		--stale-if-error | --beta | --lock-lease | -w | --wait | --timeout | --failure-ttl | \
		--max-size | --compress-min | --scope-env | --scope-file | --tag | --match | --tls-ca-file | --tls-ca-dir | \
		--tls-cert | --tls-key | --tls-server-name | --sign-key-file | --sign-old-key-file)
		return 0
		;;
	esac
	return 1
}

# is word $1 (a long option, or a bundle of short ones) one of run's, so a
# later word is COMMAND, never a subcommand?
_cachefence_is_run_opt() {
	local w=$1 j
	if [[ $w == --* ]]; then
		[[ " ${_cachefence_run_opts//[$'\n\t']/ } " == *" ${w%%=*} "* ]]
		return
	fi
	for ((j = 1; j < ${#w}; j++)); do
		case ${w:j:1} in
		k | t | s | w) return 0 ;;
		u | n) return 1 ;; # the rest of the word is a value
		esac
	done
	return 1
}

# value hints for option $1, completing the word $2
_cachefence_values() {
	local opt=$1 cur=$2
	case $opt in
	-u | --url)
		COMPREPLY=($(compgen -W 'redis:// rediss:// unix:/// file:///' -- "$cur"))
		compopt -o nospace 2>/dev/null
		;;
	--scope-file | --tls-ca-file | --tls-cert | --tls-key | --sign-key-file | --sign-old-key-file)
		compopt -o filenames 2>/dev/null
		COMPREPLY=($(compgen -f -- "$cur"))
		;;
	--tls-ca-dir)
		compopt -o filenames 2>/dev/null
		COMPREPLY=($(compgen -d -- "$cur"))
		;;
	--scope-env)
		COMPREPLY=($(compgen -e -- "$cur"))
		;;
	-t | --ttl | -s | --stale | --stale-if-error | -w | --wait | --timeout | --failure-ttl | \
		--lock-lease | --redis-timeout)
		COMPREPLY=($(compgen -W '250ms 10s 30s 1m 5m 15m 1h 1d' -- "$cur"))
		;;
	--max-size | --compress-min)
		COMPREPLY=($(compgen -W '512k 1M 16M 64M 1G' -- "$cur"))
		;;
	--beta)
		COMPREPLY=($(compgen -W '0 0.5 1.0 2.0' -- "$cur"))
		;;
	*)
		COMPREPLY=() # a key, namespace, tag or glob: free text
		;;
	esac
}

# the keys in the store the command line names (its -u, -n and environment),
# one per line as `list` prints them; quick or nothing, never a hang
_cachefence_keys() {
	local cur=$1
	shift
	COMPREPLY=($(compgen -W "$(timeout 2 "${COMP_WORDS[0]}" "$@" --redis-timeout 300ms list \
		2>/dev/null | cut -f1)" -- "$cur"))
}

# the tags of that store, as `list --tags` prints them
_cachefence_tags() {
	local cur=$1
	shift
	COMPREPLY=($(compgen -W "$(timeout 2 "${COMP_WORDS[0]}" "$@" --redis-timeout 300ms list \
		--tags 2>/dev/null)" -- "$cur"))
}

_cachefence() {
	local cur=${COMP_WORDS[COMP_CWORD]} last=$COMP_CWORD
	local sub= command_at=0 saw_run=0 dashdash=0 operands=0 value_for= i j w c
	local store_opts=() # -u and -n as given, for looking up keys
	COMPREPLY=()

	# bash splits "--opt=value" at '=' (COMP_WORDBREAKS): right after the
	# '=' the current word is "=" itself
	if [[ $cur == = ]] && ((COMP_CWORD >= 2)) &&
		_cachefence_takes_value "${COMP_WORDS[COMP_CWORD - 1]}"; then
		value_for=${COMP_WORDS[COMP_CWORD - 1]}
		cur=
		last=$((COMP_CWORD - 1))
	fi

	# Walk the words before the cursor the way cachefence parses them:
	# options, then a subcommand or COMMAND; options of a subcommand end at
	# its first operand.
	for ((i = 1; i < last && !value_for; i++)); do
		w=${COMP_WORDS[i]}
		if ((dashdash || operands)) || [[ $w != -* || $w == - ]]; then
			if [[ -z $sub ]] && ((!dashdash && !saw_run)) &&
				[[ " $_cachefence_subcommands " == *" $w "* ]]; then
				sub=$w
				continue
			fi
			# run's and key's first operand is COMMAND; invalidate's
			# is after "--"
			if [[ -z $sub || $sub == run || $sub == key ]] ||
				{ [[ $sub == invalidate ]] && ((dashdash)); }; then
				command_at=$i
				break
			fi
			operands=1 # a key or a glob: what follows is no option
			continue
		fi
		if [[ $w == -- ]]; then
			dashdash=1
			[[ -n $sub && $sub != run && $sub != key && $sub != invalidate ]] && operands=1
			continue
		fi
		if [[ -z $sub || $sub == run ]] && _cachefence_is_run_opt "$w"; then
			saw_run=1
		fi
		if [[ $w == --* ]]; then
			[[ $w == --tls-insecure ]] && store_opts+=("$w")
			_cachefence_takes_value "$w" || continue
			[[ ${COMP_WORDS[i + 1]} == = ]] && ((i++))
			if ((i + 1 == last)); then
				value_for=$w
			else
				((i++))
				[[ $w == --url || $w == --namespace || $w == --tls-* ]] &&
					store_opts+=("$w" "${COMP_WORDS[i]}")
			fi
			continue
		fi
		case $w in
		-u | -n) ((i + 1 < last)) && store_opts+=("$w" "${COMP_WORDS[i + 1]}") ;;
		esac
		# a bundle of short options: the first that takes a value takes the
		# rest of the word, or else the next word
		for ((j = 1; j < ${#w}; j++)); do
			c=${w:j:1}
			_cachefence_takes_value "-$c" || continue
			if ((j == ${#w} - 1)); then
				if ((i + 1 == last)); then
					value_for=-$c
				else
					((i++))
				fi
			fi
			break
		done
	done

	if [[ $value_for == --tag ]]; then
		_cachefence_tags "$cur" "${store_opts[@]}"
		return 0
	fi
	if [[ -n $value_for ]]; then
		_cachefence_values "$value_for" "$cur"
		return 0
	fi

	# COMMAND and its arguments: complete them as a command line of their own
	if ((command_at)); then
		if declare -F _command_offset >/dev/null; then
			_command_offset "$command_at"
		elif ((command_at == COMP_CWORD)); then
			COMPREPLY=($(compgen -c -- "$cur"))
		else
			compopt -o filenames 2>/dev/null
			COMPREPLY=($(compgen -f -- "$cur"))
		fi
		return 0
	fi
	if ((dashdash)) && [[ -z $sub || $sub == run || $sub == key || $sub == invalidate ]]; then
		COMPREPLY=($(compgen -c -- "$cur"))
		return 0
	fi
	# a key of the store: get's and inspect's one, invalidate's each
	local want_key=0
	case $sub in
	get | inspect) ((operands)) || want_key=1 ;;
	invalidate) want_key=1 ;;
	esac
	if ((want_key)) && [[ $cur != -* || $operands == 1 ]]; then
		_cachefence_keys "$cur" "${store_opts[@]}"
		return 0
	fi
	((operands)) && return 0

	if [[ $cur == --tag=* ]]; then
		_cachefence_tags "${cur#*=}" "${store_opts[@]}"
		return 0
	fi
	if [[ $cur == --*=* ]]; then
		_cachefence_values "${cur%%=*}" "${cur#*=}"
		return 0
	fi
	if [[ $cur == -* ]]; then
		local opts="$_cachefence_global_opts $(_cachefence_sub_opts "${sub:-run}")"
		[[ -z $sub || $sub == run || $sub == key || $sub == invalidate ]] && opts+=" --"
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
		return 0
	fi

	# the first word: a subcommand (COMMAND goes after options or "--")
	if [[ -z $sub ]] && ((!saw_run)); then
		COMPREPLY=($(compgen -W "$_cachefence_subcommands" -- "$cur"))
		return 0
	fi
	if [[ -z $sub || $sub == run || $sub == key ]]; then
		COMPREPLY=($(compgen -c -- "$cur"))
	fi
	return 0
}

complete -F _cachefence cachefence
