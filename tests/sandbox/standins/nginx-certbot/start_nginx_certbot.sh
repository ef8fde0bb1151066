#!/bin/bash
# Stand-in for jonasal/nginx-certbot's start_nginx_certbot.sh + run_certbot.sh + util.sh (offline).
set -u
info()  { echo "$(date '+%Y/%m/%d %T') [info] $*"; }
warn()  { echo "$(date '+%Y/%m/%d %T') [warn] $*" >&2; }
error() { echo "$(date '+%Y/%m/%d %T') [error] $*" >&2; }

if [ -z "${CERTBOT_EMAIL:-}" ]; then
  error "CERTBOT_EMAIL environment variable undefined; certbot will do nothing!"
  exit 1
fi

LE=/etc/letsencrypt
CA_DIR=/etc/local_ca
DHPARAM=$LE/dhparams/dhparam.pem

# --- util.sh equivalents -----------------------------------------------------------------------
symlink_user_configs() {
  local f
  # drop links whose target went away
  for f in /etc/nginx/conf.d/*; do
    [ -L "$f" ] && [ ! -e "$f" ] && rm -f "$f"
  done
  for f in /etc/nginx/user_conf.d/*; do
    [ -f "$f" ] || continue
    local base; base=$(basename "$f")
    if [ ! -e "/etc/nginx/conf.d/$base" ] && [ ! -e "/etc/nginx/conf.d/$base.nokey" ]; then
      ln -s "$f" "/etc/nginx/conf.d/$base"
    fi
  done
}

# files referenced by ssl_* directives of a config
referenced_files() {
  sed -n -E 's/^[[:space:]]*(ssl_certificate|ssl_certificate_key|ssl_trusted_certificate|ssl_dhparam)[[:space:]]+([^;[:space:]]+)[[:space:]]*;.*/\2/p' "$1" | sort -u
}

auto_enable_configs() {
  local conf f ok
  for conf in /etc/nginx/conf.d/*.conf*; do
    [ -e "$conf" ] || continue
    case "$conf" in *.conf|*.conf.nokey) ;; *) continue ;; esac
    ok=1
    while read -r f; do
      [ -n "$f" ] || continue
      if [ ! -s "$f" ]; then ok=0; fi
    done < <(referenced_files "$conf")
    if [ "$ok" = 1 ] && [ "${conf%.nokey}" != "$conf" ]; then
      info "Found all the necessary files for '${conf%.nokey}', enabling..."
      mv "$conf" "${conf%.nokey}"
    elif [ "$ok" = 0 ] && [ "${conf%.nokey}" = "$conf" ]; then
      warn "Important file(s) for '$conf' are missing or empty, disabling..."
      mv "$conf" "$conf.nokey"
    fi
  done
}

# cert names (from ssl_certificate_key /etc/letsencrypt/live/NAME/privkey.pem) and their server names
parse_cert_names() {
  local conf
  for conf in /etc/nginx/conf.d/*.conf*; do
    [ -e "$conf" ] || continue
    sed -n -E 's#^[[:space:]]*ssl_certificate_key[[:space:]]+/etc/letsencrypt/live/([^/]+)/privkey\.pem[[:space:]]*;.*#\1#p' "$conf" | sort -u |
      while read -r name; do echo "$name $conf"; done
  done
}
server_names() {
  sed -n -E 's/^[[:space:]]*server_name[[:space:]]+([^;]+);.*/\1/p' "$1" | tr ' \t' '\n\n' |
    grep -v -E '^$|^_$|^~' | sort -u
}

ensure_local_ca() {
  mkdir -p "$CA_DIR"
  if [ ! -s "$CA_DIR/caPrivkey.pem" ] || [ ! -s "$CA_DIR/caCert.pem" ]; then
    info "Creating a new local CA in $CA_DIR"
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 \
      -keyout "$CA_DIR/caPrivkey.pem" -out "$CA_DIR/caCert.pem" \
      -subj "/O=nginx-certbot stand-in/CN=Local Debug CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -addext "subjectKeyIdentifier=hash" 2>/dev/null || { error "could not create the local CA"; return 1; }
    chmod 600 "$CA_DIR/caPrivkey.pem"
  fi
}

# does the existing certificate cover all the domains, come from our CA and live > 30 days?
cert_ok() {
  local dir=$1; shift
  [ -s "$dir/fullchain.pem" ] && [ -s "$dir/privkey.pem" ] && [ -s "$dir/chain.pem" ] && [ -s "$dir/cert.pem" ] || return 1
  openssl x509 -in "$dir/cert.pem" -noout -checkend 2592000 >/dev/null 2>&1 || return 1
  if [ "${USE_LOCAL_CA:-0}" = 1 ]; then
    openssl verify -CAfile "$CA_DIR/caCert.pem" "$dir/cert.pem" >/dev/null 2>&1 || return 1
  fi
  local sans d
  sans=$(openssl x509 -in "$dir/cert.pem" -noout -ext subjectAltName 2>/dev/null | tr ',' '\n' | sed -n 's/^[[:space:]]*DNS://p')
  for d in "$@"; do grep -qxF "$d" <<<"$sans" || return 1; done
}

issue_local_cert() {
  local name=$1; shift
  local dir=$LE/live/$name tmp san d
  mkdir -p "$dir"
  tmp=$(mktemp -d)
  san=$(for d in "$@"; do printf 'DNS:%s,' "$d"; done); san=${san%,}
  if [ "${USE_ECDSA:-1}" = 1 ]; then
    openssl ecparam -name "${ELLIPTIC_CURVE:-secp256r1}" -genkey -noout -out "$tmp/privkey.pem" 2>/dev/null
  else
    openssl genrsa -out "$tmp/privkey.pem" "${RSA_KEY_SIZE:-2048}" 2>/dev/null
  fi
  openssl req -new -key "$tmp/privkey.pem" -subj "/CN=$1" -out "$tmp/req.csr" 2>/dev/null
  cat > "$tmp/ext.cnf" <<EOX
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EOX
  if ! openssl x509 -req -in "$tmp/req.csr" -CA "$CA_DIR/caCert.pem" -CAkey "$CA_DIR/caPrivkey.pem" \
        -CAcreateserial -CAserial "$tmp/ca.srl" -days 90 -sha256 -extfile "$tmp/ext.cnf" -out "$tmp/cert.pem" 2>/dev/null; then
    error "Local CA failed to sign a certificate for '$name'"; rm -rf "$tmp"; return 1
  fi
  cp "$CA_DIR/caCert.pem" "$tmp/chain.pem"
  cat "$tmp/cert.pem" "$tmp/chain.pem" > "$tmp/fullchain.pem"
  chmod 600 "$tmp/privkey.pem"
  for f in cert chain fullchain privkey; do mv -f "$tmp/$f.pem" "$dir/$f.pem"; done
  rm -rf "$tmp"
  info "Issued a certificate for '$name' (domains: $*) from the local CA"
}

run_certbot() {
  local line name conf domains
  [ "${USE_LOCAL_CA:-0}" = 1 ] && ensure_local_ca
  while read -r name conf; do
    [ -n "$name" ] || continue
    mapfile -t domains < <(server_names "$conf")
    if [ "${#domains[@]}" = 0 ]; then
      warn "No server_name found in '$conf' for certificate '$name', skipping"; continue
    fi
    if cert_ok "$LE/live/$name" "${domains[@]}"; then
      info "Certificate '$name' is valid and covers: ${domains[*]}"
      continue
    fi
    if [ "${USE_LOCAL_CA:-0}" = 1 ]; then
      issue_local_cert "$name" "${domains[@]}"
    else
      error "Certbot failed for '$name' (${domains[*]}): Let's Encrypt cannot be reached (offline stand-in; set USE_LOCAL_CA=1)"
    fi
  done < <(parse_cert_names | sort -u -k1,1)
  auto_enable_configs
}

ensure_dhparam() {
  if [ ! -s "$DHPARAM" ]; then
    mkdir -p "$(dirname "$DHPARAM")"
    info "Generating Diffie-Hellman parameters ($DHPARAM)"
    openssl dhparam -dsaparam -out "$DHPARAM" "${DHPARAM_SIZE:-2048}" 2>/dev/null
  fi
}

# --- main ---------------------------------------------------------------------------------------
NGINX_PID=
SLEEP_PID=
shutdown() {
  info "Stopping nginx"
  [ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null
  [ -n "$NGINX_PID" ] && kill -QUIT "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  exit 0
}
trap shutdown TERM INT QUIT
RESCAN=0
trap 'RESCAN=1; [ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null' HUP

mkdir -p "$LE" /var/www/letsencrypt
ensure_dhparam
symlink_user_configs
auto_enable_configs
nginx -g 'daemon off;' &
NGINX_PID=$!
sleep 0.3
kill -0 "$NGINX_PID" 2>/dev/null || { error "nginx failed to start"; exit 1; }

interval=${RENEWAL_INTERVAL:-8d}
case "$interval" in
  *d) secs=$(( ${interval%d} * 86400 )) ;; *h) secs=$(( ${interval%h} * 3600 )) ;;
  *m) secs=$(( ${interval%m} * 60 )) ;; *s) secs=${interval%s} ;; *) secs=$interval ;;
esac
while :; do
  RESCAN=0
  symlink_user_configs
  run_certbot
  if nginx -t -q 2>/dev/null; then nginx -s reload; else error "nginx -t failed; not reloading"; nginx -t; fi
  kill -0 "$NGINX_PID" 2>/dev/null || { error "nginx exited"; wait "$NGINX_PID"; exit 1; }
  sleep "$secs" &
  SLEEP_PID=$!
  wait "$SLEEP_PID" 2>/dev/null
  SLEEP_PID=
done
