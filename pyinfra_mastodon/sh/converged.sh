# Converged: whether the host is exactly as a deploy would leave it, in one command, so that a run
# with nothing to do sends no other. Prints "converged", or "differs CONCERN [WHAT]" for the first
# difference (WHAT is a path, a unit or a service: never a value).
# $1: the header of the files the deploy writes  $2: the project folder  $3: nginx's user_conf.d
# $4: the domain's server block  $5: Compose's memo (compose-memo.sh)  $6: the migrations cache
# $7: SQL printing "t|t" when the database is seeded and the owner account exists, then whether the
# owner has never signed in  $8: the owner's password file  $9: the domain  $10: the ACME directory
# its certificate comes from ("none": the local CA)  $11: the MiB that must be free, then the paths
# whose filesystems must have them  $12: how many env files follow on stdin  $13: "-", or the web
# image whose migrations count on a host that runs the database's jobs without web (a db host of an
# instance on several hosts). A host without the database's jobs has "-" for $7, one without the
# proxy "-" for $4: those checks are left out. Then one argument per item, its fields split by spaces:
#   folder PATH USER GROUP MODE       file PATH SHA256 USER GROUP MODE     absent PATH
#   envfile PATH USER GROUP MODE      user NAME UID GID HOME SHELL         group NAME GID
#   timer UNIT                        data PATH (a folder only the mastodon uid may own files in)
# stdin: each env file's planned content after a line "@@ENVFILE@@ PATH", every secret as a
# "@@KEEP@@KEY" line (the host must have a value for it). It is read whole first, in every case.
header=$1 project=$2 conf_dir=$3 conf=$4 memo=$5 cache=$6 sql=$7 password_file=$8 domain=$9
acme=${10} free_spec=${11} env_count=${12} jobs_image=${13}
shift 13
differs() {
    echo "differs $*"
    exit 0
}
# The env files: byte for byte what the deploy would write, keeping every secret the host has.
envs=$(awk '
    function key_of(line) { return match(line, /^[A-Za-z_][A-Za-z0-9_]*=/) ? substr(line, 1, RLENGTH - 1) : "" }
    function load(file,   line, k, r) {
        n = 0; split("", old); split("", on_host)
        while ((r = (getline line < file)) > 0) { old[++n] = line; k = key_of(line); if (k != "") { on_host[k] = line } }
        bad = (r < 0); close(file)
    }
    function finish(   same, i) {
        if (path == "") { return }
        same = !bad && m == n
        for (i = 1; same && i <= m; i++) { if (new[i] != old[i]) { same = 0 } }
        print (same ? "same " : "differs ") path
    }
    /^@@ENVFILE@@ / { finish(); path = substr($0, 13); load(path); m = 0; next }
    {
        line = $0
        if (line ~ /^@@KEEP@@/) {
            k = substr(line, 9)
            if (!(k in on_host)) { bad = 1 } else {
                line = on_host[k]; v = substr(line, length(k) + 2)
                if (v == "" || v == "\"\"" || v == "\047\047") { bad = 1 }
            }
        } else if (line ~ /^@@/) { bad = 1 }
        new[++m] = line
    }
    END { finish() }
')
command -v docker >/dev/null 2>&1 || differs docker none
# Nothing this script writes is for anyone but root (the answers hold no secret, but no file of ours
# is ever readable by others).
umask 077
# What needs a container (the database, the certificate) or Docker's info runs meanwhile, in the
# background; its answers (no secret) wait in a folder of our own.
work=$(mktemp -d) || differs tmp none
trap 'rm -rf "$work"' EXIT
if [ "$sql" = - ]; then
    :
elif [ "$jobs_image" = - ]; then
    pending_migrations "$cache" "$sql" >"$work/database" 2>/dev/null &
else
    pending_migrations "$cache" "$sql" "$jobs_image" >"$work/database" 2>/dev/null &
fi
[ "$conf" = - ] || certificate_state "$domain" >"$work/certificate" 2>/dev/null &
# shellcheck disable=SC2086 # the paths, one word each
free_space ${free_spec#* } >"$work/free" 2>/dev/null &
[ "$(printf '%s\n' "$envs" | grep -c '^same ')" = "$env_count" ] ||
    differs envfile "$(printf '%s\n' "$envs" | sed -n 's/^differs //p' | head -n 1)"
timers="" data=""
for item in "$@"; do
    set -f
    # shellcheck disable=SC2086 # the fields of one item
    set -- $item
    set +f
    case $1 in
    folder)
        if [ ! -d "$2" ] || [ -L "$2" ]; then differs folder "$2"; fi
        [ "$(stat -c '%a %U %G' "$2")" = "$5 $3 $4" ] || differs folder "$2"
        ;;
    file | envfile)
        if [ ! -f "$2" ] || [ -L "$2" ]; then differs file "$2"; fi
        if [ "$1" = file ]; then
            [ "$(stat -c '%a %U %G' "$2")" = "$6 $4 $5" ] || differs file "$2"
            [ "$(sha256sum <"$2" | cut -d' ' -f1)" = "$3" ] || differs file "$2"
        else
            [ "$(stat -c '%a %U %G' "$2")" = "$5 $3 $4" ] || differs file "$2"
        fi
        ;;
    absent) if [ -e "$2" ] || [ -L "$2" ]; then differs absent "$2"; fi ;;
    user) [ "$(getent passwd "$2" | cut -d: -f1,3,4,6,7)" = "$2:$3:$4:$5:$6" ] || differs user "$2" ;;
    group) [ "$(getent group "$2" | cut -d: -f1,3)" = "$2:$3" ] || differs group "$2" ;;
    timer | unit) timers="$timers $2" ;; # a unit that must be enabled and active
    data) data="$data $2" ;;
    esac
done
# What the checks before a deploy would refuse, or the deploy would remove (existing-instance.sh).
# shellcheck disable=SC2086 # one word per folder
found=$(existing_instance "$project" "$conf_dir" "$header" $data)
if printf '%s\n' "$found" | grep -q '^upstream_pgdata='; then differs existing upstream-pgdata; fi
if printf '%s\n' "$found" | grep -q '^foreign_owned='; then differs existing foreign-owned; fi
stale=$(printf '%s\n' "$found" | sed -n 's/^nginx_conf=//p' | grep -vxF "$conf" | head -n 1)
[ -z "$stale" ] || differs absent "$stale"
# The timers (and other units, the firewall's): enabled and waiting, or active.
if [ -n "$timers" ]; then
    count=$(echo "$timers" | wc -w)
    # shellcheck disable=SC2086 # one word per unit
    [ "$(systemctl is-enabled $timers 2>/dev/null | grep -cx enabled)" = "$count" ] || differs timer "$timers"
    # shellcheck disable=SC2086 # one word per unit
    [ "$(systemctl is-active $timers 2>/dev/null | grep -cx active)" = "$count" ] || differs timer "$timers"
fi
# The services: Compose's inputs and the containers (ids, states, images) are those its last dry
# run found up to date (compose-key.sh holds the list).
if [ ! -s "$memo" ] || [ "$(cat "$memo")" != "$(compose_key "$project")" ]; then differs compose plan; fi
wait
# The database: no pending migration (without Rails), seeded, the owner there and not lost.
if [ "$sql" != - ]; then
    grep -qx none "$work/database" || differs database migrations
    case $(sed -n 's/^answer //p' "$work/database") in
    "t|f") ;;
    "t|t") [ -e "$password_file" ] || differs database owner ;;
    *) differs database seed-or-owner ;;
    esac
fi
# The certificate: 443 serves the domain's own, from the CA the settings name.
if [ "$conf" != - ]; then
    grep -qx 'cert yes' "$work/certificate" || differs certificate "$domain"
    grep -qx 'served yes' "$work/certificate" || differs certificate "$domain"
    grep -qxF "server $acme" "$work/certificate" || differs certificate "$domain"
fi
# Free space, as the checks before a deploy want it.
short=$(awk -v min="${free_spec%% *}" '$3 == "" || $3 < min { print $2; exit }' "$work/free")
[ -z "$short" ] || differs free-space "$short"
echo converged
