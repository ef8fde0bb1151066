# wait_for_postgres: wait until PostgreSQL accepts connections, at most $1 seconds.
# $1: seconds  $2: the message that says what to check when it never does
end=$(( $(date +%s) + $1 ))
# Over TCP, as Rails connects (see layout.DB_READY_HOST).
until compose exec -T db pg_isready -h "$MASTODON_DB_READY_HOST" -U "$MASTODON_DB_USER" -q >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then
        echo "$2" >&2
        exit 1
    fi
    sleep 1
done
