# ensure_certificate: wait, at most $2 seconds, until port 443 of the proxy serves the certificate
# of domain $1 from live/$1/; then say so, or fail with what to check and certbot's last words.
# $1: domain  $2: seconds  $3: what to check (the deploy's message)
end=$(( $(date +%s) + $2 ))
# certbot's attempt starts with the SIGHUP sent just before this script: a minute of margin
since="$(( $2 + 60 ))s"
while :; do
    c=$(docker ps -q --filter "label=com.docker.compose.project=$MASTODON_PROJECT" \
        --filter label=com.docker.compose.service=nginx --filter status=running 2>/dev/null | head -n 1)
    # shellcheck disable=SC2016 # expanded in the container
    if [ -n "$c" ] && docker exec "$c" sh -c '
            f=$(openssl x509 -in "/etc/letsencrypt/live/$1/fullchain.pem" -noout -fingerprint -sha256 2>/dev/null)
            s=$(openssl s_client -connect 127.0.0.1:443 -servername "$1" </dev/null 2>/dev/null \
                | openssl x509 -noout -fingerprint -sha256 2>/dev/null)
            [ -n "$f" ] && [ "$f" = "$s" ]' mastodon-wait-for-certificate "$1" 2>/dev/null; then
        echo "443 serves the certificate of $1"
        exit 0
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
        echo "$3" >&2
        if [ -n "$c" ]; then
            echo "certbot's last words:" >&2
            docker logs --since "$since" "$c" 2>&1 | grep -iE 'certbot failed|error|problem|detail' | tail -n 5 >&2
        fi
        exit 1
    fi
    sleep 2
done
