# secret_env_file: write an env file atomically from the content on stdin, keeping the host's secrets.
# $1: the env file  $2: owner  $3: group  $4: mode  $5: "derive" to rebuild VAPID_PUBLIC_KEY
# stdin: the new content; a "@@KEEP@@KEY" line takes the current line of KEY from the old file, a
# "@@DERIVE@@KEY" line the public key rebuilt here from the old file's VAPID_PRIVATE_KEY.
# Written with umask 077 next to the target, then renamed: never readable by others, not even briefly.
set -e
umask 077
path=$1 user=$2 group=$3 mode=$4 derive=$5
# A name of its own (two runs at once never share one), removed if anything below fails.
tmp=$(mktemp "$path.pyinfra-tmp.XXXXXX")
trap 'rm -f "$tmp"' EXIT
trap 'exit 1' HUP INT TERM PIPE
old=/dev/null
if [ -f "$path" ]; then old=$path; fi
derived=""
if [ "$derive" = derive ]; then
    command -v openssl >/dev/null || {
        echo 'pyinfra-mastodon: openssl is needed to rebuild VAPID_PUBLIC_KEY from VAPID_PRIVATE_KEY' >&2
        exit 4
    }
    # The raw 32-byte scalar goes into an RFC 5915 ECPrivateKey (prime256v1) for openssl, which
    # prints the public point; its last 65 bytes (0x04 || X || Y), URL-safe base64 with padding,
    # are what the webpush gem writes. The private key only passes through a pipe.
    key() { sed -n 's/^VAPID_PRIVATE_KEY=//p' "$old" | tr -d "'" | tr -- '-_' '+/'; }
    n=$(key | base64 -d | wc -c)
    derived=$({
        printf '\060\061\002\001\001\004\040'
        if [ "$n" -eq 31 ]; then printf '\000'; fi
        key | base64 -d
        printf '\240\012\006\010\052\206\110\316\075\003\001\007'
    } | openssl ec -inform DER -pubout -outform DER -conv_form uncompressed 2>/dev/null \
      | tail -c 65 | base64 -w0 | tr -- '+/' '-_')
    if [ ${#derived} -ne 88 ]; then
        echo 'pyinfra-mastodon: could not rebuild VAPID_PUBLIC_KEY from VAPID_PRIVATE_KEY' >&2
        exit 4
    fi
fi
# awk reads the current file in BEGIN, then the new content from stdin. A kept key missing from the
# current file (it changed between the fact and the write) is an error (exit 3).
awk -v current="$old" -v derived="$derived" '
    BEGIN {
        while ((getline line < current) > 0)
            if (match(line, /^[A-Za-z_][A-Za-z0-9_]*=/)) old[substr(line, 1, RLENGTH - 1)] = line
    }
    /^@@KEEP@@/ { k = substr($0, 9); if (!(k in old)) { missing = k; exit 3 } print old[k]; next }
    /^@@DERIVE@@/ { print substr($0, 11) "=" derived; next }
    { print }
    END {
        if (missing != "")
            print "pyinfra-mastodon: " missing " vanished from the env file during the run" > "/dev/stderr"
    }
' > "$tmp"
chown "$user:$group" "$tmp"
chmod "$mode" "$tmp"
mv -f "$tmp" "$path"
