# Take a backup into a folder of its own in $1, named by its time (UTC): the database in pg_dump's
# custom format (through the running db container), the two env files, the owner's password file if
# there is one, the media without the cache, and a manifest; then apply the retention.
# $1: the backups' folder  $2: the instance's folder  $3: the media folder, below $2
# $4: the owner's password file  $5: the restic env file (used when it exists)  $6: MiB to leave free
# $7: daily backups to keep  $8: weekly ones
# Everything is written under umask 077 into a hidden folder renamed at the end: no file is ever
# readable by another user, and a failed backup leaves no folder that looks complete.
set -eu
umask 077
root=$1 base=$2 media=$3 password_file=$4 restic_env=$5 margin=$6 daily=$7 weekly=$8
if ! running db; then
    echo "the db service is not running: no backup taken (start it: pyinfra INVENTORY pyinfra_mastodon.tasks.start)" >&2
    exit 1
fi
mkdir -p "$root"
chmod 700 "$root"
# Free space first: the database's size (its dump is smaller), the media without the cache, the margin.
db_bytes=$(compose exec -T db psql -X -v ON_ERROR_STOP=1 -U "$MASTODON_DB_USER" -d "$MASTODON_DB_NAME" \
    -tAc 'select pg_database_size(current_database())')
media_kib=$(du -sk --exclude="$base/$media/cache" "$base/$media" 2>/dev/null | cut -f1)
free=$(df -Pk "$root" | awk 'NR == 2 { print int($4 / 1024) }')
need=$((db_bytes / 1048576 + ${media_kib:-0} / 1024 + margin))
if [ "$free" -lt "$need" ]; then
    echo "not enough free space for a backup in $root: $free MiB free, $need MiB needed" \
        "(database $((db_bytes / 1048576)) MiB + media $((${media_kib:-0} / 1024)) MiB + mastodon_min_free_mb $margin);" \
        "free space or remove old backups there" >&2
    exit 1
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
while [ -e "$root/$stamp" ]; do
    sleep 1
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
done
tmp=$(mktemp -d "$root/.$stamp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM PIPE
compose exec -T db pg_dump -Fc -U "$MASTODON_DB_USER" -d "$MASTODON_DB_NAME" > "$tmp/database.dump"
cat "$base/.env.production" > "$tmp/env.production"
cat "$base/.env.db" > "$tmp/env.db"
if [ -f "$password_file" ]; then cat "$password_file" > "$tmp/admin-password"; fi
tar -C "$base" --exclude="$media/cache" -cf "$tmp/media.tar" "$media"
web=$(docker ps -q --filter "label=com.docker.compose.project=$MASTODON_PROJECT" \
    --filter label=com.docker.compose.service=web --filter label=com.docker.compose.oneoff=False | head -n 1)
web_image=$(if [ -n "$web" ]; then docker inspect --format '{{.Config.Image}}' "$web"; fi)
# The db host of an instance on several hosts runs no web: the version is that of the web its
# one-off jobs run in (the compose file's, under its profile: layout.JOBS_PROFILE).
# (`config --images` lists every service's, whatever it is given: web's is read off its block.)
if [ -z "$web_image" ]; then
    web_image=$(compose --profile jobs config 2>/dev/null |
        awk '/^  web:$/ { s = 1; next } /^  [^ ]/ { s = 0 } s && /^    image: / { print $2; exit }')
fi
{
    echo "format 1"
    echo "created $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "mastodon_version ${web_image##*:}"
    echo "database_bytes $db_bytes"
    for id in $(docker ps -q --filter "label=com.docker.compose.project=$MASTODON_PROJECT" \
        --filter label=com.docker.compose.oneoff=False); do
        docker inspect --format 'image {{index .Config.Labels "com.docker.compose.service"}} {{.Config.Image}} {{.Image}}' "$id"
    done | sort
    for f in database.dump env.production env.db admin-password media.tar; do
        if [ -f "$tmp/$f" ]; then
            echo "file $f $(wc -c < "$tmp/$f") $(sha256sum "$tmp/$f" | cut -d' ' -f1)"
        fi
    done
} > "$tmp/manifest"
mv "$tmp" "$root/$stamp"
trap - EXIT
echo "backup $stamp written to $root/$stamp ($(du -sm "$root/$stamp" | cut -f1) MiB)"
# Retention, over these backups and the dumps taken before upgrades (dump-database): newest first,
# keep the newest of each of the $daily most recent days, and of each of the $weekly most recent
# ISO weeks; remove the rest. Only names of these two forms are ever touched.
for p in "$root"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z "$root"/pre-migration-*.sql; do
    item=${p##*/}
    if echo "$item" | grep -qE '^([0-9]{8}T[0-9]{6}Z|pre-migration-[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9]+\.sql)$'; then
        echo "$(echo "$item" | sed -E 's/^(pre-migration-)?([0-9]{8}T[0-9]{6}Z).*$/\2/') $item"
    fi
done | sort -r | cut -d' ' -f2 | {
    days='' weeks='' ndays=0 nweeks=0
    while read -r item; do
        day=$(echo "$item" | sed -E 's/^(pre-migration-)?([0-9]{8})T.*$/\2/')
        week=$(date -u -d "$day" +%G-%V)
        keep=no
        case " $days " in *" $day "*) ;; *)
            days="$days $day" ndays=$((ndays + 1))
            if [ "$ndays" -le "$daily" ]; then keep=yes; fi ;;
        esac
        case " $weeks " in *" $week "*) ;; *)
            weeks="$weeks $week" nweeks=$((nweeks + 1))
            if [ "$nweeks" -le "$weekly" ]; then keep=yes; fi ;;
        esac
        if [ "$keep" = no ]; then
            rm -rf -- "${root:?}/$item"
            echo "retention: removed $item"
        fi
    done
}
# The copy off the host, when a restic repository is set (mastodon_restic_repository): this backup's
# folder, then restic's own retention with the same counts. The password reaches restic in its
# environment, never on a command line; values are plain or single-quoted (envfile.quote_env_value).
if [ -f "$restic_env" ]; then
    if ! command -v restic >/dev/null 2>&1; then
        echo "restic is not installed on this host (apt install restic): backup $stamp was not copied" >&2
        exit 1
    fi
    value() {
        v=$(sed -n "s/^$1=//p" "$restic_env")
        v=${v#\'}
        printf '%s' "${v%\'}"
    }
    RESTIC_REPOSITORY=$(value RESTIC_REPOSITORY)
    RESTIC_PASSWORD=$(value RESTIC_PASSWORD)
    export RESTIC_REPOSITORY RESTIC_PASSWORD
    restic cat config >/dev/null 2>&1 || restic init --quiet
    restic backup --quiet --tag mastodon "$root/$stamp"
    restic forget --quiet --tag mastodon --keep-daily "$daily" --keep-weekly "$weekly" --prune
    echo "backup $stamp copied to the restic repository"
fi
