# PendingMigrations: "none", "pending" or "unknown" for the running web container's image; nothing
# when web does not run. Exact and without booting Rails: a migration is pending when its version
# (the file name's leading digits in the image's db/migrate or db/post_migrate, as Rails reads them)
# is not in schema_migrations. The image's versions are read once per image id, kept on the host
# in $1 (a folder). $2 (optional): one more SQL query for the same psql call; its answer comes
# first, as "answer VALUE" (converged.sh asks the seed and the owner account this way). $3
# (optional): an image whose versions count instead of the running web's, for the host that runs
# the database's jobs without running web (an instance on several hosts): listed once per image id
# in a one-off container of it.
command -v docker >/dev/null 2>&1 || exit 0
ps_of() {
    docker ps -q --filter "label=com.docker.compose.project=$MASTODON_PROJECT" \
        --filter "label=com.docker.compose.service=$1" --filter label=com.docker.compose.oneoff=False \
        --filter status=running 2>/dev/null | head -n 1
}
if [ -n "${3:-}" ]; then
    image=$(docker image inspect --format '{{.Id}}' "$3" 2>/dev/null) || { echo unknown; exit 0; }
else
    web=$(ps_of web)
    [ -n "$web" ] || exit 0
    image=$(docker inspect --format '{{.Image}}' "$web" 2>/dev/null)
fi
cache="$1/${image#sha256:}"
if [ ! -s "$cache" ]; then
    umask 022
    mkdir -p "$1"
    tmp=$(mktemp "$cache.XXXXXX") || { echo unknown; exit 0; }
    # shellcheck disable=SC2016 # expanded in the container
    list='cd "${MASTODON_ROOT:-/opt/mastodon}" && ls db/migrate db/post_migrate'
    if [ -n "${3:-}" ]; then
        docker run --rm --network none --entrypoint sh "$image" -c "$list" >"$tmp" 2>/dev/null
    else
        docker exec "$web" sh -c "$list" >"$tmp" 2>/dev/null
    fi
    if grep -q '^[0-9]' "$tmp"; then
        mv "$tmp" "$cache"
    else
        rm -f "$tmp"
        echo unknown
        exit 0
    fi
fi
db=$(ps_of db)
[ -n "$db" ] || { echo unknown; exit 0; }
if [ -n "${2:-}" ]; then
    out=$(docker exec "$db" psql -X -v ON_ERROR_STOP=1 -h "$MASTODON_DB_READY_HOST" -U "$MASTODON_DB_USER" \
        -d "$MASTODON_DB_NAME" -tA -c "$2" -c 'SELECT version FROM schema_migrations' 2>/dev/null) || { echo unknown; exit 0; }
    echo "answer $(printf '%s\n' "$out" | head -n 1)"
    applied=$(printf '%s\n' "$out" | tail -n +2)
else
    applied=$(docker exec "$db" psql -X -v ON_ERROR_STOP=1 -h "$MASTODON_DB_READY_HOST" -U "$MASTODON_DB_USER" \
        -d "$MASTODON_DB_NAME" -tAc 'SELECT version FROM schema_migrations' 2>/dev/null) || { echo unknown; exit 0; }
fi
# Versions of the image not among the applied ones; only the word comes back.
if printf '%s\n' "$applied" | awk 'FNR == NR { done[$1] = 1; next }
        match($0, /^[0-9]+_/) { v = substr($0, 1, RLENGTH - 1); if (!(v in done)) { pending = 1 } }
        END { exit pending ? 0 : 1 }' - "$cache"; then
    echo pending
else
    echo none
fi
