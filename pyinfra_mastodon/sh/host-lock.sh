# HostLock: take the host's lock for this run and keep it while the run's SSH connection lives.
# $1: the run's id  $2: seconds to wait for another holder  $3: the lock file
# Prints "acquired", "busy SINCE" (another holder, since when) or "unsupported REASON".
# The lock is flock(1) on $3, held by a background process that ends, releasing it, within a second
# of the SSH connection closing: at the end of the run, or when the run is killed.
run=$1 wait=$2 lock=$3
owner="$lock.owner"
command -v flock >/dev/null 2>&1 || { echo unsupported no-flock; exit 0; }
if [ "$(cut -d' ' -f1 "$owner" 2>/dev/null)" = "$run" ]; then
    echo acquired
    exit 0
fi
# The sshd process of this connection (sshd or, since OpenSSH 9.8, sshd-session), above us through
# any sh and sudo: it lives exactly as long as the run's connection.
conn=$$
while [ "$conn" -gt 1 ]; do
    case "$(cat "/proc/$conn/comm" 2>/dev/null)" in sshd*) break ;; esac
    conn=$(sed 's/^.*) //' "/proc/$conn/stat" 2>/dev/null | cut -d' ' -f2)
    [ -n "$conn" ] || conn=1
done
if [ "$conn" -le 1 ]; then
    echo unsupported no-ssh-session
    exit 0
fi
mkdir -p "$(dirname "$lock")"
# shellcheck disable=SC2016 # the inner script expands its own positional parameters
setsid sh -c '
    exec 9>>"$1"
    flock -w "$2" 9 || exit 1
    printf "%s %s %s\n" "$3" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" > "$1.owner"
    while kill -0 "$4" 2>/dev/null; do sleep 1; done
    rm -f "$1.owner"
' mastodon-host-lock "$lock" "$wait" "$run" "$conn" </dev/null >/dev/null 2>&1 &
holder=$!
while kill -0 "$holder" 2>/dev/null; do
    if [ "$(cut -d' ' -f1 "$owner" 2>/dev/null)" = "$run" ]; then
        echo acquired
        exit 0
    fi
    sleep 0.2
done
if [ "$(cut -d' ' -f1 "$owner" 2>/dev/null)" = "$run" ]; then
    echo acquired
else
    echo "busy $(cut -d' ' -f2 "$owner" 2>/dev/null || echo unknown)"
fi
