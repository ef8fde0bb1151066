#!/bin/bash
# Mirrors docker-library/postgres docker-entrypoint.sh for what the deploy uses.
set -Eeo pipefail
if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi

if [ "$1" != 'postgres' ]; then exec "$@"; fi

mkdir -p "$PGDATA"
chmod 00700 "$PGDATA" || :
mkdir -p /var/run/postgresql || :
chmod 03775 /var/run/postgresql || :

if [ "$(id -u)" = '0' ]; then
  find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
  find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_USER:=postgres}"
  : "${POSTGRES_DB:=$POSTGRES_USER}"
  : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
    cat >&2 <<'EOM'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all connections without a password.
EOM
    exit 1
  fi
  # initdb wants a passwd entry for the current uid: fake one with nss_wrapper
  wrapper_dir=
  if ! getent passwd "$(id -u)" >/dev/null 2>&1; then
    wrapper_dir="$(mktemp -d)"
    { cat /etc/passwd; echo "postgres:x:$(id -u):$(id -g):PostgreSQL:$PGDATA:/bin/false"; } > "$wrapper_dir/passwd"
    { cat /etc/group; echo "postgres:x:$(id -g):"; } > "$wrapper_dir/group"
    export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libnss_wrapper.so NSS_WRAPPER_PASSWD="$wrapper_dir/passwd" NSS_WRAPPER_GROUP="$wrapper_dir/group"
  fi
  pwargs=()
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    pwfile="$(mktemp)"; printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"; pwargs=(--pwfile="$pwfile")
  fi
  # shellcheck disable=SC2086
  initdb --username="$POSTGRES_USER" --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} "${pwargs[@]}" -D "$PGDATA"
  [ -n "${pwfile:-}" ] && rm -f "$pwfile"
  if [ -n "$wrapper_dir" ]; then unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP; rm -rf "$wrapper_dir"; fi
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
    echo '********************************************************************************'
    echo 'WARNING: POSTGRES_HOST_AUTH_METHOD has been set to "trust". This will allow'
    echo '         anyone with access to the Postgres port to access your database without'
    echo '         a password, even if POSTGRES_PASSWORD is set.'
    echo '********************************************************************************'
  fi
  if [ "$POSTGRES_DB" != 'postgres' ]; then
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --dbname postgres \
      -c "CREATE DATABASE \"$POSTGRES_DB\";"
    pg_ctl -D "$PGDATA" -m fast -w stop
  fi
  echo
  echo 'PostgreSQL init process complete; ready for start up.'
  echo
else
  echo
  echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
  echo
fi
exec "$@"
