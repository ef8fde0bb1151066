"""
Backups and restore (README "Backups and restore"): ``tasks.backup`` writes a root-only folder that no
other user can read at any moment; ``tasks.restore`` brings back a dropped table and a deleted secret
line byte for byte, healthy, and the next deploy changes nothing; the backup timer runs under the
host's lock and applies the retention; each backup is copied to a restic repository when one is set;
a backup taken on one host restores onto a freshly reset one.
Upgrading PostgreSQL (README "Upgrading PostgreSQL"): another major is refused by the deploy, the
upgrade task moves 14 to 17 keeping every row and secret, the rollback task brings 14 back.
"""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest
from contract import ADMIN_PASSWORD_FILE, BASE_DIR, HEALTHCHECKED, container_name
from toolkit import Sandbox, Watcher, file_digest, psql, wait_healthy

from pyinfra_mastodon import commands

pytestmark = pytest.mark.e2e

BACKUPS = "/var/backups/mastodon"
ENV_PRODUCTION = f"{BASE_DIR}/.env.production"
ENV_DB = f"{BASE_DIR}/.env.db"
# The exact row count of every table of the database, one "table count" line each, sorted.
ROW_COUNTS = (
    "select table_name || ' ' || (xpath('/row/c/text()', query_to_xml("
    "'select count(*) as c from public.' || quote_ident(table_name), false, true, '')))[1]::text "
    "from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by 1"
)
# The Mastodon stand-in appends a row to this table at every boot (tests/sandbox/standins/mastodon).
STANDIN_LOG = "standin_events"
# A schedule that never comes during a run (the default, daily 02:30 give or take 10 minutes, could
# start a backup and its retention in the middle of a test); the tests start the service themselves.
TIMER_ON = {
    "mastodon_backup_timer": True,
    "mastodon_backup_schedule": "2099-01-01 00:00:00",
    "mastodon_backup_keep_daily": 2,
    "mastodon_backup_keep_weekly": 1,
}


def backups(box: Sandbox) -> list[str]:
    return box.out(f"ls -1 {BACKUPS}").split()


def newest(box: Sandbox) -> str:
    return sorted(n for n in backups(box) if n[:1].isdigit())[-1]


def row_counts(box: Sandbox) -> dict[str, int]:
    return {table: int(count) for table, count in (line.split() for line in psql(box, ROW_COUNTS).splitlines())}


def assert_rows_back(box: Sandbox, before: dict[str, int]) -> None:
    """Every table back with its rows; the stand-in's own log of boots grows with the restarts."""
    after = row_counts(box)
    assert set(after) == set(before), (sorted(before), sorted(after))
    booted = STANDIN_LOG in before and after.pop(STANDIN_LOG) >= before[STANDIN_LOG]
    assert booted and after == {t: n for t, n in before.items() if t != STANDIN_LOG}, (before, after)


def assert_healthy(box: Sandbox) -> None:
    status = wait_healthy(box, HEALTHCHECKED)
    assert set(status.values()) == {"healthy"}, status


@pytest.fixture(scope="module")
def deployed(box) -> dict:
    """The module's instance, deployed, with what a restore must bring back, read on the host."""
    result = box.deploy()
    assert result.ok, result.describe(60)
    # A row of our own, so that "every row back" covers more than the seed.
    psql(box, "create table backup_probe (id int primary key, note text); insert into backup_probe values (1, 'kept')")
    return {"env": file_digest(box, ENV_PRODUCTION), "env_db": file_digest(box, ENV_DB)}


@pytest.fixture(scope="module")
def taken(box, deployed) -> str:
    """A backup taken by the task under the secret-file watcher; returns its name."""
    watcher = Watcher(box, "backups")
    watcher.start()
    deployed["rows"] = row_counts(box)
    try:
        result = box.task("backup")
        assert result.rc == 0, result.describe()
        assert "written to /var/backups/mastodon/" in result.output, result.describe()
        assert result.leaks() == [], result.leaks()
        assert watcher.violations() == [], watcher.violations()
        assert watcher.digest_violations() == [], watcher.digest_violations()
    finally:
        watcher.stop()
    return newest(box)


def test_backup_folder_is_root_only_with_a_manifest(box, taken):
    folder = f"{BACKUPS}/{taken}"
    assert box.out(f"stat -c '%a %U' {BACKUPS} {folder}").split("\n")[:2] == ["700 root", "700 root"]
    modes = box.out(f"find {folder} -type f -printf '%f %m %u\\n' | sort").splitlines()
    names = ["admin-password", "database.dump", "env.db", "env.production", "manifest", "media.tar"]
    assert modes == [f"{name} 600 root" for name in names], modes
    manifest = box.out(f"cat {folder}/manifest")
    assert "mastodon_version v4.6.5" in manifest and "\ncreated 20" in manifest, manifest
    for service in HEALTHCHECKED:
        assert f"\nimage {service} " in manifest and " sha256:" in manifest, manifest
    # the checksums hold, and the dump is pg_dump's custom format
    box.out(f'cd {folder} && awk \'$1 == "file" {{ print $4 "  " $2 }}\' manifest | sha256sum -c --strict')
    assert box.out(f"head -c 5 {folder}/database.dump") == "PGDMP"
    assert box.out(f"cmp {folder}/env.production {ENV_PRODUCTION} && echo same").strip() == "same"
    assert "public/system/cache" not in box.out(f"tar -tf {folder}/media.tar")


def test_restore_brings_back_a_dropped_table_and_a_deleted_secret(box, deployed, taken):
    psql(box, "drop table backup_probe")
    box.out(f"sed -i '/^SECRET_KEY_BASE=/d' {ENV_PRODUCTION}")
    damaged = file_digest(box, ENV_PRODUCTION)
    assert damaged != deployed["env"]

    dry = box.task("restore", "--dry", data={"mastodon_restore_from": "latest"})
    assert dry.rc == 0, dry.describe()
    assert f"restore {taken}" in dry.output and ".env.production (differs: replaced)" in dry.output, dry.describe()
    assert ".env.db (identical)" in dry.output, dry.describe()
    assert file_digest(box, ENV_PRODUCTION) == damaged, "--dry changed the env file"

    result = box.task("restore", data={"mastodon_restore_from": taken})
    assert result.rc == 0, result.describe()
    assert result.leaks() == [], result.leaks()
    assert file_digest(box, ENV_PRODUCTION) == deployed["env"]
    assert file_digest(box, ENV_DB) == deployed["env_db"]
    assert box.out(f"stat -c '%a %U %G' {ENV_PRODUCTION}").strip() == "600 mastodon mastodon"
    assert_rows_back(box, deployed["rows"])
    assert psql(box, "select note from backup_probe where id = 1") == "kept"
    assert_healthy(box)

    again = box.deploy()
    assert again.ok and again.totals().get("success") == 0, again.describe()


def test_restore_of_a_missing_backup_is_refused_before_any_change(box, taken):
    before = box.out(f"docker inspect -f '{{{{.State.StartedAt}}}}' {container_name('web')}")
    result = box.task("restore", data={"mastodon_restore_from": "20000101T000000Z"})
    assert result.rc != 0 and f"no backup '20000101T000000Z' in {BACKUPS}" in result.output, result.describe()
    assert box.out(f"docker inspect -f '{{{{.State.StartedAt}}}}' {container_name('web')}") == before


def test_the_dump_before_an_upgrade_checks_free_space_first(box, taken):
    """The deploy's pre-migration dump (sh/dump-database.sh, as migrate_before_restart sends it)."""
    refused = box.ssh(commands.script("dump-database", BACKUPS, 100_000_000))
    assert refused.returncode == 1 and "not enough free space" in refused.stderr, refused.stderr
    assert "mastodon_min_free_mb 100000000" in refused.stderr and not box.ssh(f"ls {BACKUPS}/pre-migration-*").stdout
    done = box.ssh(commands.script("dump-database", BACKUPS, 1))
    assert done.returncode == 0 and "database dump written to" in done.stdout, done.stderr
    assert box.out(f"stat -c '%a %U' {BACKUPS}/pre-migration-*.sql").split("\n")[0] == "600 root"


def test_timer_runs_the_backup_under_the_lock_and_prunes(box, taken):
    result = box.deploy(data=TIMER_ON)
    assert result.ok, result.describe()
    assert box.out("systemctl is-active mastodon-backup.timer").strip() == "active"
    unit = box.out("cat /etc/systemd/system/mastodon-backup.service")
    assert "/usr/local/lib/pyinfra-mastodon/run-job backup /usr/local/lib/pyinfra-mastodon/backup " in unit, unit
    assert box.out("stat -c '%a %U' /usr/local/lib/pyinfra-mastodon/backup").strip() == "700 root"
    # Older backups and an upgrade dump: with 2 daily and 1 weekly kept, the oldest ones go.
    old = ("20200101T030000Z", "20200102T030000Z")
    for name in old:
        box.out(f"cp -a {BACKUPS}/{taken} {BACKUPS}/{name}")
    box.out(f"umask 077; echo dump > {BACKUPS}/pre-migration-20191231T000000Z-abc123.sql")
    before = set(backups(box))
    box.out("systemctl start mastodon-backup.service", timeout=300)
    journal = box.out("journalctl -u mastodon-backup.service --no-pager -o cat | tail -n 20")
    assert "written to" in journal, journal
    after = set(backups(box))
    (new,) = after - before
    # kept: today's newest (the new one) and the 2020-01-02 backup (second day); removed: the rest
    assert after == {new, "20200102T030000Z"}, (sorted(after), journal)
    assert "retention: removed 20200101T030000Z" in journal and taken not in after, journal

    again = box.deploy(data=TIMER_ON)
    assert again.ok and again.totals().get("success") == 0, again.describe()


# A repository on the sandbox stands in for one off the host (sftp:, s3:, rest:): restic's path
# backend writes the same repository format; the host side of the copy is the same.
RESTIC_REPO = "/srv/restic-mastodon"
RESTIC_ENV = "/etc/pyinfra-mastodon/restic.env"


def test_backups_are_copied_to_a_restic_repository(box, taken):
    password = secrets.token_urlsafe(24)
    box.secrets.add("RESTIC_PASSWORD", password)
    on = {**TIMER_ON, "mastodon_restic_repository": RESTIC_REPO, "mastodon_restic_password": password}
    result = box.deploy(data=on)
    assert result.ok, result.describe()
    assert box.out(f"stat -c '%a %U' {RESTIC_ENV}").strip() == "600 root"
    backup = box.task("backup", data=on)
    assert backup.rc == 0, backup.describe()
    assert backup.leaks() == [] and result.leaks() == [], (backup.leaks(), result.leaks())
    name = newest(box)
    assert f"backup {name} copied to the restic repository" in backup.output, backup.describe()
    # read on the host with the password the deploy wrote there (plain: token_urlsafe needs no quotes)
    snapshots = json.loads(
        box.out(f"set -a; . {RESTIC_ENV}; restic snapshots --json --tag mastodon", timeout=120) or "[]"
    )
    assert [s["paths"] for s in snapshots] == [[f"{BACKUPS}/{name}"]], snapshots
    again = box.deploy(data=on)
    assert again.ok and again.totals().get("success") == 0, again.describe()
    # turned off: the password file goes
    off = box.deploy(data=TIMER_ON)
    assert off.ok and box.ssh(f"test -e {RESTIC_ENV}").returncode != 0, off.describe()


def test_another_postgres_major_is_refused_before_any_change(box, taken):
    result = box.deploy(data={"mastodon_postgres_image": "postgres:17-alpine"})
    assert result.rc != 0 and "Starting operation" not in result.stderr, result.describe()
    assert "setting 'mastodon_postgres_image': postgres:17-alpine is PostgreSQL 17" in result.output, result.describe()
    assert "runs PostgreSQL 14 (postgres:14-alpine)" in result.output, result.describe()


PG17 = {**TIMER_ON, "mastodon_postgres_image": "postgres:17-alpine"}


def server_major(box: Sandbox) -> str:
    return psql(box, "show server_version_num")[:2]


def test_postgres_upgrade_to_17_keeps_every_row_and_secret(box, deployed):
    before = {"rows": row_counts(box), "env": file_digest(box, ENV_PRODUCTION), "major": server_major(box)}
    dry = box.task("postgres_upgrade", "--dry", data=TIMER_ON)
    assert dry.rc == 0 and "PostgreSQL 14 -> 17" in dry.output, dry.describe()
    assert server_major(box) == before["major"] and box.ssh(f"test -e {BASE_DIR}/postgres17").returncode != 0

    result = box.task("postgres_upgrade", data=TIMER_ON)
    assert result.rc == 0, result.describe()
    assert result.leaks() == [], result.leaks()
    assert server_major(box) == "17"
    assert "image: postgres:17-alpine" in box.out(f"cat {BASE_DIR}/docker-compose.yml")
    assert box.out(f"cat {BASE_DIR}/postgres17/pgdata/PG_VERSION").strip() == "17"
    assert box.ssh(f"test -s {BASE_DIR}/postgres14/pgdata/PG_VERSION").returncode == 0, "the old folder is gone"
    assert_rows_back(box, before["rows"])
    assert file_digest(box, ENV_PRODUCTION) == before["env"]
    assert_healthy(box)

    # the settings follow; the deploy is then zero-change on 17
    again = box.deploy(data=PG17)
    assert again.ok and again.totals().get("success") == 0, again.describe()


def test_postgres_rollback_brings_back_14(box, deployed):
    # rollback: the old image back in the settings, which the deploy alone refuses
    refused = box.deploy(data=TIMER_ON)
    assert refused.rc != 0 and "pyinfra_mastodon.tasks.postgres_rollback" in refused.output, refused.describe()
    result = box.task("postgres_rollback", data=TIMER_ON)
    assert result.rc == 0, result.describe()
    assert server_major(box) != "17"
    assert "image: postgres:14-alpine" in box.out(f"cat {BASE_DIR}/docker-compose.yml")
    assert psql(box, "select note from backup_probe where id = 1") == "kept"
    assert_healthy(box)
    again = box.deploy(data=TIMER_ON)
    assert again.ok and again.totals().get("success") == 0, again.describe()


def test_restore_onto_a_fresh_host(box, deployed, taken):
    """The server died: a new one gets the deploy, the backup's folder copied over, and a restore."""
    name = newest(box)
    # As an operator would copy it (scp -rp / tar over ssh as root): modes and owners kept.
    saved = subprocess.run(
        [*box.ssh_argv(), f"tar -C {BACKUPS} -cf - {name}"], capture_output=True, check=True, timeout=120
    ).stdout
    box.reset()
    fresh = box.deploy(data=TIMER_ON)
    assert fresh.ok, fresh.describe(60)
    assert file_digest(box, ENV_PRODUCTION) != deployed["env"], "a fresh host has secrets of its own"
    subprocess.run(
        [*box.ssh_argv(), f"mkdir -p -m 700 {BACKUPS} && tar -C {BACKUPS} -xf -"],
        input=saved,
        capture_output=True,
        check=True,
        timeout=120,
    )
    result = box.task("restore", data={**TIMER_ON, "mastodon_restore_from": name})
    assert result.rc == 0, result.describe()
    assert file_digest(box, ENV_PRODUCTION) == deployed["env"]
    assert box.out(f"cmp {BACKUPS}/{name}/admin-password {ADMIN_PASSWORD_FILE} && echo same").strip() == "same"
    assert_rows_back(box, deployed["rows"])
    assert_healthy(box)
    again = box.deploy(data=TIMER_ON)
    assert again.ok and again.totals().get("success") == 0, again.describe()
