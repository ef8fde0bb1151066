# FreeSpace: the MiB available on the filesystem of each path (of its nearest existing parent, for a
# path not made yet), and of Docker's root. Prints "free PATH MIB" lines.
for p in "$@"; do
    d=$p
    while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done
    echo "free $p $(df -Pk "$d" 2>/dev/null | awk 'NR == 2 { print int($4 / 1024) }')"
done
if command -v docker >/dev/null 2>&1; then
    root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null)
    if [ -n "$root" ] && [ -d "$root" ]; then
        echo "free docker:$root $(df -Pk "$root" 2>/dev/null | awk 'NR == 2 { print int($4 / 1024) }')"
    fi
fi
