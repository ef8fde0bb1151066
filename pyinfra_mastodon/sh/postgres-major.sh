# Move the db service to another PostgreSQL major. $1: "upgrade" or "rollback"
# $2: the data folder it leaves  $3: the data folder it moves to (both below the compose project)
# $4: the compose file  $5: the backups' folder  $6: seconds to wait for health
# $7: owner:group of the new data folder  $8...: the app services
# stdin: the compose file for the new major (its image and data folder), put in place at the switch.
# upgrade: the app services stop, the database is dumped (pg_dump -Fc, root only, kept) with the row
# count of every table, db stops, the new major starts in its own empty folder, the dump is restored
# and every count compared, then everything starts. rollback: the app services and db stop, the old
# folder (kept by the upgrade) comes back as it was. The folder left is never touched.
set -eu
umask 077
mode=$1 from=$2 to=$3 compose_file=$4 root=$5 timeout=$6 owner=$7
shift 7
next=$(mktemp "$compose_file.pyinfra-tmp.XXXXXX")
trap 'rm -f "$next"' EXIT
trap 'exit 1' HUP INT TERM PIPE
cat > "$next"
chown "$(stat -c %u:%g "$compose_file")" "$next"
chmod 644 "$next"
counts() {
    compose exec -T db psql -X -v ON_ERROR_STOP=1 -U "$MASTODON_DB_USER" -d "$MASTODON_DB_NAME" -tA -c \
        "select table_name || ' ' || (xpath('/row/c/text()', query_to_xml('select count(*) as c from ' ||
        quote_ident(table_schema) || '.' || quote_ident(table_name), false, true, '')))[1]::text
        from information_schema.tables where table_type = 'BASE TABLE'
        and table_schema not in ('pg_catalog', 'information_schema') order by 1"
}
if [ "$mode" = upgrade ]; then
    if [ -s "$to/pgdata/PG_VERSION" ]; then
        echo "$to holds a PostgreSQL database already (an earlier upgrade, rolled back?): nothing changed;" \
            "remove that folder to upgrade again" >&2
        exit 1
    fi
    # none on the db host of an instance on several hosts (a bare "compose stop" would stop db too)
    if [ "$#" -gt 0 ]; then compose stop "$@"; fi
    mkdir -p "$root"
    chmod 700 "$root"
    dump=$root/pre-postgres-upgrade-$(date -u +%Y%m%dT%H%M%SZ).dump
    compose exec -T db pg_dump -Fc -U "$MASTODON_DB_USER" -d "$MASTODON_DB_NAME" > "$dump.tmp"
    mv "$dump.tmp" "$dump"
    counts > "$dump.counts"
    echo "database dumped to $dump ($(wc -l < "$dump.counts") tables)"
    compose stop db
    mkdir -p "$to"
    chown "$owner" "$to"
    chmod 755 "$to"
    mv "$next" "$compose_file"
    compose up --detach --wait --wait-timeout "$timeout" db
    compose exec -T db pg_restore --exit-on-error -U "$MASTODON_DB_USER" -d "$MASTODON_DB_NAME" < "$dump"
    if ! counts | cmp -s - "$dump.counts"; then
        echo "the row counts after the restore differ from before (see $dump.counts): the application stays" \
            "stopped; go back with pyinfra_mastodon.tasks.postgres_rollback ($from is untouched)" >&2
        exit 1
    fi
    echo "every table has its rows ($(wc -l < "$dump.counts") tables compared); $from is kept for a rollback"
else
    if [ ! -s "$to/pgdata/PG_VERSION" ]; then
        echo "$to holds no PostgreSQL database to go back to: nothing changed" >&2
        exit 1
    fi
    compose stop "$@" db
    mv "$next" "$compose_file"
    echo "back on $to; what was written since the upgrade stays in $from only"
fi
trap - EXIT
compose up --detach --wait --wait-timeout "$timeout" --remove-orphans
