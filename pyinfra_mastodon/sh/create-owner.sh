# owner_account: create the owner account ($4 = create), or give a new password to one whose first
# password was lost ($4 = reset); tootctl prints the password on stdout, which goes into a root-only
# file, never into the deploy's output.
# $1: username  $2: email  $3: the password file  $4: create or reset
set -e
umask 077
if [ "$4" = reset ]; then
    out=$(compose run --rm -T web bin/tootctl accounts modify "$1" --reset-password --confirm --approve)
else
    out=$(compose run --rm -T web bin/tootctl accounts create "$1" --email "$2" --confirmed --role Owner --approve)
fi
pw=$(printf '%s\n' "$out" | sed -n 's/^New password: //p')
if [ -z "$pw" ]; then
    echo "tootctl did not report a password" >&2
    exit 1
fi
tmp=$(mktemp "$3.tmp.XXXXXX")
trap 'rm -f "$tmp"' EXIT
printf '%s\n' "$pw" > "$tmp"
chmod 600 "$tmp"
mv -f "$tmp" "$3"
if [ "$4" = reset ]; then
    echo "owner account $1 had lost its first password: a new one is in $3"
else
    echo "owner account $1 created; password in $3"
fi
