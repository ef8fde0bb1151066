"""`bin/rails` / `bundle exec rails|rake` database tasks with Mastodon 4.6 + Rails 8.1 semantics."""

import hashlib
import os
import secrets
import sys
import time

from . import image_version
from .boot import boot_rails, skip_post_deployment_migrations
from .db import DatabaseError, connect, database_name, record_event, table_exists
from .migrations import SCHEMA_TABLES, migrations_for, pending, runnable, schema_version

MIN_PG_VERSION_NUM = 140000
ZERO_DOWNTIME_MIN_SCHEMA = 20230907150100
ADVISORY_LOCK_ID = 2053462845  # any constant; Rails derives one from the database name

SCHEMA_MIGRATIONS_DDL = "CREATE TABLE IF NOT EXISTS schema_migrations (version character varying PRIMARY KEY)"
AR_METADATA_DDL = """CREATE TABLE IF NOT EXISTS ar_internal_metadata (
    key character varying PRIMARY KEY,
    value character varying,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL)"""


class Abort(Exception):
    """Ruby `abort`: message on stderr, exit 1."""


class RakeError(Exception):
    """An exception escaping a rake task: `bin/rails aborted!` + class + message, exit 1."""

    def __init__(self, klass, message):
        super().__init__(message)
        self.klass = klass
        self.message = message


def out(text=""):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- helpers


def applied_versions(conn):
    if not table_exists(conn, "schema_migrations"):
        return set()
    with conn.cursor() as cur:
        cur.execute("SELECT version FROM schema_migrations")
        return {row[0] for row in cur.fetchall()}


def current_version(conn):
    versions = applied_versions(conn)
    return max((int(v) for v in versions if v.isdigit()), default=0)


def ensure_internal_tables(conn, environment="production"):
    with conn.cursor() as cur:
        cur.execute(SCHEMA_MIGRATIONS_DDL)
        cur.execute(AR_METADATA_DDL)
        cur.execute(
            """INSERT INTO ar_internal_metadata (key, value, created_at, updated_at)
               VALUES ('environment', %s, now(), now())
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
            (environment,),
        )


class migration_lock:
    """Rails' advisory lock around migrations (ActiveRecord::ConcurrentMigrationError)."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_ID,))
            if not cur.fetchone()[0]:
                raise RakeError(
                    "ActiveRecord::ConcurrentMigrationError",
                    "Cannot run migrations because another migration process is currently running.",
                )
        return self

    def __exit__(self, *exc):
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_ID,))
        return False


def announce(migration, message):
    text = f"{migration.version} {migration.name}: {message}"
    out("== %s %s" % (text, "=" * max(0, 75 - len(text))))


def run_migration(conn, migration, version, env):
    """One migration in one transaction, with its schema_migrations row and its `migration` event."""
    started = time.monotonic()
    announce(migration, "migrating")
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            for statement in migration.statements:
                first_line = " ".join(statement.split())[:70]
                out(f"-- execute({first_line!r})")
                t0 = time.monotonic()
                cur.execute(statement)
                out("   -> %.4fs" % (time.monotonic() - t0))
            if env.get("STANDIN_FAIL_MIGRATION", "").strip() == migration.version:
                raise RakeError(
                    "StandardError",
                    "An error has occurred, this and all later migrations canceled: (StandardError)\n\n"
                    f"[stand-in] migration {migration.version} failed on purpose "
                    "(STANDIN_FAIL_MIGRATION is set)",
                )
            cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,))
        record_event(conn, "migration", version, f"{migration.version} {migration.kind}")
        conn.commit()
    except Exception:
        conn.rollback()
        conn.autocommit = True
        try:
            record_event(conn, "migration-failed", version, f"{migration.version} {migration.kind}")
        except Exception:  # noqa: BLE001
            pass
        raise
    conn.autocommit = True
    announce(migration, "migrated (%.4fs)" % (time.monotonic() - started))


def migrate(conn, version, env):
    """ActiveRecord's migrate: run pending migrations, in version order."""
    skip = skip_post_deployment_migrations(env)
    migrations = migrations_for(version)
    with migration_lock(conn):
        ensure_internal_tables(conn)
        todo = pending(migrations, applied_versions(conn), skip)
        for migration in todo:
            run_migration(conn, migration, version, env)
    return todo


def load_schema(conn, version):
    """Rails' db:schema:load of this version's db/schema.rb: every migration, pre AND post (#34089)."""
    migrations = migrations_for(version)
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            for table in SCHEMA_TABLES:
                cur.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
            cur.execute("DROP SEQUENCE IF EXISTS accounts_id_seq CASCADE")
            cur.execute("DROP TABLE IF EXISTS schema_migrations")
            for migration in migrations:
                for statement in migration.statements:
                    cur.execute(statement)
            ensure_internal_tables(conn)
            for migration in migrations:
                cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,))
            sha1 = hashlib.sha1(";".join(m.version for m in migrations).encode()).hexdigest()
            cur.execute(
                """INSERT INTO ar_internal_metadata (key, value, created_at, updated_at)
                   VALUES ('schema_sha1', %s, now(), now())
                   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
                (sha1,),
            )
        record_event(conn, "schema-load", version, schema_version(migrations))
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.autocommit = True


def abort_if_pending(conn, version, env):
    todo = pending(migrations_for(version), applied_versions(conn), skip_post_deployment_migrations(env))
    if todo:
        out(f"You have {len(todo)} pending {'migrations:' if len(todo) > 1 else 'migration:'}")
        for migration in todo:
            out(f"  {migration.version} {migration.name}")
        raise Abort("Run `bin/rails db:migrate` to update your database then try again.")


def seed(conn, version):
    """db/seeds/*.rb of Mastodon 4.6 in production (find_or_create_by, idempotent)."""
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            # 01_web_app.rb
            cur.execute("SELECT 1 FROM oauth_applications WHERE name = 'Web' AND superapp")
            if cur.fetchone() is None:
                cur.execute(
                    """INSERT INTO oauth_applications (name, uid, secret, redirect_uri, scopes, superapp)
                       VALUES ('Web', %s, %s, 'urn:ietf:wg:oauth:2.0:oob', 'read write follow push', true)""",
                    (secrets.token_urlsafe(32), secrets.token_urlsafe(32)),
                )
            # 02_instance_actor.rb
            cur.execute(
                """INSERT INTO accounts (id, username, domain, actor_type)
                   VALUES (-99, 'mastodon.internal', NULL, 'Application')
                   ON CONFLICT (id) DO NOTHING"""
            )
            # 03_roles.rb (config/roles.yml); `everyone` has id -99 like UserRole::EVERYONE_ROLE_ID
            for role_id, name, position, permissions in (
                (-99, "", -1, 65536),
                (None, "Moderator", 10, 1308),
                (None, "Admin", 100, 983036),
                (None, "Owner", 1000, 1),
            ):
                if role_id is not None:
                    cur.execute(
                        """INSERT INTO user_roles (id, name, position, permissions) VALUES (%s, %s, %s, %s)
                           ON CONFLICT (id) DO NOTHING""",
                        (role_id, name, position, permissions),
                    )
                else:
                    cur.execute(
                        """INSERT INTO user_roles (name, position, permissions) VALUES (%s, %s, %s)
                           ON CONFLICT (name) DO NOTHING""",
                        (name, position, permissions),
                    )
        record_event(conn, "seed", version, None)
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.autocommit = True


def pre_migration_check(conn, env):
    """Mastodon's lib/tasks/db.rake `db:pre_migration_check` (enhances db:migrate only)."""
    with conn.cursor() as cur:
        cur.execute("SHOW server_version_num")
        pg_version = int(cur.fetchone()[0])
    if pg_version < MIN_PG_VERSION_NUM:
        raise Abort(
            "This version of Mastodon requires PostgreSQL 14.0 or newer. "
            "Please update PostgreSQL before updating Mastodon."
        )
    if skip_post_deployment_migrations(env) and current_version(conn) < ZERO_DOWNTIME_MIN_SCHEMA:
        raise Abort(
            "Zero-downtime migrations from Mastodon versions earlier than 4.2.0 are not supported.\n"
            "Please update to Mastodon 4.2.x first or upgrade by stopping all services and running "
            "migrations without `SKIP_POST_DEPLOYMENT_MIGRATIONS`."
        )


def create_database(env):
    """db:create: CREATE DATABASE through the `postgres` maintenance database; True if created."""
    name = database_name(env)
    try:
        conn = connect(env)
        conn.close()
        return False
    except DatabaseError as exc:
        if exc.klass != "ActiveRecord::NoDatabaseError":
            raise
    admin = connect(env, dbname="postgres")
    try:
        with admin.cursor() as cur:
            quoted = '"' + name.replace('"', '""') + '"'
            cur.execute(f"CREATE DATABASE {quoted} ENCODING 'UTF8'")
    finally:
        admin.close()
    out(f"Created database '{name}'")
    return True


# --------------------------------------------------------------------------- tasks


def task_migrate(env, version):
    conn = connect(env)
    try:
        pre_migration_check(conn, env)
        migrate(conn, version, env)
    finally:
        conn.close()


def task_prepare(env, version):
    create_database(env)
    conn = connect(env)
    try:
        if not table_exists(conn, "schema_migrations"):
            load_schema(conn, version)
            migrate(conn, version, env)  # a no-op right after the schema load (unless a newer file exists)
            seed(conn, version)
        else:
            migrate(conn, version, env)
    finally:
        conn.close()


def task_seed(env, version):
    conn = connect(env)
    try:
        abort_if_pending(conn, version, env)
        seed(conn, version)
    finally:
        conn.close()


def task_abort_if_pending(env, version):
    conn = connect(env)
    try:
        abort_if_pending(conn, version, env)
    finally:
        conn.close()


def task_status(env, version):
    conn = connect(env)
    try:
        if not table_exists(conn, "schema_migrations"):
            raise Abort("Schema migrations table does not exist yet.")
        applied = applied_versions(conn)
        known = {m.version: m for m in runnable(migrations_for(version), skip_post_deployment_migrations(env))}
        rows = []
        for v in sorted(set(known) | applied):
            status = "up" if v in applied else "down"
            name = known[v].humanized if v in known else "********** NO FILE **********"
            rows.append((status, v, name))
        out(f"\ndatabase: {database_name(env)}\n")
        out(f"{'Status'.center(8)}  {'Migration ID'.ljust(14)}  Migration Name")
        out("-" * 50)
        for status, v, name in rows:
            out(f"{status.center(8)}  {v.ljust(14)}  {name}")
        out()
    finally:
        conn.close()


def task_version(env, version):
    conn = connect(env)
    try:
        out(f"Current version: {current_version(conn)}")
    finally:
        conn.close()


def task_create(env, version):
    if not create_database(env):
        sys.stderr.write(f"Database '{database_name(env)}' already exists\n")


TASKS = {
    "db:migrate": task_migrate,
    "db:prepare": task_prepare,
    "db:seed": task_seed,
    "db:abort_if_pending_migrations": task_abort_if_pending,
    "db:migrate:status": task_status,
    "db:version": task_version,
    "db:create": task_create,
}


def main(argv, program="bin/rails"):
    """`rails TASK [TASK...]` / `rake TASK [TASK...]`. Returns the exit status."""
    tasks = [a for a in argv if not a.startswith("-")]
    if not tasks:
        sys.stderr.write(f"[stand-in] {program}: no task given; supported: {' '.join(sorted(TASKS))}\n")
        return 1
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        sys.stderr.write(
            f"{program} aborted!\nDon't know how to build task '{unknown[0]}' (See the list of available tasks "
            f"with `{program} --tasks`)\n[stand-in] supported tasks: {' '.join(sorted(TASKS))}\n"
        )
        return 1
    boot_rails()
    env = dict(os.environ)
    version = image_version()
    try:
        for task in tasks:
            TASKS[task](env, version)
    except Abort as exc:
        sys.stdout.flush()
        sys.stderr.write(f"{exc}\n")
        return 1
    except (RakeError, DatabaseError) as exc:
        sys.stdout.flush()
        sys.stderr.write(
            f"{program} aborted!\n{exc.klass}: {exc.message}\n\nTasks: TOP => {tasks[0]}\n"
            "(See full trace by running task with --trace)\n"
        )
        return 1
    except Exception as exc:  # psycopg2 errors etc.
        sys.stdout.flush()
        klass = "ActiveRecord::StatementInvalid" if type(exc).__module__.startswith("psycopg2") else type(exc).__name__
        sys.stderr.write(f"{program} aborted!\n{klass}: {exc}\n")
        return 1
    return 0
