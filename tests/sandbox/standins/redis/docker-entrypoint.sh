#!/bin/sh
set -e
# first arg is `-f` or `--some-option`, or a .conf file
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
um="$(umask)"
if [ "$um" = '0022' ]; then umask 0077; fi
if [ "$1" = 'redis-server' ]; then
  shift
  conf=
  case "${1:-}" in *.conf) conf="$1"; shift ;; esac
  exec redis-server $conf --bind 0.0.0.0 --protected-mode no --dir /data --daemonize no "$@"
fi
exec "$@"
