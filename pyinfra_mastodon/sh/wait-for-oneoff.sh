# Wait, at most $1 seconds, for one-off containers (`compose run`) an interrupted deploy left
# behind: a killed deploy does not stop a db:migrate already running on the host, and a second one
# started meanwhile would fail with ConcurrentMigrationError.
ids=$(docker ps -q --filter "label=com.docker.compose.project=$MASTODON_PROJECT" \
    --filter label=com.docker.compose.oneoff=True)
if [ -n "$ids" ]; then
    echo 'waiting for a one-off container left running by an interrupted deploy'
    # shellcheck disable=SC2086 # one argument per container id
    timeout "$1" docker wait $ids >/dev/null || {
        echo "a one-off container (docker ps --filter label=com.docker.compose.project=$MASTODON_PROJECT)" \
            "is still running after $1s" >&2
        exit 1
    }
fi
