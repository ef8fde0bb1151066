"""
What a real server does that our stand-ins used to hide, and real faults, handled by the deploy:

- the owner's e-mail, checked as Mastodon checks it when it creates the account (characters; DNS:
  MX, A/AAAA, null MX, against the sandbox's DNS server): refused before any change;
- ``REDIS_NAMESPACE`` in ``mastodon_extra_env`` (every Rails process aborts): refused;
- secret overrides in another format than the generators' (YunoHost's 128 alphanumerics): accepted;
- no empty ``SMTP_LOGIN=`` / ``SMTP_PASSWORD=`` lines (Rails would try SMTP AUTH with "");
- nothing derived from a secret in a ``-vvv`` log (no line digest, no digest key);
- two runs at once: the second waits, then refuses, saying since when the host is held; a killed
  run lets go of the lock;
- a full disk under ``/var/backups/mastodon``: refused before any change;
- a failed write of ``.env.production`` leaves no temporary file and loses no secret;
- downgrades refused (a patch-level one allowed by its setting);
- an instance laid out and owned as upstream's compose file leaves it: refused, adopted by
  ``tasks.adopt_upstream``, then deployed with its data;
- an owner account whose first password was lost gets a new one;
- a converged run boots Rails zero times.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from contract import ADMIN_PASSWORD_FILE, BACKUP_DIR, BASE_DIR, COMPOSE_FILE, ENV_PRODUCTION, LOCK_FILE, PGDATA
from toolkit import Result, Sandbox, env_line_hashes, psql, snapshot, standin_events

pytestmark = pytest.mark.e2e

LOCK_OWNER = f"{LOCK_FILE}.owner"
COMPOSE = f"docker compose -f {COMPOSE_FILE}"


def refusal(result: Result, setting: str | None = None) -> str:
    """The one line of a run refused before any operation (naming the host, and the setting if given)."""
    assert result.rc != 0, f"the run was not refused:\n{result.describe()}"
    assert "Starting operation" not in result.stderr, f"operations ran before the refusal:\n{result.describe()}"
    assert "Traceback" not in result.stderr, f"a traceback instead of one line:\n{result.describe()}"
    lines = [line for line in result.output.splitlines() if "host 'sandbox'" in line]
    assert len(lines) == 1, f"expected one line naming host 'sandbox':\n{result.describe()}"
    if setting:
        assert setting in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------- on a fresh server


@pytest.mark.parametrize(
    "email, says",
    [
        ("admin@nowhere.sandbox.test", "no MX and no A/AAAA record in DNS"),  # NXDOMAIN
        ("admin@nullmx.sandbox.test", "null MX"),  # RFC 7505, even with an A record
        ("a%b@sandbox.test", "email_address_validator.rb"),
    ],
)
def test_owner_email_mastodon_refuses_is_refused_before_any_change(box: Sandbox, email, says):
    assert box.is_pristine()
    line = refusal(box.deploy(data={"mastodon_admin_email": email}), "mastodon_admin_email")
    assert says in line, line
    assert box.is_pristine(), "the refused run changed the host"


def test_a_domain_with_only_an_a_record_receives_mail(box: Sandbox):
    # email_mx_validator.rb: without MX, the domain's own A/AAAA records count
    result = box.deploy("--dry", data={"mastodon_admin_email": "admin@nomx.sandbox.test"})
    assert result.rc == 0, result.describe()


def test_redis_namespace_is_refused_with_upstreams_migration(box: Sandbox):
    line = refusal(box.deploy(data={"mastodon_extra_env": {"REDIS_NAMESPACE": "mastodon"}}), "mastodon_extra_env")
    assert "redis_namespace_migration" in line, line
    assert box.is_pristine()


# ---------------------------------------------------------------------- on a running instance


@pytest.fixture(scope="module")
def running(box: Sandbox) -> Result:
    result = box.deploy()
    assert result.ok, result.describe(60)
    return result


def test_no_empty_smtp_login_or_password_lines(box, running):
    lines = box.out(f"grep -E '^SMTP_(LOGIN|PASSWORD)=' {ENV_PRODUCTION} || true").split()
    assert lines == [], "empty SMTP_LOGIN/SMTP_PASSWORD lines make Rails try AUTH with an empty user"


def test_converged_run_boots_rails_zero_times(box, running):
    before = sum(1 for e in standin_events(box) if e.event == "rails-boot")
    again = box.deploy()
    assert again.ok and again.totals().get("success") == 0, again.describe()
    after = sum(1 for e in standin_events(box) if e.event == "rails-boot")
    assert after == before, f"{after - before} Rails boots in a converged run"


def test_vvv_log_holds_nothing_derived_from_a_secret(box, running):
    result = box.deploy("-vvv", data={"mastodon_smtp_login": "mailer", "mastodon_smtp_password": "hunter2-weak-pw"})
    assert result.ok, result.describe()
    again = box.deploy("-vvv", data={"mastodon_smtp_login": "mailer", "mastodon_smtp_password": "hunter2-weak-pw"})
    assert again.ok and again.totals().get("success") == 0, again.describe()
    digests = {digest for _, digest in env_line_hashes(box)}
    assert digests, "no line digests computed on the host"
    for run in (result, again):
        found = set(re.findall(r"[0-9a-f]{64}", run.output)) & digests
        assert not found, "a digest of an env line is in the -vvv output"
        assert "hunter2-weak-pw" not in run.output
        # the compare's stdin (the planned content) is shown withheld, never as text
        stdins = re.findall(r"_stdin=([^,)\s]*)", run.output)
        assert stdins and set(stdins) == {"<withheld>"}, set(stdins)
    box.deploy(data={})  # back to no SMTP login


def test_yunohost_style_secret_override_is_accepted_and_kept(box, running):
    value = "Ab3Xy9" * 21 + "Qz"  # 128 alphanumerics, not Rails' hex
    result = box.deploy(data={"mastodon_secret_key_base": value})
    assert result.ok, result.describe()
    assert box.out(f"grep -c '^SECRET_KEY_BASE={value}$' {ENV_PRODUCTION}").strip() == "1"
    again = box.deploy()  # without the override: the value is kept
    assert again.ok and again.totals().get("success") == 0, again.describe()


def _slow_run(box: Sandbox, out: list) -> threading.Thread:
    # a change that recreates the application services: tens of seconds with health waits
    def go():
        out.append(box.deploy(data={"mastodon_extra_env": {"DEFAULT_LOCALE": "de"}}, label="holder"))

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def _wait_for_lock(box: Sandbox, seconds: int = 60) -> str:
    for _ in range(seconds * 5):
        owner = box.ssh(f"cat {LOCK_OWNER} 2>/dev/null").stdout.strip()
        if owner:
            return owner
        time.sleep(0.2)
    raise AssertionError("the first run never took the host's lock")


def _lock_released(box: Sandbox, seconds: int = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if box.ssh(f"test ! -e {LOCK_OWNER}").returncode == 0:
            return True
        time.sleep(0.5)
    return False


def test_a_second_run_waits_then_refuses_saying_since_when(box, running):
    held: list = []
    thread = _slow_run(box, held)
    owner = _wait_for_lock(box)
    since = owner.split()[1]
    second = box.deploy(data={"mastodon_lock_timeout": 3, "mastodon_extra_env": {"DEFAULT_LOCALE": "de"}})
    line = refusal(second)
    assert "another run holds the host since" in line and since in line, line
    assert 3 <= second.seconds < 60, f"waited {second.seconds:.1f} s for a 3 s lock timeout"
    thread.join(timeout=600)
    assert held and held[0].ok, held[0].describe() if held else "the first run did not finish"
    # once the first run has ended, the host is free again
    third = box.deploy(data={"mastodon_lock_timeout": 30, "mastodon_extra_env": {"DEFAULT_LOCALE": "de"}})
    assert third.ok and third.totals().get("success") == 0, third.describe()
    # the holder notices the closed connection within a second (it polls); a loaded host may take longer
    assert _lock_released(box), "the lock outlived the run by more than 15 s"


def test_a_killed_run_lets_go_of_the_lock(box, running):
    killed = box.deploy(kill_when=r"Starting operation: Mastodon \| Create group", label="killed")
    assert killed.killed, killed.describe()
    t0 = time.monotonic()
    after = box.deploy(data={"mastodon_lock_timeout": 30})
    assert after.ok, after.describe()
    assert time.monotonic() - t0 < 30


def test_full_backup_disk_is_refused_before_any_change(box, running):
    box.out(f"mkdir -p {BACKUP_DIR} && mount -t tmpfs -o size=64m tmpfs {BACKUP_DIR} && chmod 700 {BACKUP_DIR}")
    try:
        before = snapshot(box)
        line = refusal(box.deploy(data={"mastodon_min_free_mb": 100}), "mastodon_min_free_mb")
        assert BACKUP_DIR in line and "MiB" in line, line
        assert not before.diff(snapshot(box)), before.diff(snapshot(box))
        # with the margin lowered below what is free, the same host deploys
        assert box.deploy(data={"mastodon_min_free_mb": 10}).ok
    finally:
        box.out(f"umount {BACKUP_DIR}")


def test_a_failed_env_write_leaves_no_temp_file_and_keeps_the_secrets(box, running):
    keep = {k: v for k, v in env_line_hashes(box)}
    # chown fails for the temp file (first on root's PATH, as a broken or full disk would make it fail)
    box.out(
        "printf '%s\\n' '#!/bin/sh' 'case \"$*\" in *pyinfra-tmp*) echo \"chown: failing on purpose\" >&2; exit 1;; esac' "
        "'exec /bin/chown \"$@\"' > /usr/local/bin/chown && chmod 755 /usr/local/bin/chown"
    )
    try:
        failed = box.deploy(data={"mastodon_smtp_server": "smtp9.sandbox.test"})
        assert failed.rc != 0, failed.describe()
    finally:
        box.out("rm -f /usr/local/bin/chown")
    left = box.ssh(f"ls -a {BASE_DIR} | grep pyinfra-tmp").stdout.strip()
    assert not left, f"temporary files left: {left}"
    assert {k: v for k, v in env_line_hashes(box)} == keep, "the failed write changed .env.production"
    assert box.deploy().ok


def test_a_downgrade_is_refused_naming_both_versions(box, running):
    before = snapshot(box)
    line = refusal(box.deploy(data={"mastodon_version": "v4.6.4"}), "mastodon_version")
    assert "v4.6.4" in line and "v4.6.5" in line and "restore the database dump" in line, line
    assert not before.diff(snapshot(box)), before.diff(snapshot(box))


def test_an_owner_account_whose_password_was_lost_gets_a_new_one(box, running):
    box.out(f"rm -f {ADMIN_PASSWORD_FILE}")
    result = box.deploy()
    assert result.ok and result.changed_labels() == ["Create the owner account admin"], result.describe()
    assert box.out(f"stat -c '%a %U' {ADMIN_PASSWORD_FILE}").split() == ["600", "root"]
    assert re.fullmatch(r"[0-9a-f]{32}", box.out(f"cat {ADMIN_PASSWORD_FILE}").strip())
    again = box.deploy()
    assert again.ok and again.totals().get("success") == 0, again.describe()


@pytest.fixture(scope="module")
def upstream_layout(box, running):
    """The instance as upstream's compose file leaves it: data directly in postgres14/ (uid 70), redis/ 999 0600."""
    psql(box, "CREATE TABLE IF NOT EXISTS adopt_canary(v text); INSERT INTO adopt_canary VALUES ('kept')")
    box.out(
        f"cd {BASE_DIR} && {COMPOSE} stop >/dev/null 2>&1 && cd postgres14 && mv pgdata/* . && rmdir pgdata "
        "&& chown -R 70:70 . && chown -R 999:1000 ../redis && chmod 600 ../redis/*",
        timeout=300,
    )


def test_upstream_layout_is_refused_then_adopted_then_deployed(box, upstream_layout):
    line = refusal(box.deploy())
    assert "adopt_upstream" in line and "upstream's layout" in line and f"{BASE_DIR}/redis" in line, line
    dry = box.task("adopt_upstream", "--dry")
    assert dry.rc == 0, dry.describe()
    assert "the PostgreSQL data moves into" in dry.output and "every file goes to uid 991" in dry.output
    assert box.ssh(f"test -f {BASE_DIR}/postgres14/PG_VERSION").returncode == 0, "--dry moved the data"
    adopted = box.task("adopt_upstream")
    assert adopted.rc == 0, adopted.describe()
    assert box.out(f"stat -c '%u %a' {PGDATA} {BASE_DIR}/redis/dump.rdb").split() == ["991", "700", "991", "600"]
    deployed = box.deploy()
    assert deployed.ok, deployed.describe(60)
    assert psql(box, "SELECT v FROM adopt_canary") == "kept"
    again = box.deploy()
    assert again.ok and again.totals().get("success") == 0, again.describe()
    assert box.task("adopt_upstream").rc == 0  # nothing left to adopt: a no-op


def test_a_patch_downgrade_is_allowed_by_its_setting(box, running):
    result = box.deploy(data={"mastodon_version": "v4.6.4", "mastodon_allow_patch_downgrade": True})
    assert result.ok, result.describe(60)
    assert "v4.6.4" in box.out("docker inspect --format '{{.Config.Image}}' mastodon-web-1")
