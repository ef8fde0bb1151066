# Restore the backup $2 of $1 (a name: restore_backup resolves "latest"): the env files, the
# owner's password file, the database, the media; the services stop first, start again last, healthy.
# $1: the backups' folder  $2: a backup's name  $3: the instance's folder
# $4: the owner's password file  $5: owner:group of the env files  $6: seconds to wait for health
# $7: "restore" the env files, or "keep" them (the db host of an instance on several hosts, whose env
# files the deploy writes with the backup's Mastodon secrets: the backup's would undo its cluster's)
# $8...: the data services (started alone while the database is restored)
set -eu
umask 077
root=$1 name=$2 base=$3 password_file=$4 owner=$5 timeout=$6 env=$7
shift 7
dir=$root/$name
if [ ! -f "$dir/manifest" ]; then
    echo "no backup '$name' in $root (a folder with a manifest): nothing restored" >&2
    exit 1
fi
# Every file the manifest names, with its checksum, before anything is touched.
if ! (cd "$dir" && awk '$1 == "file" { print $4 "  " $2 }' manifest | sha256sum --check --quiet --strict); then
    echo "backup $dir does not match the checksums of its manifest: nothing restored" >&2
    exit 1
fi
echo "restoring backup $name"
compose stop
put() {
    new=$(mktemp "$2.restore.XXXXXX")
    cat "$1" > "$new"
    chown "$3" "$new"
    chmod 600 "$new"
    mv "$new" "$2"
}
if [ "$env" = restore ]; then
    put "$dir/env.production" "$base/.env.production" "$owner"
    put "$dir/env.db" "$base/.env.db" "$owner"
fi
if [ -f "$dir/admin-password" ]; then put "$dir/admin-password" "$password_file" root:root; fi
compose up --detach --wait --wait-timeout "$timeout" "$@"
# A new, empty database, then the dump: nothing of the replaced one (a table made since) survives.
admin() { compose exec -T db psql -X -q -v ON_ERROR_STOP=1 -U "$MASTODON_DB_USER" -d template1 -c "$1"; }
admin "DROP DATABASE IF EXISTS \"$MASTODON_DB_NAME\" WITH (FORCE)"
admin "CREATE DATABASE \"$MASTODON_DB_NAME\""
compose exec -T db pg_restore --exit-on-error -U "$MASTODON_DB_USER" -d "$MASTODON_DB_NAME" < "$dir/database.dump"
tar -C "$base" -xf "$dir/media.tar"
compose up --detach --wait --wait-timeout "$timeout" --remove-orphans
echo "backup $name restored"
