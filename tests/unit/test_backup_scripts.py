"""
``sh/backup.sh`` and ``sh/restore.sh`` through a real ``/bin/sh``, with a fake ``docker`` on PATH that
answers as the db container would (size, dump, restore). The e2e tests run them against the real
PostgreSQL; these pin the file modes, the manifest, the media cache left out, the free-space refusal,
the retention and the checksum check.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from pyinfra_mastodon import commands, layout

FAKE_DOCKER = r"""#!/bin/sh
printf '%s\n' "$*" >> "$FAKE_LOG"
case "$*" in
  "ps -q "*"com.docker.compose.service=db "*) echo id-db ;;
  "ps -q "*"com.docker.compose.service=web "*) echo id-web ;;
  "ps -q "*) printf 'id-db\nid-web\n' ;;
  "inspect --format {{.Config.Image}} id-web") echo ghcr.io/mastodon/mastodon:v4.6.5 ;;
  "inspect --format image "*" id-db") echo "image db postgres:14-alpine sha256:$(printf %064d 1)" ;;
  "inspect --format image "*" id-web") echo "image web ghcr.io/mastodon/mastodon:v4.6.5 sha256:$(printf %064d 2)" ;;
  *" exec -T db psql "*"pg_database_size"*) echo "$FAKE_DB_BYTES" ;;
  *" exec -T db pg_dump -Fc "*) printf 'PGDMP fake dump\n' ;;
  *" exec -T db pg_restore "*) cat > "$FAKE_LOG.restored" ;;
  *" exec -T db psql "*"information_schema.tables"*)
    # the row counts: FAKE_COUNTS before the switch of the compose file, FAKE_COUNTS_AFTER after it
    if grep -q postgres:17 "$FAKE_COMPOSE"; then printf "$FAKE_COUNTS_AFTER"; else printf "$FAKE_COUNTS"; fi ;;
esac
"""

PASSWORD = "0123456789abcdef"


@pytest.fixture
def host(tmp_path):
    """A fake host: the instance's folder, the backups' folder, docker on PATH, and a runner."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    base = tmp_path / "opt"
    (base / "public/system/media_attachments").mkdir(parents=True)
    (base / "public/system/cache/remote").mkdir(parents=True)
    (base / "public/system/media_attachments/a.png").write_text("image")
    (base / "public/system/cache/remote/b.png").write_text("cached")
    (base / ".env.production").write_text(f"LOCAL_DOMAIN=x.example\nSECRET_KEY_BASE={PASSWORD}\n")
    (base / ".env.db").write_text("POSTGRES_HOST_AUTH_METHOD=trust\n")
    password_file = tmp_path / "admin-password"
    password_file.write_text("owner-password\n")
    root = tmp_path / "backups"
    log = tmp_path / "docker.log"
    log.write_text("")

    compose_file = base / "docker-compose.yml"
    compose_file.write_text("services:\n  db:\n    image: postgres:14-alpine\n")

    def run(
        name: str, *args: object, db_bytes: int = 5 * 1048576, stdin: str = "", **fake: str
    ) -> subprocess.CompletedProcess:
        command = commands.script(name, *args, project_dir=str(base))
        env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "FAKE_LOG": str(log),
            "FAKE_DB_BYTES": str(db_bytes),
            "FAKE_COMPOSE": str(compose_file),
            **fake,
        }
        return subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, text=True, env=env, timeout=60)

    restic_env = tmp_path / "restic.env"

    def backup(margin: int = 0, daily: int = 7, weekly: int = 4, **kw) -> subprocess.CompletedProcess:
        return run("backup", root, base, "public/system", password_file, restic_env, margin, daily, weekly, **kw)

    return {
        "base": base,
        "root": root,
        "log": log,
        "password_file": password_file,
        "compose_file": compose_file,
        "restic_env": restic_env,
        "bin": bin_dir,
        "run": run,
        "backup": backup,
    }


def _backups(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_backup_writes_a_root_only_folder_with_a_manifest(host):
    proc = host["backup"]()
    assert proc.returncode == 0, proc.stderr
    (name,) = _backups(host["root"])
    folder = host["root"] / name
    assert stat.S_IMODE(host["root"].stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["admin-password", "database.dump", "env.db", "env.production", "manifest", "media.tar"]
    assert all(stat.S_IMODE((folder / f).stat().st_mode) == 0o600 for f in files)
    assert (folder / "env.production").read_bytes() == (host["base"] / ".env.production").read_bytes()
    manifest = (folder / "manifest").read_text().splitlines()
    assert "mastodon_version v4.6.5" in manifest and f"database_bytes {5 * 1048576}" in manifest
    assert f"image db postgres:14-alpine sha256:{'0' * 63}1" in manifest
    for f in ("database.dump", "env.production", "env.db", "admin-password", "media.tar"):
        data = (folder / f).read_bytes()
        assert f"file {f} {len(data)} {hashlib.sha256(data).hexdigest()}" in manifest
    assert PASSWORD not in proc.stdout + proc.stderr + "\n".join(manifest)
    listing = subprocess.run(["tar", "-tf", folder / "media.tar"], capture_output=True, text=True).stdout
    assert "public/system/media_attachments/a.png" in listing and "cache" not in listing


def test_backup_refuses_without_the_free_space_it_needs(host):
    proc = host["backup"](margin=10_000_000)
    assert proc.returncode == 1
    assert "not enough free space for a backup" in proc.stderr and "mastodon_min_free_mb 10000000" in proc.stderr
    assert _backups(host["root"]) == [] and "pg_dump" not in host["log"].read_text()


def test_retention_keeps_the_newest_per_day_and_week(host):
    root = host["root"]
    root.mkdir(mode=0o700)
    # Three days of one week (2020-W02: Jan 6-8), a day of the week before, an upgrade dump.
    old = ["20200101T030000Z", "20200106T030000Z", "20200107T030000Z", "20200108T010000Z", "20200108T030000Z"]
    for name in old:
        (root / name).mkdir()
        (root / name / "manifest").write_text("format 1\n")
    (root / "pre-migration-20200107T120000Z-abc123.sql").write_text("dump")
    (root / "unrelated-file").write_text("kept: not a name of ours")
    proc = host["backup"](daily=2, weekly=2)
    assert proc.returncode == 0, proc.stderr
    new = [n for n in _backups(root) if n not in old and n.startswith("2")]
    assert len(new) == 1
    # daily 2: today's and 2020-01-08's newest; weekly 2: this week's (today's), 2020-W02's (Jan 8 03:00).
    assert _backups(root) == sorted(["20200108T030000Z", new[0], "unrelated-file"])
    for removed in ("20200101T030000Z", "20200106T030000Z", "20200107T030000Z", "20200108T010000Z"):
        assert f"retention: removed {removed}" in proc.stdout
    assert "retention: removed pre-migration-20200107T120000Z-abc123.sql" in proc.stdout


def test_restore_puts_the_files_back_and_the_dump_in(host):
    assert host["backup"]().returncode == 0
    (name,) = _backups(host["root"])
    base = host["base"]
    (base / ".env.production").write_text("LOCAL_DOMAIN=x.example\n")
    os.remove(base / "public/system/media_attachments/a.png")
    owner = f"{os.getuid()}:{os.getgid()}"
    proc = host["run"]("restore", host["root"], name, base, host["password_file"], owner, 30, "restore", "db", "redis")
    assert proc.returncode == 0, proc.stderr
    assert (base / ".env.production").read_text() == f"LOCAL_DOMAIN=x.example\nSECRET_KEY_BASE={PASSWORD}\n"
    assert stat.S_IMODE((base / ".env.production").stat().st_mode) == 0o600
    assert (base / "public/system/media_attachments/a.png").read_text() == "image"
    assert Path(f"{host['log']}.restored").read_text() == "PGDMP fake dump\n"
    calls = host["log"].read_text()
    # Everything stops, data services come up, the database is made anew, then everything starts.
    order = [
        calls.index(s)
        for s in (" stop", "up --detach --wait --wait-timeout 30 db redis", "DROP DATABASE", "pg_restore")
    ]
    assert order == sorted(order), calls
    assert calls.rstrip().endswith("up --detach --wait --wait-timeout 30 --remove-orphans"), calls
    assert name in proc.stdout


def test_restore_keeps_the_env_files_when_told_and_restores_the_rest(host):
    # the db host of an instance on several hosts: the deploy wrote its env files before the restore
    assert host["backup"]().returncode == 0
    (name,) = _backups(host["root"])
    base = host["base"]
    (base / ".env.production").write_text("LOCAL_DOMAIN=x.example\nDB_PASS=the-clusters\n")
    owner = f"{os.getuid()}:{os.getgid()}"
    proc = host["run"]("restore", host["root"], name, base, host["password_file"], owner, 30, "keep", "db")
    assert proc.returncode == 0, proc.stderr
    assert (base / ".env.production").read_text() == "LOCAL_DOMAIN=x.example\nDB_PASS=the-clusters\n"
    assert Path(f"{host['log']}.restored").read_text() == "PGDMP fake dump\n"
    assert "up --detach --wait --wait-timeout 30 db\n" in host["log"].read_text()


def test_restore_refuses_a_backup_that_fails_its_checksums(host):
    assert host["backup"]().returncode == 0
    (name,) = _backups(host["root"])
    dump = host["root"] / name / "database.dump"
    dump.write_text("tampered")
    host["log"].write_text("")
    owner = f"{os.getuid()}:{os.getgid()}"
    proc = host["run"]("restore", host["root"], name, host["base"], host["password_file"], owner, 30, "restore", "db")
    assert proc.returncode == 1 and "does not match the checksums of its manifest" in proc.stderr
    assert "stop" not in host["log"].read_text()


def test_restore_refuses_a_missing_backup(host):
    owner = f"{os.getuid()}:{os.getgid()}"
    proc = host["run"](
        "restore", host["root"], "20200101T000000Z", host["base"], host["password_file"], owner, 30, "restore", "db"
    )
    assert proc.returncode == 1 and "no backup '20200101T000000Z'" in proc.stderr


NEW_COMPOSE = "services:\n  db:\n    image: postgres:17-alpine\n"


def _major(host, mode: str, counts_after: str = "accounts 2\\nusers 1\\n", apps=("web", "sidekiq")):
    base = host["base"]
    old, new = (
        (base / "postgres14", base / "postgres17") if mode == "upgrade" else (base / "postgres17", base / "postgres14")
    )
    owner = f"{os.getuid()}:{os.getgid()}"
    args = (mode, old, new, host["compose_file"], host["root"], 30, owner, *apps)
    counts = {"FAKE_COUNTS": "accounts 2\\nusers 1\\n", "FAKE_COUNTS_AFTER": counts_after}
    return host["run"]("postgres-major", *args, stdin=NEW_COMPOSE, **counts)


def test_postgres_upgrade_dumps_switches_restores_and_compares(host):
    proc = _major(host, "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert host["compose_file"].read_text() == NEW_COMPOSE
    assert stat.S_IMODE((host["base"] / "postgres17").stat().st_mode) == 0o755
    (dump,) = [p for p in host["root"].iterdir() if p.suffix == ".dump"]
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600 and dump.read_text() == "PGDMP fake dump\n"
    assert Path(f"{host['log']}.restored").read_text() == "PGDMP fake dump\n"
    calls = host["log"].read_text()
    steps = (" stop web sidekiq", "pg_dump -Fc", " stop db", "up --detach --wait --wait-timeout 30 db", "pg_restore")
    order = [calls.index(step) for step in steps]
    assert order == sorted(order), calls
    assert calls.rstrip().endswith("--remove-orphans") and "every table has its rows (2 tables" in proc.stdout


def test_postgres_upgrade_without_an_application_on_the_host_keeps_db_running_for_the_dump(host):
    # the db host of an instance on several hosts runs no web, streaming or sidekiq
    proc = _major(host, "upgrade", apps=())
    assert proc.returncode == 0, proc.stderr
    calls = host["log"].read_text()
    assert calls.index("pg_dump -Fc") < calls.index(" stop db"), calls
    assert not [line for line in calls.splitlines() if line.rstrip().endswith(" stop")], calls


def test_postgres_upgrade_stops_when_a_row_count_differs(host):
    proc = _major(host, "upgrade", counts_after="accounts 1\\nusers 1\\n")
    assert proc.returncode == 1 and "the row counts after the restore differ" in proc.stderr
    assert "--remove-orphans" not in host["log"].read_text(), "the application was started again"


def test_postgres_upgrade_refuses_a_folder_that_holds_a_database(host):
    (host["base"] / "postgres17/pgdata").mkdir(parents=True)
    (host["base"] / "postgres17/pgdata/PG_VERSION").write_text("17\n")
    proc = _major(host, "upgrade")
    assert proc.returncode == 1 and "holds a PostgreSQL database already" in proc.stderr
    assert host["log"].read_text() == "" and "postgres:14" in host["compose_file"].read_text()


def test_postgres_rollback_needs_the_old_folder(host):
    proc = _major(host, "rollback")
    assert proc.returncode == 1 and "holds no PostgreSQL database to go back to" in proc.stderr
    (host["base"] / "postgres14/pgdata").mkdir(parents=True)
    (host["base"] / "postgres14/pgdata/PG_VERSION").write_text("14\n")
    proc = _major(host, "rollback")
    assert proc.returncode == 0, proc.stderr
    assert host["compose_file"].read_text() == NEW_COMPOSE and " stop web sidekiq db" in host["log"].read_text()


FAKE_RESTIC = r"""#!/bin/sh
# argv and the two variables, one line per call; "cat config" fails until "init" ran
echo "argv=$* repo=$RESTIC_REPOSITORY password=$RESTIC_PASSWORD" >> "$FAKE_LOG.restic"
case "$1" in
  cat) [ -e "$FAKE_LOG.init" ] ;;
  init) touch "$FAKE_LOG.init" ;;
esac
"""


@pytest.mark.parametrize("quoted", [False, True])
def test_backup_is_copied_to_restic_with_the_password_in_its_environment(host, quoted):
    (host["bin"] / "restic").write_text(FAKE_RESTIC)
    (host["bin"] / "restic").chmod(0o755)
    password = "p@ss word" if quoted else "plain-Password_42"
    value = f"'{password}'" if quoted else password
    host["restic_env"].write_text(f"# comment\nRESTIC_REPOSITORY=sftp:b@h:/srv/r\nRESTIC_PASSWORD={value}\n")
    proc = host["backup"](daily=3, weekly=2)
    assert proc.returncode == 0, proc.stderr
    (name,) = _backups(host["root"])
    calls = Path(f"{host['log']}.restic").read_text().splitlines()
    assert [c.split(" repo=")[0] for c in calls] == [
        "argv=cat config",
        "argv=init --quiet",
        f"argv=backup --quiet --tag mastodon {host['root']}/{name}",
        "argv=forget --quiet --tag mastodon --keep-daily 3 --keep-weekly 2 --prune",
    ]
    assert all(c.endswith(f" repo=sftp:b@h:/srv/r password={password}") for c in calls), calls
    assert password not in proc.stdout + proc.stderr and f"backup {name} copied to the restic repository" in proc.stdout


def test_backup_without_restic_installed_says_so(host):
    host["restic_env"].write_text("RESTIC_REPOSITORY=/srv/r\nRESTIC_PASSWORD=secretsecret\n")
    proc = host["backup"]()
    assert proc.returncode == 1 and "restic is not installed on this host" in proc.stderr


def test_backup_reads_the_jobs_web_under_the_layouts_profile():
    # the db host of an instance on several hosts defines web under layout.JOBS_PROFILE only
    assert f"compose --profile {layout.JOBS_PROFILE} config" in commands.script_text("backup")
