#!/bin/sh
# The file watcher of the e2e security tests (tests/e2e/toolkit.py, class Watcher), run on the host
# as a transient systemd unit: inotifywait on the watched trees, piped into watch.pl, which looks at
# each file without forking.
#
# Usage: watch.sh DIR
#   DIR/roots    the watched trees, one a line; a missing one (/data on a fresh host) is made first,
#                empty and 0755: inotifywait can only watch what exists when it starts
#   DIR/exclude  inotifywait's --exclude (one extended regex, matched against each path)
#   DIR/keys     read by watch.pl; its logs and inotify.err are written to DIR
set -u
dir=$1
exclude=$(cat "$dir/exclude")
set --
while IFS= read -r root; do
  [ -n "$root" ] || continue
  [ -d "$root" ] || mkdir -m 755 "$root"
  set -- "$@" "$root"
done < "$dir/roots"
inotifywait -m -r -e create,moved_to,attrib,close_write,modify --format '%e|%w%f' \
  --exclude "$exclude" "$@" 2>"$dir/inotify.err" | perl "$dir/watch.pl" "$dir"
