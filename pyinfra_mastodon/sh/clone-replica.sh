# clone_replica: copy the primary into the read replica's data folder (pg_basebackup), when it holds no
# database yet. The copy is made beside PGDATA and renamed into place only when complete, so that an
# interrupted copy is never started as a replica. -R makes it a standby of the primary (standby.signal,
# primary_conninfo); -C -S creates its replication slot, so the primary keeps the WAL it has not sent.
# The password is the replica service's PGPASSWORD (.env.replica), read by libpq: never an argument,
# and not kept in primary_conninfo.
# $1: the replica's PGDATA on the host  $2: the primary's address  $3: its port  $4: the slot
# $5: how long to wait for the primary to answer, seconds
[ -s "$1/PG_VERSION" ] && exit 0
copy=$(cat <<'INNER'
set -eu
primary=$1 port=$2 user=$3 slot=$4 end=$(( $(date +%s) + $5 ))
until pg_isready -q -h "$primary" -p "$port" -U "$user"; do
    if [ "$(date +%s)" -ge "$end" ]; then
        echo "the primary at $primary:$port did not answer in $5 s: check that its db runs and that its firewall admits this host" >&2
        exit 1
    fi
    sleep 1
done
psql -h "$primary" -p "$port" -U "$user" -d postgres -v ON_ERROR_STOP=1 -qAt -v slot="$slot" >/dev/null <<'SQL'
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = :'slot' AND NOT active;
SQL
rm -rf "$PGDATA.partial"
pg_basebackup -h "$primary" -p "$port" -U "$user" -D "$PGDATA.partial" -R -X stream -C -S "$slot" --checkpoint=fast
# -R writes libpq's password (PGPASSWORD) into primary_conninfo: the replica's WAL receiver reads it
# from the service's environment (.env.replica) instead, so that .env.replica stays its only copy
sed -i "s/ password=[^ ']*//" "$PGDATA.partial/postgresql.auto.conf"
if grep -q 'password=' "$PGDATA.partial/postgresql.auto.conf"; then
    echo "could not take the password out of the replica's primary_conninfo: the copy is not used" >&2
    exit 1
fi
rm -rf "$PGDATA"
mv "$PGDATA.partial" "$PGDATA"
INNER
)
# The replica's own container stopped first: restarting on a folder being replaced, its image's
# entrypoint would make a new, empty database there (initdb) between the rm and the mv.
compose stop replica
# A replica made anew (its folder lost): the slot of its earlier copy still holds WAL on the primary;
# psql drops it only when nothing streams from it (an active slot is another replica: -C then fails).
compose run --rm --no-deps -T --entrypoint sh replica -c "$copy" clone-replica "$2" "$3" "$MASTODON_DB_USER" "$4" "$5"
