#!/bin/bash
# Stand-in helpers, sourced by the other scripts. Behaviour follows jonasal/nginx-certbot
# src/scripts/util.sh (see ../README.md for each rule); written for the stand-in, not copied.

: "${DATE_FORMAT_STRING:=+%Y/%m/%d %T}"

log() { echo "$(date "${DATE_FORMAT_STRING}") [${1}] ${2}"; }
debug() { if [ "${DEBUG:-}" = 1 ]; then log debug "$1"; fi; }
info() { log info "$1"; }
warning() { log warning "$1"; }
error() { log error "$1" >&2; }

is_ipv4() { [[ "$1" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; }
# enough of an IPv6 test for server_name values: hex groups and colons, at least two colons
is_ipv6() { [[ "${1,,}" =~ ^[0-9a-f:.]*:[0-9a-f:.]*:[0-9a-f:.%a-z]*$ ]]; }
is_ip() { is_ipv4 "$1" || is_ipv6 "$1"; }

# The value(s) of one directive in a conf file, one per line, first occurrence order, adjacent
# duplicates dropped (the upstream parsers pipe through `uniq`).
directive_values() { # DIRECTIVE FILE
  sed -n -E "s&^[[:space:]]*$1[[:space:]]+([^;]*);.*&\\1&p" "$2" | xargs -r -n1 echo | uniq
}

# Certificate names: only keys at /etc/letsencrypt/live/NAME/privkey.pem are managed.
parse_cert_names() {
  sed -n -E 's&^[[:space:]]*ssl_certificate_key[[:space:]]+/etc/letsencrypt/live/(.*)/privkey\.pem;.*&\1&p' "$1" |
    xargs -r -n1 echo | uniq
}
# Every name of every server_name line (regex and $variable names are dropped later).
parse_server_names() {
  sed -n -E 's&^[[:space:]]*server_name[[:space:]]+([^;]*);.*&\1&p' "$1" | xargs -r -n1 echo
}

# 0 when every ssl_certificate_key / ssl_certificate / ssl_trusted_certificate / ssl_dhparam file
# named in the conf exists with a non-zero size ("data:" and "engine:" values are not files).
allfiles_exist() {
  local conf=$1 rc=0 directive path
  for directive in ssl_certificate_key ssl_certificate ssl_trusted_certificate ssl_dhparam; do
    while read -r path; do
      [ -n "$path" ] || continue
      case "$path" in data:*|engine:*) continue ;; esac
      if [ ! -s "$path" ]; then
        warning "Could not find non-zero size $directive file '$path' in '$conf'"
        rc=1
      fi
    done < <(directive_values "$directive" "$conf")
  done
  return $rc
}

# Fill the associative array named $2 with cert_name -> "server names" found in conf file $1.
parse_config_file() {
  local conf=$1 name
  local -n into=$2
  local names=() servers=()
  while read -r name; do [ -n "$name" ] && names+=("$name"); done < <(parse_cert_names "$conf")
  [ "${#names[@]}" -gt 0 ] || { debug "Found no valid certificate declarations in '$conf'; skipping it"; return 0; }
  while read -r name; do
    case "$name" in ''|'~'*|*'$'*) continue ;; esac
    servers+=("$name")
  done < <(parse_server_names "$conf")
  for name in "${names[@]}"; do
    # keep the first order of appearance, no duplicates
    # shellcheck disable=SC2086  # the names held so far, split on blanks
    into["$name"]=$(printf '%s\n' ${into["$name"]:-} "${servers[@]}" | awk 'NF && !seen[$0]++' | tr '\n' ' ')
  done
}

# Link every file of user_conf.d/ into conf.d/ (same relative path) unless something in conf.d/
# already resolves to it; drop links into user_conf.d/ whose target is gone.
symlink_user_configs() {
  local link src found
  while IFS= read -r -d '' link; do
    info "Removing broken symlink '$link' to '$(realpath -m "$link")'"
    rm "$link"
  done < <(find /etc/nginx/conf.d/ -xtype l -lname '/etc/nginx/user_conf.d/*' -print0)
  while IFS= read -r -d '' src; do
    found=$(find -L /etc/nginx/conf.d/ -samefile "$src" | wc -l)
    if [ "$found" -gt 1 ]; then warning "Found more than one symlink to the file '$src' inside '/etc/nginx/conf.d/'"; fi
    [ "$found" -eq 0 ] || continue
    link=/etc/nginx/conf.d/${src#/etc/nginx/user_conf.d/}
    info "Creating symlink '$link' to '$src'"
    mkdir -p "$(dirname -- "$link")"
    ln -s "$src" "$link"
  done < <(find /etc/nginx/user_conf.d/ -type f -print0)
}

# A conf whose files are not all there is renamed *.conf.nokey (nginx only includes *.conf);
# a *.nokey whose files are all there gets its name back. No dummy certificate is made.
auto_enable_configs() {
  local conf
  while IFS= read -r -d '' conf; do
    if allfiles_exist "$conf"; then
      if [ "${conf##*.}" = nokey ]; then
        info "Found all the necessary files for '$conf', enabling..."
        mv "$conf" "${conf%.*}"
      fi
    elif [ "${conf##*.}" = conf ]; then
      error "Important file(s) for '$conf' are missing or empty, disabling..."
      mv "$conf" "$conf.nokey"
    fi
  done < <(find -L /etc/nginx/conf.d/ -name '*.conf*' -type f -print0)
}

# Fill the associative array named $1 from every conf.d/*.conf* (enabled or parked as .nokey).
collect_certificates() {
  local conf
  while IFS= read -r -d '' conf; do
    parse_config_file "$conf" "$1"
  done < <(find -L /etc/nginx/conf.d/ -name '*.conf*' -type f -print0)
}

# The end of a renewal run (run_certbot.sh, run_local_ca.sh): re-check the confs, then reload nginx
# only if `nginx -t` passes (a failing test is reported and ends the run with status 0).
finish_renewal() {
  auto_enable_configs
  if ! nginx -t; then
    error "Nginx configuration is invalid, skipped reloading. Check the logs for details."
    exit 0
  fi
  nginx -s reload
}
