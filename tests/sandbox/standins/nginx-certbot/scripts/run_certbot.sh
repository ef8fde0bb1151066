#!/bin/bash
# Stand-in for jonasal/nginx-certbot src/scripts/run_certbot.sh: real certbot, same command line.
# For every certificate name found in the confs: `certbot certonly --keep` against
# CERTBOT_PRODUCTION_URL (or CERTBOT_STAGING_URL when STAGING=1), defaults Let's Encrypt's, HTTP-01
# through the webroot /var/www/letsencrypt (served on port 80 by redirector.conf). A failure logs
# "Certbot failed for '<name>'. Check the logs for details." and the loop goes on. Then, as upstream:
# auto_enable_configs, `nginx -t`, `nginx -s reload`. certbot's HTTP client (python-requests) takes
# its CA bundle from REQUESTS_CA_BUNDLE when set.
# Only the webroot authenticator: the stand-in has no DNS plugins (a dns-* name fails, as upstream
# does for an authenticator it does not have).
# Written for the stand-in (see ../README.md), not copied from upstream.
set -e

: "${CERTBOT_PRODUCTION_URL=https://acme-v02.api.letsencrypt.org/directory}"
: "${CERTBOT_STAGING_URL=https://acme-staging-v02.api.letsencrypt.org/directory}"

# shellcheck source=SCRIPTDIR/util.sh
. "$(cd "$(dirname "$0")" && pwd)/util.sh"

info "Starting certificate renewal process"
if [ -z "${CERTBOT_EMAIL:-}" ]; then
  error "CERTBOT_EMAIL environment variable undefined; certbot will do nothing!"
  exit 1
fi
if [ "${STAGING:-}" = 1 ]; then
  debug "Using staging environment"
  letsencrypt_url=$CERTBOT_STAGING_URL
else
  debug "Using production environment"
  letsencrypt_url=$CERTBOT_PRODUCTION_URL
fi
if [ -z "${RSA_KEY_SIZE:-}" ]; then debug "RSA_KEY_SIZE unset, defaulting to 2048"; RSA_KEY_SIZE=2048; fi
if [ -z "${ELLIPTIC_CURVE:-}" ]; then debug "ELLIPTIC_CURVE unset, defaulting to 'secp256r1'"; ELLIPTIC_CURVE=secp256r1; fi
: "${CERTBOT_DNS_CREDENTIALS_DIR=/etc/letsencrypt}"
if [ ! -d "$CERTBOT_DNS_CREDENTIALS_DIR" ]; then
  error "DNS credentials directory '$CERTBOT_DNS_CREDENTIALS_DIR' does not exist"
  exit 1
fi
force_renew=()
if [ "${1:-}" = force ]; then
  info "Forcing renewal of certificates"
  force_renew=(--force-renewal)
fi

# get_certificate CERT_NAME KEY_TYPE DOMAIN...
get_certificate() {
  local cert_name=$1 key_type=$2 authenticator=webroot domain
  shift 2
  if [[ "${cert_name,,}" =~ (^|[-.])dns-([^-.]*)([-.]|$) ]]; then
    error "The DNS authenticator found in '$cert_name' does not appear to be supported"
    return 1
  elif [ -n "${CERTBOT_AUTHENTICATOR:-}" ] && [ "$CERTBOT_AUTHENTICATOR" != webroot ]; then
    error "Unknown authenticator '$CERTBOT_AUTHENTICATOR' for '$cert_name'"
    return 1
  fi
  local domain_args=()
  for domain in "$@"; do domain_args+=(-d "$domain"); done
  info "Requesting an ${key_type^^} certificate for '$cert_name' (http-01 through $authenticator)"
  certbot certonly \
    --agree-tos --keep -n --text \
    --preferred-challenges http-01 \
    --authenticator "$authenticator" \
    --webroot-path=/var/www/letsencrypt \
    --email "$CERTBOT_EMAIL" \
    --server "$letsencrypt_url" \
    --rsa-key-size "$RSA_KEY_SIZE" \
    --elliptic-curve "$ELLIPTIC_CURVE" \
    --key-type "$key_type" \
    --cert-name "$cert_name" \
    "${domain_args[@]}" \
    --debug "${force_renew[@]}"
}

declare -A certificates=()
collect_certificates certificates

for cert_name in "${!certificates[@]}"; do
  lower=${cert_name,,}
  if [[ "$lower" =~ (^|[-.])(ecdsa|ecc)([-.]|$) ]]; then key_type=ecdsa
  elif [[ "$lower" =~ (^|[-.])rsa([-.]|$) ]]; then key_type=rsa
  elif [ "${USE_ECDSA:-}" = 0 ]; then key_type=rsa
  else key_type=ecdsa; fi
  read -r -a server_names <<< "${certificates[$cert_name]}"
  if ! get_certificate "$cert_name" "$key_type" "${server_names[@]}"; then
    error "Certbot failed for '$cert_name'. Check the logs for details."
  fi
done

finish_renewal
