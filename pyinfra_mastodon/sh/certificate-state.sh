# CertificateState: what the nginx-certbot container has for domain $1, asked inside it (the image
# has openssl; the host may not). Prints "proxy down", or one line per item:
#   cert yes|no    live/$1/ has a certificate and its key
#   served yes|no  port 443 hands out that very certificate for $1
#   nokey yes|no   the image parked the server block (a failed request: $1.conf.nokey)
#   server URL     the ACME directory of its renewal configuration ("none": not certbot's, e.g. local CA)
#   expires DATE   when it expires (openssl's notAfter)
c=$(docker ps -q --filter "label=com.docker.compose.project=$MASTODON_PROJECT" \
    --filter label=com.docker.compose.service=nginx --filter label=com.docker.compose.oneoff=False \
    --filter status=running 2>/dev/null | head -n 1)
if [ -z "$c" ]; then
    echo "proxy down"
    exit 0
fi
# shellcheck disable=SC2016 # expanded in the container
docker exec "$c" sh -c '
    live=/etc/letsencrypt/live/$1
    if [ -s "$live/fullchain.pem" ] && [ -s "$live/privkey.pem" ]; then
        echo "cert yes"
        file=$(openssl x509 -in "$live/fullchain.pem" -noout -fingerprint -sha256 2>/dev/null)
        served=$(openssl s_client -connect 127.0.0.1:443 -servername "$1" </dev/null 2>/dev/null \
            | openssl x509 -noout -fingerprint -sha256 2>/dev/null)
        if [ -n "$file" ] && [ "$file" = "$served" ]; then echo "served yes"; else echo "served no"; fi
        echo "expires $(openssl x509 -in "$live/fullchain.pem" -noout -enddate 2>/dev/null | cut -d= -f2)"
    else
        echo "cert no"
        echo "served no"
    fi
    if [ -e "/etc/nginx/user_conf.d/$1.conf.nokey" ]; then echo "nokey yes"; else echo "nokey no"; fi
    server=$(sed -n "s/^server *= *//p" "/etc/letsencrypt/renewal/$1.conf" 2>/dev/null | head -n 1)
    echo "server ${server:-none}"
' mastodon-certificate-state "$1" 2>/dev/null || echo "proxy down"
