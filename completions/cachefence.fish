# fish completion for cachefence(1)
#
# Completes the subcommand as the first word, the options of the global
# group plus those of the subcommand in use (run's when there is none), value
# hints for options that take one, and COMMAND with its own completion after
# "--" or after the first word that is not an option (for run and key; for
# invalidate, after "--" only).
#
# Install as cachefence.fish in a directory of $fish_complete_path (for
# example /usr/share/fish/vendor_completions.d).

# Where the cursor is, found by walking the words before it the way
# cachefence parses them. Prints one word:
#   first        no operand yet, no run option: a subcommand may come
#   run          run's options (after a run option, "run" or "--")
#   command N    COMMAND starts at word N (1-based, cachefence is word 1)
#   key          key's options, or COMMAND's first word
#   invalidate-command  after invalidate's "--": COMMAND's first word
#   SUBCOMMAND   get, inspect, list, invalidate, stats or ping
function __cachefence_where
    set -l words (commandline -opc)
    set -l subcommands run get inspect list invalidate stats ping key
    set -l sub
    set -l saw_run 0
    set -l dashdash 0
    set -l skip 0
    for i in (seq 2 (count $words))
        set -l w $words[$i]
        if test $skip -eq 1
            set skip 0
            continue
        end
        if test $dashdash -eq 1; or not string match -qr -- '^-.' $w
            if test -z "$sub" -a $dashdash -eq 0 -a $saw_run -eq 0; and contains -- $w $subcommands
                set sub $w
                if not contains -- $sub run key invalidate
                    echo $sub
                    return
                end
                continue
            end
            # invalidate's operands are keys, until "--"
            if test "$sub" = invalidate -a $dashdash -eq 0
                echo invalidate
                return
            end
            printf "%s\n" command $i
            return
        end
        switch $w
            case --
                set dashdash 1
            case --key --ttl --stale --stale-if-error --beta --lock-lease --wait --timeout \
                --failure-ttl --max-size --compress-min --scope-env --scope-file --tag
                set saw_run 1
                set skip 1
            case --url --namespace --redis-timeout --tls-ca-file --tls-ca-dir --tls-cert --tls-key \
                --tls-server-name --sign-key-file --sign-old-key-file
                set skip 1
            case '--key=*' '--ttl=*' '--stale=*' '--stale-if-error=*' '--beta=*' '--lock-lease=*' \
                '--wait=*' '--timeout=*' '--failure-ttl=*' '--max-size=*' '--compress-min=*' '--scope-env=*' \
                '--scope-file=*' '--tag=*' --refresh --warm --cache-failures --cache-stderr --compress --scope-cwd \
                --stdin --fail-closed
                set saw_run 1
            case '--*'
            case '*'
                # a bundle of short options: the first that takes a value
                # takes the rest of the word, or else the next word
                for c in (string split '' -- (string sub -s 2 -- $w))
                    if contains -- $c k t s w
                        set saw_run 1
                    end
                    if contains -- $c k t s w u n
                        if test (string sub -s -1 -- $w) = $c
                            set skip 1
                        end
                        break
                    end
                end
        end
    end
    if test "$sub" = invalidate -a $dashdash -eq 1
        echo invalidate-command
    else if test "$sub" = invalidate -o "$sub" = key
        echo $sub
    else if test -n "$sub" -o $saw_run -eq 1 -o $dashdash -eq 1
        echo run
    else
        echo first
    end
end

# true when the cursor is in one of the given places ("first", "run", a
# subcommand); "options" means first or run
function __cachefence_in
    set -l where (__cachefence_where)
    for place in $argv
        if test "$place" = options
            contains -- $where[1] first run; and return 0
        else if test "$place" = $where[1]
            return 0
        end
    end
    return 1
end

# complete COMMAND and its arguments as a command line of their own
function __cachefence_complete_command
    set -l where (__cachefence_where)
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    if test "$where[1]" = command
        set words $words[$where[2]..-1]
    else if string match -q -- '-*' $cur
        return # an option of run, not COMMAND
    else
        set words
    end
    complete -C"$(string join ' ' -- (string escape -- $words) $cur)"
end

complete -c cachefence -f

# the first word: a subcommand
complete -c cachefence -n '__cachefence_in first' -a run -d 'run COMMAND through the cache (the default)'
complete -c cachefence -n '__cachefence_in first' -a get -d 'print the stored output of a key'
complete -c cachefence -n '__cachefence_in first' -a inspect -d 'describe a key: state, age, TTL, lock'
complete -c cachefence -n '__cachefence_in first' -a list -d 'list the entries of the namespace'
complete -c cachefence -n '__cachefence_in first' -a invalidate -d 'delete entries by key, glob or tag'
complete -c cachefence -n '__cachefence_in first' -a stats -d 'print the counters'
complete -c cachefence -n '__cachefence_in first' -a ping -d 'check the store end to end'
complete -c cachefence -n '__cachefence_in first' -a key -d 'print the key a command line derives'

# COMMAND, after a run option, "run" or "--", and key's and invalidate's
complete -c cachefence -n '__cachefence_in run command key invalidate-command' -a '(__cachefence_complete_command)'

# global options, everywhere before COMMAND
set -l g 'not __cachefence_in command'
set -l durations '250ms 10s 30s 1m 5m 15m 1h 1d'
complete -c cachefence -n $g -s u -l url -x -a 'redis:// rediss:// unix:/// file:///' -d 'store URL'
complete -c cachefence -n $g -s n -l namespace -x -d 'prefix of every key'
complete -c cachefence -n $g -l redis-timeout -x -a $durations -d 'connect and per-command timeout'
complete -c cachefence -n $g -l tls-ca-file -r -F -d 'rediss://: trust the CA certificates in a PEM file'
complete -c cachefence -n $g -l tls-ca-dir -x -a '(__fish_complete_directories)' -d 'rediss://: trust the hashed CA certificates in a directory'
complete -c cachefence -n $g -l tls-cert -r -F -d 'rediss://: present this client certificate'
complete -c cachefence -n $g -l tls-key -r -F -d "the client certificate's private key"
complete -c cachefence -n $g -l tls-server-name -x -a '(__fish_print_hostnames)' -d 'the name sent (SNI) and verified on the certificate'
complete -c cachefence -n $g -l tls-insecure -d "do not verify the server's certificate (warns)"
complete -c cachefence -n $g -l sign-key-file -r -F -d 'sign entries with this key, serve only signed ones'
complete -c cachefence -n $g -l sign-old-key-file -r -F -d 'also accept entries signed with this older key'
complete -c cachefence -n $g -s v -l verbose -d 'one line per decision on stderr'
complete -c cachefence -n $g -s q -l quiet -d 'no warnings'
complete -c cachefence -n $g -s h -l help -d 'print the usage summary'
complete -c cachefence -n $g -s V -l version -d 'print the version'

# run options
set -l r '__cachefence_in options'
complete -c cachefence -n '__cachefence_in options key' -s k -l key -x -d 'cache key (default: derived from COMMAND)'
complete -c cachefence -n $r -s t -l ttl -x -a $durations -d 'how long a result is fresh (required)'
complete -c cachefence -n $r -s s -l stale -x -a $durations -d 'serve the old result while one process refreshes'
complete -c cachefence -n $r -l stale-if-error -x -a $durations -d 'serve the old result when a refresh fails'
complete -c cachefence -n $r -l beta -x -a '0 0.5 1.0 2.0' -d 'XFetch early refresh factor (0: off)'
complete -c cachefence -n $r -l lock-lease -x -a $durations -d 'lease of the single-flight lock'
complete -c cachefence -n $r -s w -l wait -x -a $durations -d "longest wait for another run's result"
complete -c cachefence -n $r -l wait-then-run -d 'when --wait expires, run COMMAND uncached instead of exit 124'
complete -c cachefence -n $r -l timeout -x -a $durations -d 'kill COMMAND after this long'
complete -c cachefence -n $r -l refresh -d 'run COMMAND now under the lock and replace the entry'
complete -c cachefence -n $r -l warm -d 'print nothing; refresh in the background unless fresh'
complete -c cachefence -n $r -l cache-failures -d 'also store results with a non-zero status'
complete -c cachefence -n $r -l failure-ttl -x -a $durations -d 'TTL of a stored failure'
complete -c cachefence -n $r -l cache-stderr -d 'also store stderr and replay it on a hit'
complete -c cachefence -n $r -l max-size -x -a '512k 1M 16M 64M 1G' -d 'do not store outputs larger than this'
complete -c cachefence -n $r -l compress -d 'store outputs compressed (zstd)'
complete -c cachefence -n $r -l compress-min -x -a '4k 64k 1M' -d 'with --compress, store smaller outputs as they are'
# the scopes: also key's, and invalidate's before "--"
set -l sc '__cachefence_in options key invalidate'
complete -c cachefence -n $sc -l scope-cwd -d 'put the working directory into the derived key'
complete -c cachefence -n $sc -l scope-env -x -a '(set -xn)' -d 'put a variable into the derived key'
complete -c cachefence -n $sc -l scope-file -r -F -d "put a file's size and mtime into the derived key"
complete -c cachefence -n $sc -l stdin -d 'hash standard input into the key and feed it to COMMAND'
complete -c cachefence -n $r -l tag -x -a '(__cachefence_keys --tags)' -d 'file the entry under a tag'
complete -c cachefence -n $r -l fail-closed -d 'exit 125 instead of running uncached when the store is unreachable'

# subcommand options
# the keys in the store the command line names (its -u and -n, else the
# environment), as `cachefence list` prints them; quick or nothing
function __cachefence_keys
    set -l words (commandline -opc)
    set -l store
    for i in (seq 2 (count $words))
        switch $words[$i]
            case -u --url -n --namespace --tls-ca-file --tls-ca-dir --tls-cert --tls-key \
                --tls-server-name
                set -a store $words[$i] $words[(math $i + 1)]
            case '--url=*' '--namespace=*' '--tls-*'
                set -a store $words[$i]
        end
    end
    timeout 2 $words[1] $store --redis-timeout 300ms list $argv 2>/dev/null | cut -f1
end
complete -c cachefence -n '__cachefence_in get inspect invalidate' -f -a '(__cachefence_keys)'

complete -c cachefence -n '__cachefence_in get' -l fresh -d 'only a fresh entry counts'
complete -c cachefence -n '__cachefence_in list' -l tags -d 'the tags entries are filed under, not the keys'
complete -c cachefence -n '__cachefence_in inspect list stats' -l json -d 'JSON output'
complete -c cachefence -n '__cachefence_in invalidate' -l match -x -d 'every entry whose key matches a glob'
complete -c cachefence -n '__cachefence_in invalidate' -l tag -x -a '(__cachefence_keys --tags)' -d 'every entry filed under a tag'
complete -c cachefence -n '__cachefence_in stats' -l prometheus -d 'Prometheus text exposition format'
complete -c cachefence -n '__cachefence_in stats' -l reset -d 'zero the counters after printing them'
