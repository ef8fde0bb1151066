#!/bin/sh
# Stand-in entrypoint of edoburu/pgbouncer, written for the stand-in: upstream's entrypoint.sh steps
# in upstream's order (README.md), in POSIX sh (Debian's dash; upstream runs Alpine's ash). No upstream
# source is copied.
set -e

CONFIG_DIR=/etc/pgbouncer
CONFIG_FILE="$CONFIG_DIR/pgbouncer.ini"
AUTH_FILE_PATH="${AUTH_FILE:-$CONFIG_DIR/userlist.txt}"

[ -e "$AUTH_FILE_PATH" ] || touch "$AUTH_FILE_PATH"

# DATABASE_URL: postgres://user:password@host:port/name, over the DB_* variables
parse_url() {
    rest=${1#*://}
    case "$rest" in
        *@*)
            userpass=${rest%@*}
            rest=${rest##*@}
            case "$userpass" in
                *:*) DB_USER=${userpass%%:*}; DB_PASSWORD=${userpass#*:} ;;
                *) DB_USER=$userpass ;;
            esac
            ;;
    esac
    hostport=${rest%%/*}
    case "$hostport" in
        *:*) DB_HOST=${hostport%%:*}; DB_PORT=${hostport#*:} ;;
        *) DB_HOST=$hostport ;;
    esac
    case "$rest" in */*) DB_NAME=${rest#*/} ;; esac
}

# The user's line in the auth file, once: the password itself for plain and scram-sha-256 (PgBouncer
# needs it to log in to the server with SCRAM), else its md5 hash.
write_userlist() {
    if [ -n "${DB_USER:-}" ] && [ -n "${DB_PASSWORD:-}" ] && [ -e "$AUTH_FILE_PATH" ] \
        && ! grep -q "^\"${DB_USER}\"" "$AUTH_FILE_PATH"; then
        if [ "${AUTH_TYPE:-}" = plain ] || [ "${AUTH_TYPE:-}" = scram-sha-256 ]; then
            pass=$DB_PASSWORD
        else
            pass="md5$(printf '%s%s' "$DB_PASSWORD" "$DB_USER" | md5sum | cut -f 1 -d ' ')"
        fi
        printf '"%s" "%s"\n' "$DB_USER" "$pass" >> "$AUTH_FILE_PATH"
        echo "Wrote authentication credentials for '${DB_USER}' to ${AUTH_FILE_PATH}"
    fi
}

write_database_entry() {
    : "${DB_HOST:?Setup pgbouncer config error! You must set DB_HOST env}"
    printf '%s = host=%s port=%s auth_user=%s\n' "${DB_NAME:-*}" "$DB_HOST" "${DB_PORT:-5432}" "${DB_USER:-postgres}" >> "$CONFIG_FILE"
    [ -z "${CLIENT_ENCODING:-}" ] || printf 'client_encoding = %s\n' "$CLIENT_ENCODING" >> "$CONFIG_FILE"
}

if [ -n "${DATABASE_URLS:-}" ]; then
    for url in $(echo "$DATABASE_URLS" | tr , ' '); do parse_url "$url"; write_userlist; done
else
    [ -z "${DATABASE_URL:-}" ] || parse_url "$DATABASE_URL"
    write_userlist
fi

# "key = value" for each variable that is set (upstream's ${VAR:+key = value} lines)
optional() {
    for pair in "$@"; do
        var=${pair%%:*} key=${pair#*:}
        eval "value=\${$var:-}"
        [ -z "$value" ] || printf '%s = %s\n' "$key" "$value"
    done
}

if [ ! -f "$CONFIG_FILE" ]; then
    echo "Creating pgbouncer config in ${CONFIG_DIR}"
    printf '################## Auto generated ##################\n[databases]\n' > "$CONFIG_FILE"
    if [ -n "${DATABASE_URLS:-}" ]; then
        for url in $(echo "$DATABASE_URLS" | tr , ' '); do parse_url "$url"; write_database_entry; done
    else
        [ -z "${DATABASE_URL:-}" ] || parse_url "$DATABASE_URL"
        write_database_entry
    fi
    {
        echo "[pgbouncer]"
        echo "listen_addr = ${LISTEN_ADDR:-0.0.0.0}"
        echo "listen_port = ${LISTEN_PORT:-5432}"
        echo "unix_socket_dir = ${UNIX_SOCKET_DIR:-}"
        echo "user = postgres"
        echo "auth_file = ${AUTH_FILE_PATH}"
        optional AUTH_HBA_FILE:auth_hba_file
        echo "auth_type = ${AUTH_TYPE:-md5}"
        optional AUTH_USER:auth_user AUTH_QUERY:auth_query AUTH_DBNAME:auth_dbname POOL_MODE:pool_mode \
            MAX_CLIENT_CONN:max_client_conn POOL_SIZE:pool_size DEFAULT_POOL_SIZE:default_pool_size \
            MIN_POOL_SIZE:min_pool_size RESERVE_POOL_SIZE:reserve_pool_size \
            RESERVE_POOL_TIMEOUT:reserve_pool_timeout MAX_DB_CONNECTIONS:max_db_connections \
            MAX_USER_CONNECTIONS:max_user_connections SERVER_ROUND_ROBIN:server_round_robin
        echo "ignore_startup_parameters = ${IGNORE_STARTUP_PARAMETERS:-extra_float_digits}"
        optional DISABLE_PQEXEC:disable_pqexec APPLICATION_NAME_ADD_HOST:application_name_add_host \
            TIMEZONE:timezone MAX_PREPARED_STATEMENTS:max_prepared_statements \
            LOG_CONNECTIONS:log_connections LOG_DISCONNECTIONS:log_disconnections \
            LOG_POOLER_ERRORS:log_pooler_errors LOG_STATS:log_stats STATS_PERIOD:stats_period VERBOSE:verbose
        echo "admin_users = ${ADMIN_USERS:-postgres}"
        optional STATS_USERS:stats_users LOGFILE:logfile \
            SERVER_RESET_QUERY:server_reset_query SERVER_RESET_QUERY_ALWAYS:server_reset_query_always \
            SERVER_CHECK_DELAY:server_check_delay SERVER_CHECK_QUERY:server_check_query \
            SERVER_LIFETIME:server_lifetime SERVER_IDLE_TIMEOUT:server_idle_timeout \
            SERVER_CONNECT_TIMEOUT:server_connect_timeout SERVER_LOGIN_RETRY:server_login_retry \
            CLIENT_LOGIN_TIMEOUT:client_login_timeout AUTODB_IDLE_TIMEOUT:autodb_idle_timeout \
            DNS_MAX_TTL:dns_max_ttl DNS_NXDOMAIN_TTL:dns_nxdomain_ttl \
            CLIENT_TLS_SSLMODE:client_tls_sslmode CLIENT_TLS_KEY_FILE:client_tls_key_file \
            CLIENT_TLS_CERT_FILE:client_tls_cert_file CLIENT_TLS_CA_FILE:client_tls_ca_file \
            CLIENT_TLS_PROTOCOLS:client_tls_protocols CLIENT_TLS_CIPHERS:client_tls_ciphers \
            CLIENT_TLS_ECDHCURVE:client_tls_ecdhcurve CLIENT_TLS_DHEPARAMS:client_tls_dheparams \
            SERVER_TLS_SSLMODE:server_tls_sslmode SERVER_TLS_CA_FILE:server_tls_ca_file \
            SERVER_TLS_KEY_FILE:server_tls_key_file SERVER_TLS_CERT_FILE:server_tls_cert_file \
            SERVER_TLS_PROTOCOLS:server_tls_protocols SERVER_TLS_CIPHERS:server_tls_ciphers \
            QUERY_TIMEOUT:query_timeout QUERY_WAIT_TIMEOUT:query_wait_timeout \
            CLIENT_IDLE_TIMEOUT:client_idle_timeout IDLE_TRANSACTION_TIMEOUT:idle_transaction_timeout \
            PKT_BUF:pkt_buf MAX_PACKET_SIZE:max_packet_size LISTEN_BACKLOG:listen_backlog \
            SBUF_LOOPCNT:sbuf_loopcnt SUSPEND_TIMEOUT:suspend_timeout TCP_DEFER_ACCEPT:tcp_defer_accept \
            TCP_KEEPALIVE:tcp_keepalive TCP_KEEPCNT:tcp_keepcnt TCP_KEEPIDLE:tcp_keepidle \
            TCP_KEEPINTVL:tcp_keepintvl TCP_USER_TIMEOUT:tcp_user_timeout
        echo "################## end file ##################"
    } >> "$CONFIG_FILE"
    cat "$CONFIG_FILE"
fi

echo "Starting $*..."
exec "$@"
