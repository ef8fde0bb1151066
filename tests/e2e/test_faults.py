"""Faults (SPEC §5, §6): PostgreSQL that never becomes ready, deploys killed mid-way, a failing
pre-deployment migration during an upgrade. After each: the next run converges, the run after it
changes nothing, database rows written before are still there, and no secret changed.

Order (one host, module-scoped): PostgreSQL unusable on a fresh host -> repaired (v4.6.4) ->
killed during .env.production writes (at fixed delays, then once with the writer slowed down so that the
kill lands while its temp file exists: what was on the host at each kill is recorded) -> upgrade to v4.6.5 with a failing migration -> upgrade
killed during pre-deployment migrations -> re-run killed during post-deployment migrations ->
immediate re-run while the killed run's migration still runs (it must wait for it) -> converge. A ROW EXCLUSIVE lock on `users`, held from
the test, keeps a v4.6.5 migration waiting, so that each kill lands while a migration is in progress.
"""

from __future__ import annotations

import re
import time

import pytest
from contract import ADMIN_PASSWORD_FILE, BACKUP_DIR, BASE_DIR, COMPOSE_PROJECT, ENV_PRODUCTION, PGDATA, container_name
from toolkit import (
    Result,
    Sandbox,
    SecretBag,
    container,
    instance_version,
    psql,
    run_pyinfra,
    secret_hashes,
    standin_events,
)

pytestmark = pytest.mark.e2e

WAIT = 10
FAIL_MIGRATION = "20260527084519"  # pre-deployment migration of v4.6.5 (stand-in)
OLD = {"mastodon_version": "v4.6.4"}
WRITE_ENV = rf"Starting operation: Mastodon \| Write {re.escape(ENV_PRODUCTION)}"
PRE_MIGRATIONS = r"Starting operation: Mastodon \| Prepare the database or run pre-deployment migrations"
POST_MIGRATIONS = r"Starting operation: Mastodon \| Run post-deployment migrations"

RUNS: list[Result] = []
BAG = SecretBag()


def deploy(box: Sandbox, label: str, *args: str, **kw) -> Result:
    result = run_pyinfra(box, *args, label=label, bag=BAG, **kw)  # the host's secrets join BAG
    RUNS.append(result)
    return result


def ok(result: Result) -> None:
    assert result.rc == 0, result.describe()


def converge(box, label: str, data: dict | None = None) -> dict:
    """A converging run, then a run that must change nothing."""
    first = deploy(box, f"{label}: converge", "--json", data=data)
    second = deploy(box, f"{label}: zero changes", "--json", data=data)
    return {"first": first, "second": second}


def assert_converged(c: dict) -> None:
    ok(c["first"])
    ok(c["second"])
    second = c["second"]
    # changed_ops() is [] when no JSON was parsed: prove the document is there and counts zero changes
    assert second.json is not None, f"[{second.label}] printed no parsable JSON document:\n{second.describe()}"
    totals = second.totals()
    assert totals.get("hosts", 0) > 0, f"[{second.label}] the JSON totals count no operation: {totals}"
    assert totals.get("success") == 0 and totals.get("error") == 0, (
        f"[{second.label}] the run after convergence reports changes or errors: {totals}"
    )
    changed = second.changed_ops()
    assert not changed, f"[{second.label}] the run after convergence changed: {changed}"


def assert_secrets_read() -> None:
    """The bag holds the host's secrets (else every "no secret in the output" check would be vacuous)."""
    assert "SECRET_KEY_BASE" in BAG.names() and "ADMIN_PASSWORD" in BAG.names(), (
        f"the host's secrets were not read after the deploy: {BAG!r}"
    )


def leftovers(box) -> list[str]:
    """One-off containers and temp files a killed run could leave behind."""
    out = box.ssh(
        "docker ps -a --filter label=com.docker.compose.oneoff=True --format 'container {{.Names}} {{.Status}}'; "
        f"ls -d {BASE_DIR}/*.pyinfra-tmp* {BASE_DIR}/.*.pyinfra-tmp* {ADMIN_PASSWORD_FILE}.tmp* "
        f"{BACKUP_DIR}/*.tmp 2>/dev/null; true"
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


# ------------------------------------------------------------------------ (a) PostgreSQL unready


@pytest.fixture(scope="module")
def pg_unready(box):
    """A fresh host whose PostgreSQL data dir the 991 server cannot use: its own (991, 0700), with a
    PG_VERSION but no cluster, so the entrypoint skips initdb and the server refuses to start. (A data
    dir of another owner is refused before any change, so it cannot stand for "never ready".)"""
    box.out(
        f"mkdir -p {PGDATA} && echo 14 > {PGDATA}/PG_VERSION && chmod 700 {PGDATA} "
        f"&& chown -R 991:991 {PGDATA.rsplit('/', 1)[0]}"
    )
    r = deploy(box, "postgres never ready", data={**OLD, "mastodon_postgres_wait_timeout": WAIT})
    db_state = box.ssh(
        f"docker inspect -f '{{{{.State.Status}}}} {{{{.RestartCount}}}}' {container_name('db')}"
    ).stdout.strip()
    return {"run": r, "db": db_state}


@pytest.fixture(scope="module")
def pg_repaired(box, pg_unready):
    box.out(f"rm -rf {PGDATA}")
    c = converge(box, "after repairing the data dir", data=OLD)
    c["hashes"] = secret_hashes(box)
    assert_secrets_read()
    return c


def test_a1_wait_for_postgres_ends_within_its_bound_with_a_hint(pg_unready):
    r = pg_unready["run"]
    assert r.rc != 0, f"the deploy succeeded although PostgreSQL cannot start (db: {pg_unready['db']}):\n{r.describe()}"
    assert f"PostgreSQL was not ready after {WAIT}s" in r.stderr, f"no bounded-wait message:\n{r.describe()}"
    assert "Check:" in r.stderr and "logs db" in r.stderr, f"the message does not say what to check:\n{r.describe()}"
    assert r.seconds < WAIT + 60, f"the failing run took {r.seconds:.0f} s with a {WAIT} s wait"


def test_a2_nothing_runs_after_the_failed_wait(box, pg_unready):
    r = pg_unready["run"]
    started = r.started_ops()
    assert started and started[-1] == "Mastodon | Wait until PostgreSQL is ready", (
        f"operations after the failed wait: {started[started.index('Mastodon | Wait until PostgreSQL is ready') + 1 :] if 'Mastodon | Wait until PostgreSQL is ready' in started else started}"
    )
    running = box.ssh(
        f"docker ps -a --filter label=com.docker.compose.project={COMPOSE_PROJECT} "
        "--format '{{.Label \"com.docker.compose.service\"}}'"
    ).stdout.split()
    assert not set(running) & {"web", "streaming", "sidekiq"}, f"application containers exist: {running}"


def test_a3_after_repair_the_next_run_converges(box, pg_repaired):
    assert_converged(pg_repaired)
    assert instance_version(box) == "4.6.4"


# ------------------------------------------------------------------- (b) killed during env writes


ENV_TMP = f"{ENV_PRODUCTION}.pyinfra-tmp"  # the writer's temp files: this, then a random suffix
# what was going on on the host right after a kill: a temp file of the .env.production write (it exists
# only between the writer's mktemp and its "mv"), and a writer process still running (its command line
# names the script and the file; "[m]" keeps this probe's own shell out of the match)
_WRITE_PROBE = (
    f"ls -d {ENV_TMP}.* 2>/dev/null; "
    f"pgrep -af '[m]astodon-env-file-write {ENV_PRODUCTION}' | cut -c1-60 | sed 's/^/writer /'; true"
)
SLOW_AWK = "/usr/local/bin/awk"


def write_probe(box) -> dict:
    out = box.ssh(_WRITE_PROBE).stdout.splitlines()
    return {
        "tmp_file": any(line.startswith(f"{ENV_TMP}.") for line in out),
        "writer_running": any(line.startswith("writer ") for line in out),
    }


def in_progress_at_kill(k: Result) -> bool:
    """pyinfra's output at the kill: the .env.production write had started and had not finished."""
    text = k.kill_output or ""
    starts = [m.end() for m in re.finditer(WRITE_ENV, text)]
    return bool(starts) and not re.search(r"\[sandbox\] (Success|No changes|Error)", text[starts[-1] :])


def wait_for_writers(box, seconds: int = 30) -> None:
    box.ssh(
        f"for i in $(seq {seconds * 5}); do pgrep -f '[p]yinfra-tmp' >/dev/null || exit 0; sleep 0.2; done; exit 1",
        timeout=seconds + 30,
    )


@pytest.fixture(scope="module")
def killed_env(box, pg_repaired):
    psql(box, "CREATE TABLE IF NOT EXISTS sec_canary(v text); INSERT INTO sec_canary VALUES ('before-kills')")
    kills = []
    for i, delay in enumerate((0.0, 0.4, 1.0)):
        data = {
            **OLD,
            "mastodon_smtp_server": f"smtp{i}.sandbox.test",
            "mastodon_smtp_password": f"pw-killed-{i}-0123456789abcdef",
        }
        BAG.add(f"SMTP password #{i}", data["mastodon_smtp_password"])
        kills.append(
            deploy(
                box,
                f"killed {delay}s after the .env.production write started",
                data=data,
                kill_when=WRITE_ENV,
                kill_delay=delay,
                at_kill=lambda: write_probe(box),
            )
        )
        wait_for_writers(box)
    # a slow disk: the writer's awk (found first on root's PATH) waits 3 s before merging, so the temp file
    # exists for 3 s and a kill 1.5 s into the operation lands in the middle of the write
    # (only the writer's awk: it alone gets "-v derived=", the on-host comparison's awk does not)
    box.out(
        f"printf '%s\\n' '#!/bin/sh' 'case \"$*\" in *derived=*@@KEEP@@*) sleep 3;; esac' 'exec /usr/bin/awk \"$@\"' > {SLOW_AWK}; "
        f"chmod 755 {SLOW_AWK}"
    )
    try:
        data = {
            **OLD,
            "mastodon_smtp_server": "smtp3.sandbox.test",
            "mastodon_smtp_password": "pw-killed-3-0123456789abcdef",
        }
        BAG.add("SMTP password #3", data["mastodon_smtp_password"])
        kills.append(
            deploy(
                box,
                "killed 1.5s into a slowed .env.production write",
                data=data,
                kill_when=WRITE_ENV,
                kill_delay=1.5,
                at_kill=lambda: write_probe(box),
            )
        )
        wait_for_writers(box)
    finally:
        box.out(f"rm -f {SLOW_AWK}")
    c = converge(box, "after the env-write kills", data=OLD)
    c["kills"] = kills
    c["leftovers"] = leftovers(box)
    return c


def test_b0_a_kill_landed_in_the_middle_of_the_env_write(killed_env):
    seen = {k.label: {"op in progress": in_progress_at_kill(k), **(k.kill_evidence or {})} for k in killed_env["kills"]}
    mid_write = [
        label for label, e in seen.items() if e["op in progress"] and (e.get("tmp_file") or e.get("writer_running"))
    ]
    print(f"\nevidence at each kill: {seen}")
    assert mid_write, f"no kill landed while .env.production was being written (evidence at each kill: {seen})"


def test_b1_kill_during_env_writes_then_converges(box, pg_repaired, killed_env):
    for k in killed_env["kills"]:
        assert k.killed, f"[{k.label}] the kill trigger never matched:\n{k.describe()}"
    assert_converged(killed_env)
    changed = [k for k, v in secret_hashes(box).items() if v != pg_repaired["hashes"][k]]
    assert not changed, f"secrets changed after the killed runs: {changed}"
    assert psql(box, "SELECT v FROM sec_canary") == "before-kills"
    assert psql(box, "SELECT count(*) FROM accounts WHERE username = 'admin' AND domain IS NULL") == "1"


def test_b2_no_leftovers_after_env_write_kills(killed_env):
    assert not killed_env["leftovers"], f"left behind after convergence: {killed_env['leftovers']}"


# -------------------------------------------------------------- upgrade with a failing migration


@pytest.fixture(scope="module")
def failed_upgrade(box, killed_env):
    web_before = container(box, "web")
    t0 = time.time()
    r = deploy(
        box,
        "upgrade with a failing pre-deployment migration",
        raw_data=[f'mastodon_extra_env={{"STANDIN_FAIL_MIGRATION":"{FAIL_MIGRATION}"}}'],
    )
    dumps = box.ssh(
        f"stat -c '%a %U:%G' {BACKUP_DIR}; for f in {BACKUP_DIR}/pre-migration-*.sql; do "
        '[ -f "$f" ] && echo "$(stat -c \'%a %U:%G %s\' "$f") $(grep -c \'CREATE TABLE\' "$f") $(grep -c sec_canary "$f") '
        '$(stat -c \'%.9Y\' "$f")"; done'
    ).stdout.splitlines()
    return {
        "run": r,
        "started": t0,
        "web_before": web_before,
        "web_after": container(box, "web"),
        "version": instance_version(box),
        "dumps": dumps,
        "events": standin_events(box),
    }


def test_c1_failing_migration_fails_the_run(failed_upgrade):
    r = failed_upgrade["run"]
    assert r.rc != 0, f"the upgrade succeeded although a migration failed:\n{r.describe()}"
    failed = [e for e in failed_upgrade["events"] if e.event == "migration-failed"]
    assert failed, "the stand-in recorded no failed migration: the fault was not injected"
    started = r.started_ops()
    assert "Mastodon | Start or update all services" not in started, (
        f"services were updated after the failure: {started}"
    )


def test_c2_old_version_keeps_running(failed_upgrade):
    assert failed_upgrade["version"] == "4.6.4", f"/api/v1/instance reports {failed_upgrade['version']!r}"
    assert failed_upgrade["web_after"] == failed_upgrade["web_before"], (
        f"the web container changed: {failed_upgrade['web_before']} -> {failed_upgrade['web_after']}"
    )


def test_c3_dump_written_before_the_migration(failed_upgrade):
    lines = failed_upgrade["dumps"]
    assert lines and lines[0] == "700 root:root", f"{BACKUP_DIR} is {lines[:1]}, want 700 root:root"
    files = [line.split() for line in lines[1:]]
    assert files, f"no pre-migration dump in {BACKUP_DIR}"
    mode, owner, size, creates, canary, mtime = files[-1]
    assert (mode, owner) == ("600", "root:root"), f"the dump is {mode} {owner}"
    assert int(size) > 0 and int(creates) > 0, f"the dump is empty or has no CREATE TABLE (size {size})"
    assert int(canary) > 0, "the dump does not contain the table written before the upgrade"
    # written by this run, and before the failed migration ran (the stand-in records when it failed)
    assert float(mtime) >= failed_upgrade["started"] - 1, "the newest dump is older than the failing upgrade run"
    failed = [e.at for e in failed_upgrade["events"] if e.event == "migration-failed"]
    assert failed, "the stand-in recorded no failed migration: the fault was not injected"
    assert float(mtime) <= min(failed), (
        f"the dump was last written {float(mtime) - min(failed):.2f} s after the migration failed, not before it"
    )


# ------------------------------------------------------------------ (b) killed during migrations


def hold_users_lock(box, seconds: int) -> None:
    """Hold a ROW EXCLUSIVE lock on `users` for a while (detached): pg_dump (ACCESS SHARE) still runs, but
    the v4.6.5 migrations on `users` (CREATE INDEX: SHARE; DROP COLUMN: ACCESS EXCLUSIVE) wait for it, so
    a kill a few seconds into the migration step lands while a migration is in progress."""
    sql = f"BEGIN; LOCK TABLE users IN ROW EXCLUSIVE MODE; SELECT pg_sleep({seconds}); COMMIT;"
    box.out(f"docker exec -d {container_name('db')} psql -U postgres -d postgres -c '{sql}'; sleep 0.3")


def at_kill(box) -> dict:
    """Right after a kill: backends waiting for a lock (= a migration in progress) and the migrations done."""
    return {
        "lock_waiters": int(psql(box, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") or 0),
        "migrations": [e.detail for e in standin_events(box) if e.event == "migration"],
    }


def wait_for_oneoffs(box, seconds: int) -> None:
    """Until no one-off compose container (e.g. a migration orphaned by a kill) runs (bounded)."""
    box.ssh(
        f'for i in $(seq {seconds}); do [ -z "$(docker ps -q --filter label=com.docker.compose.oneoff=True)" ] && exit 0; '
        "sleep 1; done; exit 1",
        timeout=seconds + 30,
    )


@pytest.fixture(scope="module")
def killed_migrations(box, failed_upgrade, pg_repaired):
    # Held from before the run: long enough to cover its preparation on a loaded host (the lock, the
    # converged check, the checks before any change) plus the 3 s to the kill.
    hold_users_lock(box, 30)
    k1 = deploy(box, "upgrade killed 3 s into pre-deployment migrations", kill_when=PRE_MIGRATIONS, kill_delay=3)
    s1 = at_kill(box)
    wait_for_oneoffs(box, 90)
    k2 = deploy(
        box,
        "upgrade killed 3 s into post-deployment migrations",
        kill_when=POST_MIGRATIONS,
        kill_delay=3,
        on_match=lambda: hold_users_lock(box, 8),
    )
    s2 = at_kill(box)
    between = leftovers(box)
    # the operator re-runs at once, while the killed run's migration is still running (a slow migration)
    immediate = deploy(box, "re-run right after the kill, migration still running", "--json")
    c = converge(box, "after the migration kills")
    c.update(kills=(k1, k2), at_kill=(s1, s2), between=between, leftovers=leftovers(box), immediate=immediate)
    return c


def test_d0_kills_landed_during_migrations(killed_migrations):
    (s1, s2) = killed_migrations["at_kill"]
    assert f"{FAIL_MIGRATION} pre" not in s1["migrations"], (
        f"the pre-deployment migration was done before the kill: {s1}"
    )
    assert "20260611150940 post" not in s2["migrations"], (
        f"the post-deployment migration was done before the kill: {s2}"
    )
    assert s1["lock_waiters"] >= 1 and s2["lock_waiters"] >= 1, f"no migration was waiting at the kills: {s1}, {s2}"


def test_d4_immediate_rerun_after_a_kill_during_migrations_converges(killed_migrations):
    """A kill leaves `docker compose run ... db:migrate` running on the host (the one-off container does not
    die with the ssh session); the next run must wait for it (or take it over), not fail."""
    r = killed_migrations["immediate"]
    orphans = [x for x in killed_migrations["between"] if x.startswith("container")]
    assert r.rc == 0, (
        f"the re-run right after a kill failed while the killed run's migration was still running "
        f"(one-off containers at that moment: {orphans}):\n{r.describe(12)}"
    )


def test_d1_killed_upgrade_converges_and_completes(box, killed_migrations):
    for k in killed_migrations["kills"]:
        assert k.killed, f"[{k.label}] the kill trigger never matched:\n{k.describe()}"
    assert_converged(killed_migrations)
    assert instance_version(box) == "4.6.5", "the upgrade did not complete after the kills"
    pending = box.ssh(f"docker exec {container_name('web')} bundle exec rails db:migrate:status").stdout
    assert not re.search(r"^\s*down\s", pending, re.M), f"migrations still pending:\n{pending}"


def test_d2_rows_and_secrets_survive_killed_migrations(box, pg_repaired, killed_migrations):
    assert psql(box, "SELECT v FROM sec_canary") == "before-kills", "the row inserted before the kills is gone"
    assert psql(box, "SELECT count(*) FROM accounts WHERE username = 'admin' AND domain IS NULL") == "1"
    changed = [k for k, v in secret_hashes(box).items() if v != pg_repaired["hashes"][k]]
    assert not changed, f"secrets changed after the killed upgrade: {changed}"


def test_d3_no_leftovers_after_migration_kills(killed_migrations):
    assert not killed_migrations["leftovers"], (
        f"left behind after convergence: {killed_migrations['leftovers']} (right after the first kill: {killed_migrations['between']})"
    )


def test_e_no_secret_in_the_output_of_this_module(killed_migrations):
    leaks = [f"[{r.label}] {leak}" for r in RUNS for leak in BAG.leaks(r)]
    assert not leaks, f"secret values in the output: {leaks}"
