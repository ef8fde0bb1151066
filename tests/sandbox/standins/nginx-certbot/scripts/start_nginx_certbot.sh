#!/bin/bash
# Stand-in for jonasal/nginx-certbot src/scripts/start_nginx_certbot.sh (the container's CMD).
# Same order and signals as upstream: link and check the confs, start nginx in the foreground as a
# child, then a renewal loop (dhparams, local CA or certbot, `sleep $RENEWAL_INTERVAL`); SIGHUP ends
# the loop's sleep so it runs again at once; the container exits with whichever child ends first.
# Written for the stand-in (see ../README.md), not copied from upstream.
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/util.sh
. "$HERE/util.sh"

NGINX_PID='' LOOP_PID=''
# shellcheck disable=SC2317  # the handlers below run from traps
stop_children() {
  local pid
  for pid in "$NGINX_PID" "$LOOP_PID"; do
    [ -n "$pid" ] || continue
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid"; fi
  done
}
trap 'exit' TERM INT QUIT
trap stop_children EXIT

debug "Debug messages are enabled"

symlink_user_configs
auto_enable_configs

info "Starting the Nginx service"
if [ "${DEBUG:-}" = 1 ] && command -v nginx-debug >/dev/null; then nginx-debug -g 'daemon off;' & else nginx -g 'daemon off;' & fi
NGINX_PID=$!
debug "PID of the main Nginx process: $NGINX_PID"

if [ -z "${RENEWAL_INTERVAL:-}" ]; then
  debug "RENEWAL_INTERVAL unset, using default of '8d'"
  RENEWAL_INTERVAL=8d
fi

(
  set -e
  while :; do
    info "Running the autorenewal service"
    symlink_user_configs
    "$HERE/create_dhparams.sh"
    if [ "${USE_LOCAL_CA:-}" = 1 ]; then "$HERE/run_local_ca.sh"; else "$HERE/run_certbot.sh"; fi
    info "Autorenewal service will now sleep $RENEWAL_INTERVAL"
    # a sleep ended by SIGTERM (143, from the HUP handler below) just starts the next round
    rc=0; sleep "$RENEWAL_INTERVAL" || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 143 ]; then exit "$rc"; fi
  done
) &
LOOP_PID=$!
debug "PID of the autorenewal loop: $LOOP_PID"

# shellcheck disable=SC2317
on_hup() {
  info "Received SIGHUP signal; terminating the autorenewal sleep process"
  if ! pkill -15 -P "$LOOP_PID" -fx "sleep $RENEWAL_INTERVAL"; then
    warning "No sleep process found, this most likely means that a renewal process is currently running"
  fi
  return 129
}
trap on_hup HUP
# shellcheck disable=SC2317
on_usr1() {
  info "Received SIGUSR1 signal; telling nginx to reopen log files"
  nginx -s reopen
  return 138
}
trap on_usr1 USR1

# a trapped signal makes `wait` return 128+N: wait again, until a child really ended
code=
while [ -z "$code" ] || [ "$code" = 129 ] || [ "$code" = 138 ]; do
  wait -n "$NGINX_PID" "$LOOP_PID"
  code=$?
done
debug "Exiting with code $code"
exit "$code"
