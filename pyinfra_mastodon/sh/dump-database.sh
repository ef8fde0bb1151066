# Dump every database to a root-only file in $1 before migrations change it; refused when the
# filesystem lacks the databases' size plus $2 MiB (mastodon_min_free_mb): a dump filling the disk
# would break the instance half-way through an upgrade.
set -e
umask 077
mkdir -p "$1"
chmod 700 "$1"
db_bytes=$(compose exec -T db psql -X -v ON_ERROR_STOP=1 -U "$MASTODON_DB_USER" -d "$MASTODON_DB_NAME" \
    -tAc 'select sum(pg_database_size(datname))::bigint from pg_database')
free=$(df -Pk "$1" | awk 'NR == 2 { print int($4 / 1024) }')
if [ "$free" -lt $((db_bytes / 1048576 + $2)) ]; then
    echo "not enough free space in $1 for the dump before the upgrade: $free MiB free," \
        "$((db_bytes / 1048576 + $2)) MiB needed (databases $((db_bytes / 1048576)) MiB + mastodon_min_free_mb $2);" \
        "nothing was migrated: free space, or remove old backups there" >&2
    exit 1
fi
# The random part keeps two dumps of the same second apart; the .tmp goes if the dump fails.
tmp=$(mktemp --suffix=.sql.tmp "$1/pre-migration-$(date -u +%Y%m%dT%H%M%SZ)-XXXXXX")
trap 'rm -f "$tmp"' EXIT
trap 'exit 1' HUP INT TERM PIPE
compose exec -T db pg_dumpall -U "$MASTODON_DB_USER" > "$tmp"
f=${tmp%.tmp}
mv "$tmp" "$f"
echo "database dump written to $f"
