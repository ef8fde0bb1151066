#!/bin/bash
# Stand-in for docker-library/postgres 14/alpine3.23/docker-entrypoint.sh: the same steps in the same
# order (see README.md). Written for the stand-in, not copied from upstream. One addition for the
# tests: STANDIN_INIT_SECONDS (default 0) sleeps while the temporary init server runs.
set -Eeo pipefail

# VAR or VAR_FILE (both set is an error), else DEFAULT; exported, VAR_FILE unset
file_env() {
  local var=$1 file_var="${1}_FILE" value=${2:-}
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    printf >&2 'error: both %s and %s are set (but are exclusive)\n' "$var" "$file_var"
    exit 1
  fi
  if [ -n "${!var:-}" ]; then value=${!var}; elif [ -n "${!file_var:-}" ]; then value=$(< "${!file_var}"); fi
  export "$var"="$value"
  unset "$file_var"
}

setup_env() {
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  : "${POSTGRES_HOST_AUTH_METHOD:=}"
  DATABASE_ALREADY_EXISTS=
  if [ -s "$PGDATA/PG_VERSION" ]; then DATABASE_ALREADY_EXISTS=true; fi
}

create_directories() {
  mkdir -p "$PGDATA"
  chmod 00700 "$PGDATA" || :     # may fail (not the owner); PostgreSQL decides later
  mkdir -p /var/run/postgresql || :
  chmod 03775 /var/run/postgresql || :
  if [ "$(id -u)" = 0 ]; then
    find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
    find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
  fi
}

verify_minimum_env() {
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    cat >&2 <<'EOM'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
       connections without a password. This is *not* recommended.
EOM
    exit 1
  fi
  if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
    cat >&2 <<'EOM'
********************************************************************************
WARNING: POSTGRES_HOST_AUTH_METHOD has been set to "trust". This will allow
         anyone with access to the Postgres port to access your database without
         a password, even if POSTGRES_PASSWORD is set.
********************************************************************************
EOM
  fi
}

# initdb wants a passwd entry for the running uid: fake one with nss_wrapper when there is none
init_database_dir() {
  local uid gid lib
  uid=$(id -u); gid=$(id -g)
  if ! getent passwd "$uid" > /dev/null 2>&1; then
    for lib in /usr/lib/*/libnss_wrapper.so /usr/lib/libnss_wrapper.so; do
      [ -s "$lib" ] || continue
      NSS_WRAPPER_PASSWD=$(mktemp); NSS_WRAPPER_GROUP=$(mktemp)
      export LD_PRELOAD=$lib NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
      printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$uid" "$gid" "$PGDATA" > "$NSS_WRAPPER_PASSWD"
      printf 'postgres:x:%s:\n' "$gid" > "$NSS_WRAPPER_GROUP"
      break
    done
  fi
  # the password file always has a line, even for an empty password
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words (upstream: eval)
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
  if [[ "${LD_PRELOAD:-}" == */libnss_wrapper.so ]]; then
    rm -f "$NSS_WRAPPER_PASSWD" "$NSS_WRAPPER_GROUP"
    unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
  fi
}

# "host all all all METHOD", METHOD defaulting to the server's password_encryption
setup_hba_conf() {
  [ "${1:-}" = postgres ] && shift
  : "${POSTGRES_HOST_AUTH_METHOD:=$(postgres -C password_encryption "$@")}"
  {
    printf '\n'
    if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then printf '# warning trust is enabled for all connections\n'; fi
    printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
  } >> "$PGDATA/pg_hba.conf"
}

# the temporary server: Unix socket only (listen_addresses=''), pg_ctl waits until it accepts
temp_server_start() {
  [ "${1:-}" = postgres ] && shift
  set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
  NOTIFY_SOCKET='' PGUSER="${PGUSER:-$POSTGRES_USER}" pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}
temp_server_stop() {
  PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

process_sql() {
  local runner=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [ -n "$POSTGRES_DB" ]; then runner+=(--dbname "$POSTGRES_DB"); fi
  PGHOST='' PGHOSTADDR='' "${runner[@]}" "$@"
}

# CREATE DATABASE POSTGRES_DB unless it exists (for "postgres" it always does: nothing is created)
setup_db() {
  local exists db=$POSTGRES_DB
  exists=$(POSTGRES_DB='' process_sql --dbname postgres --set db="$db" --tuples-only \
             <<< "SELECT 1 FROM pg_database WHERE datname = :'db' ;")
  if [ -z "$exists" ]; then
    POSTGRES_DB='' process_sql --dbname postgres --set db="$db" <<< 'CREATE DATABASE :"db" ;'
    printf '\n'
  fi
}

process_init_files() {
  local f
  printf '\n'
  for f; do
    case "$f" in
      *.sh) if [ -x "$f" ]; then printf '%s: running %s\n' "$0" "$f"; "$f"
            else printf '%s: sourcing %s\n' "$0" "$f"; # shellcheck disable=SC1090
              . "$f"; fi ;;
      *.sql) printf '%s: running %s\n' "$0" "$f"; process_sql -f "$f"; printf '\n' ;;
      *.sql.gz) printf '%s: running %s\n' "$0" "$f"; gunzip -c "$f" | process_sql; printf '\n' ;;
      *) printf '%s: ignoring %s\n' "$0" "$f" ;;
    esac
    printf '\n'
  done
}

want_help() {
  local arg
  for arg; do
    case "$arg" in -'?'|--help|--describe-config|-V|--version) return 0 ;; esac
  done
  return 1
}

main() {
  if [ "${1:0:1}" = - ]; then set -- postgres "$@"; fi
  if [ "$1" = postgres ] && ! want_help "$@"; then
    setup_env
    create_directories
    if [ "$(id -u)" = 0 ]; then
      # upstream: gosu postgres; Debian has setpriv
      exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
    fi
    if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
      verify_minimum_env
      ls /docker-entrypoint-initdb.d/ > /dev/null
      init_database_dir
      setup_hba_conf "$@"
      export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
      temp_server_start "$@"
      if [ "${STANDIN_INIT_SECONDS:-0}" != 0 ]; then
        echo "stand-in: the temporary server (Unix socket only) stays up ${STANDIN_INIT_SECONDS}s (STANDIN_INIT_SECONDS)"
        sleep "$STANDIN_INIT_SECONDS"
      fi
      setup_db
      process_init_files /docker-entrypoint-initdb.d/*
      temp_server_stop
      unset PGPASSWORD
      printf '\nPostgreSQL init process complete; ready for start up.\n\n'
    else
      printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
    fi
  fi
  exec "$@"
}

main "$@"
