#!/bin/bash
# Stand-in for jonasal/nginx-certbot src/scripts/create_dhparams.sh: only the ssl_dhparam files that
# a conf names are made, when missing or not a DH PARAMETERS file, with `openssl dhparam` of
# DHPARAM_SIZE (default 2048) bits. Written for the stand-in (see ../README.md).
set -e
# shellcheck source=SCRIPTDIR/util.sh
. "$(cd "$(dirname "$0")" && pwd)/util.sh"

for conf in /etc/nginx/conf.d/*.conf*; do
  [ -e "$conf" ] || continue
  while read -r dh; do
    [ -n "$dh" ] || continue
    if [ -f "$dh" ] && grep -q "END DH PARAMETERS" "$dh"; then continue; fi
    warning "Couldn't find the dhparam file '$dh'; creating it..."
    mkdir -p "$(dirname "$dh")"
    rm -f "$dh"
    info "Creating a ${DHPARAM_SIZE:=2048} bit Diffie-Hellman parameter in '$dh' (this may take long)"
    openssl dhparam -out "$dh" "$DHPARAM_SIZE"
    chmod 600 "$dh"
  done < <(directive_values ssl_dhparam "$conf")
done
