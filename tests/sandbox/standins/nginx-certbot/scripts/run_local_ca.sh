#!/bin/bash
# Stand-in for jonasal/nginx-certbot src/scripts/run_local_ca.sh (USE_LOCAL_CA=1), same rules:
# - the CA (LOCAL_CA_DIR, default /etc/local_ca) is made only where its files are missing: an RSA
#   key of RSA_KEY_SIZE bits, a self-signed root valid LOCAL_CA_ROOT_CERT_VALIDITY days (default 30),
#   a random serial and an index, as `openssl ca` wants;
# - on EVERY run, each certificate name found in conf.d gets a NEW RSA key and a new certificate
#   (90 days, `openssl ca`), valid or not; chain.pem is the root, fullchain.pem leaf + root;
# - then auto_enable_configs, `nginx -t` (no reload when it fails) and `nginx -s reload`.
# Written for the stand-in (see ../README.md), not copied from upstream.
set -e
# shellcheck source=SCRIPTDIR/util.sh
. "$(cd "$(dirname "$0")" && pwd)/util.sh"

: "${LOCAL_CA_DIR:=/etc/local_ca}"
CA_KEY=$LOCAL_CA_DIR/caPrivkey.pem
CA_CRT=$LOCAL_CA_DIR/caCert.pem
CA_DB=$LOCAL_CA_DIR/index.txt
CA_SRL=$LOCAL_CA_DIR/serial.txt
CA_NEW=$LOCAL_CA_DIR/new_certs

info "Starting certificate renewal process with local CA"
if [ -z "${CERTBOT_EMAIL:-}" ]; then
  error "CERTBOT_EMAIL environment variable undefined; local CA will do nothing!"
  exit 1
fi
: "${RSA_KEY_SIZE:=2048}"

# openssl configuration: `openssl ca` settings, the request section, and the two extension sets;
# callers append a [dn_section] or an [alt_names] section.
ca_config() {
  cat <<EOC
[ca]
default_ca = standin_ca
[standin_ca]
private_key = $CA_KEY
certificate = $CA_CRT
database = $CA_DB
serial = $CA_SRL
new_certs_dir = $CA_NEW
default_days = 90
default_md = sha256
email_in_dn = yes
unique_subject = no
policy = standin_policy
[standin_policy]
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
organizationalUnitName = optional
commonName = supplied
emailAddress = supplied
[req]
default_md = sha256
prompt = no
utf8 = yes
string_mask = utf8only
distinguished_name = dn_section
[ca_cert]
basicConstraints = critical, CA:true
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always, issuer:always
keyUsage = critical, keyCertSign, cRLSign
subjectAltName = email:copy
issuerAltName = issuer:copy
[server_cert]
basicConstraints = critical, CA:false
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
keyUsage = keyEncipherment, dataEncipherment, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
issuerAltName = issuer:copy
subjectAltName = @alt_names
EOC
  printf '%s\n' "$@"
}

make_ca() {
  mkdir -p "$LOCAL_CA_DIR" "$CA_NEW"
  if [ ! -f "$CA_KEY" ]; then
    info "Generating new private key for local CA"
    openssl genrsa -out "$CA_KEY" "$RSA_KEY_SIZE"
  fi
  if [ ! -f "$CA_CRT" ]; then
    info "Creating new self-signed certificate for local CA"
    if [ -z "${LOCAL_CA_ROOT_CERT_VALIDITY:-}" ]; then
      debug "LOCAL_CA_ROOT_CERT_VALIDITY unset, defaulting to 30 days"
      LOCAL_CA_ROOT_CERT_VALIDITY=30
    else
      info "LOCAL_CA_ROOT_CERT_VALIDITY set to custom value '$LOCAL_CA_ROOT_CERT_VALIDITY'"
    fi
    openssl req -x509 -new -nodes -extensions ca_cert -days "$LOCAL_CA_ROOT_CERT_VALIDITY" \
      -config <(ca_config '[dn_section]' 'countryName = SE' '0.organizationName = github.com/JonasAlfredsson' \
                          'organizationalUnitName = docker-nginx-certbot' 'commonName = Local Debug CA' \
                          "emailAddress = $CERTBOT_EMAIL") \
      -key "$CA_KEY" -out "$CA_CRT"
  fi
  if [ ! -s "$CA_SRL" ]; then
    info "Creating new serial file for local CA"
    openssl rand -hex 20 > "$CA_SRL"
  fi
  if [ ! -f "$CA_DB" ]; then
    info "Creating new index file for local CA"
    touch "$CA_DB"
  fi
}

# sign NAME ALT_NAME_LINE...: a new key, a request, the CA's signature (errors are reported by the caller)
sign() {
  local name=$1 live=/etc/letsencrypt/live/$1
  shift
  mkdir -vp "$live"
  info "Generating new private key for '$name'"
  openssl genrsa -out "$live/privkey.pem" "$RSA_KEY_SIZE"
  info "Generating certificate signing request for '$name'"
  openssl req -new -config <(ca_config '[dn_section]' "commonName = $name" "emailAddress = $CERTBOT_EMAIL") \
    -key "$live/privkey.pem" -out "$LOCAL_CA_DIR/$name.csr"
  info "Using local CA to sign certificate for '$name'"
  openssl ca -batch -notext -config <(ca_config '[alt_names]' "$@") -extensions server_cert \
    -in "$LOCAL_CA_DIR/$name.csr" -out "$live/cert.pem"
  cp "$CA_CRT" "$live/chain.pem"
  cat "$live/cert.pem" "$live/chain.pem" > "$live/fullchain.pem"
  rm "$LOCAL_CA_DIR/$name.csr"
}

make_ca

declare -A certificates=()
collect_certificates certificates

for cert_name in "${!certificates[@]}"; do
  alt=() ndns=0 nip=0
  for server in ${certificates[$cert_name]}; do
    if is_ip "$server"; then nip=$((nip + 1)); alt+=("IP.$nip=$server")
    else ndns=$((ndns + 1)); alt+=("DNS.$ndns=$server"); fi
  done
  if ! sign "$cert_name" "${alt[@]}"; then
    error "Local CA failed for '$cert_name'. Check the logs for details."
  fi
done

finish_renewal
