"""PostgreSQL access (psycopg2) configured like Mastodon's config/database.yml, plus the event log."""

import os
import sys
import time

EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS standin_events (
    id serial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    event text NOT NULL,
    version text,
    detail text
)
"""


class DatabaseError(Exception):
    """Raised with a Rails-like message (class name + text) when the database cannot be used."""

    def __init__(self, klass, message):
        super().__init__(f"{klass}: {message}")
        self.klass = klass
        self.message = message


def connect_params(env=None, dbname=None):
    env = os.environ if env is None else env
    url = env.get("DATABASE_URL", "").strip()
    if url:
        params = {"dsn": url}
        if dbname:
            params["dbname"] = dbname
    else:
        params = {
            "host": env.get("DB_HOST") or "localhost",
            "port": env.get("DB_PORT") or "5432",
            "user": env.get("DB_USER") or "mastodon",
            "dbname": dbname or env.get("DB_NAME") or "mastodon_production",
        }
        if env.get("DB_PASS"):
            params["password"] = env["DB_PASS"]
        params["sslmode"] = env.get("DB_SSLMODE") or "prefer"
    params["connect_timeout"] = int(env.get("STANDIN_DB_CONNECT_TIMEOUT", "5"))
    params["application_name"] = "mastodon-standin"
    return params


def replica_enabled(env=None):
    """DatabaseHelper.replica_enabled?: only REPLICA_DB_NAME or REPLICA_DATABASE_URL turn the replica on."""
    env = os.environ if env is None else env
    return bool(env.get("REPLICA_DB_NAME") or env.get("REPLICA_DATABASE_URL"))


def replica_env(env=None):
    """
    config/database.yml's production.replica as DB_* variables: each REPLICA_DB_* falls back on its DB_*
    (REPLICA_DATABASE_URL on nothing), so connect_params reads it like the primary.
    """
    env = os.environ if env is None else env
    out = {key: value for key, value in env.items() if not key.startswith(("DB_", "DATABASE_URL"))}
    out["DATABASE_URL"] = env.get("REPLICA_DATABASE_URL", "")
    for key in ("HOST", "PORT", "USER", "NAME", "PASS", "SSLMODE"):
        value = env.get(f"REPLICA_DB_{key}") or env.get(f"DB_{key}")
        if value:
            out[f"DB_{key}"] = value
    return out


def connect_reading(env=None):
    """
    ApplicationRecord.connected_to(role: :reading, prevent_writes: true) (DatabaseHelper#with_read_replica):
    the replica when it is enabled, else the primary. Returns (connection, "replica" | "primary").
    """
    import psycopg2

    env = os.environ if env is None else env
    if not replica_enabled(env):
        return connect(env), "primary"
    try:
        conn = psycopg2.connect(**connect_params(replica_env(env)))
    except psycopg2.OperationalError as exc:
        raise DatabaseError("ActiveRecord::ConnectionNotEstablished", str(exc).strip()) from exc
    conn.autocommit = True
    conn.set_session(readonly=True, autocommit=True)
    return conn, "replica"


def database_name(env=None):
    env = os.environ if env is None else env
    if env.get("DATABASE_URL", "").strip():
        import psycopg2.extensions

        return psycopg2.extensions.parse_dsn(env["DATABASE_URL"]).get("dbname", "")
    return env.get("DB_NAME") or "mastodon_production"


def connect(env=None, dbname=None, autocommit=True):
    """Open a connection or raise DatabaseError(ActiveRecord::ConnectionNotEstablished / NoDatabaseError)."""
    import psycopg2

    try:
        conn = psycopg2.connect(**connect_params(env, dbname))
    except psycopg2.OperationalError as exc:
        text = str(exc).strip()
        if "does not exist" in text and "database" in text:
            name = dbname or database_name(env)
            raise DatabaseError(
                "ActiveRecord::NoDatabaseError",
                f"We could not find your database: {name}. "
                "Available database configurations can be found in config/database.yml.",
            ) from exc
        raise DatabaseError("ActiveRecord::ConnectionNotEstablished", text) from exc
    conn.autocommit = True
    ensure_events_table(conn)  # lazily, in every command, so that events can always be recorded
    conn.autocommit = autocommit
    return conn


def ensure_events_table(conn):
    """Create standin_events if needed (autocommit connection); tolerate a concurrent creator."""
    import psycopg2

    for _ in range(5):
        try:
            with conn.cursor() as cur:
                cur.execute(EVENTS_DDL)
            return
        except (psycopg2.errors.UniqueViolation, psycopg2.errors.DuplicateTable):
            time.sleep(0.1)


def record_event(conn, event, version, detail=None):
    """Insert an event in the connection's current transaction (or immediately in autocommit)."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO standin_events (event, version, detail) VALUES (%s, %s, %s)",
            (event, version, detail),
        )


def table_exists(conn, name):
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{name}",))
        return cur.fetchone()[0]


def record_event_with_retry(event, version, detail=None, deadline_seconds=60.0, log=None):
    """For long-running services: retry until the DB answers, never raise. Returns True on success."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    deadline = time.monotonic() + deadline_seconds
    last = None
    while True:
        try:
            conn = connect()
            try:
                record_event(conn, event, version, detail)
            finally:
                conn.close()
            return True
        except Exception as exc:  # noqa: BLE001 - a stand-in service must keep running
            last = exc
        if time.monotonic() >= deadline:
            log(f"[stand-in] could not record event {event!r}: {last}")
            return False
        time.sleep(1.0)
