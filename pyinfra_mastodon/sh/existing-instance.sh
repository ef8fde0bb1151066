# ExistingInstance: what an earlier install left. $1: the Mastodon directory  $2: nginx's user_conf.d
# $3: the header of the files this deploy writes  $4...: the data folders that must belong to the
# mastodon uid (upstream's images run db as 70 and redis as 999). Only the LOCAL_DOMAIN line of
# .env.production is read (sed prints nothing else), so no secret comes back.
env="${1%/}/.env.production"
if [ -f "$env" ]; then
    sed -n 's/^LOCAL_DOMAIN=/local_domain=/p' "$env" 2>/dev/null | head -n 1
fi
for c in "${2%/}"/*.conf; do
    if [ -f "$c" ] && head -n 1 "$c" 2>/dev/null | grep -qF "$3"; then
        echo "nginx_conf=$c"
    fi
done
if [ -f "${1%/}/$MASTODON_DB_DATA/PG_VERSION" ]; then echo upstream_pgdata=yes; fi
if [ -f "${1%/}/$MASTODON_DB_DATA/pgdata/PG_VERSION" ]; then echo database=yes; fi
shift 3
for d in "$@"; do
    if [ -d "$d" ] && [ -n "$(find "$d" -xdev ! -uid "$MASTODON_UID" -print 2>/dev/null | head -n 1)" ]; then
        echo "foreign_owned=$d"
    fi
done
