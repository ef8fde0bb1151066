# What a maintenance timer runs (installed as layout.JOB_RUNNER): take the host's lock, the same
# as every deploy's, waiting as long as a deploy may take, then run the job.
# $1: the job's name  $2...: the command. Writes the lock's owner file as the deploy's holder does,
# so that a deploy that finds the host busy can say since when.
name=$1
shift
lock=$MASTODON_LOCK_FILE
mkdir -p "$(dirname "$lock")"
exec 9>>"$lock"
if ! flock -w 3600 9; then
    echo "mastodon-$name: the host's lock stayed taken for an hour; not run" >&2
    exit 1
fi
printf '%s %s %s\n' "timer-$name" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" > "$lock.owner"
trap 'rm -f "$lock.owner"' EXIT
"$@"
