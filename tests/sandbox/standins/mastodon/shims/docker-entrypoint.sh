#!/bin/sh
# Stand-in for node's image entrypoint (docker-library/node docker-entrypoint.sh): a first argument
# that is an option, not a command, or a non-executable file is run with node; then exec.
set -e
if [ "${1#-}" != "$1" ] || [ -z "$(command -v "$1")" ] || { [ -f "$1" ] && ! [ -x "$1" ]; }; then
  set -- node "$@"
fi
exec "$@"
