"""
The converged run (``facts.Converged``): on a host exactly as the deploy leaves it, a run sends the
lock and one check and nothing else; every kind of drift the full run repairs is seen, so the run
takes the full path and repairs it, and the run after it is the short one again. ``--dry`` on a
drifted host says what would change and changes nothing.
"""

from __future__ import annotations

import re

import pytest
from contract import COMPOSE_FILE, ENV_PRODUCTION, NGINX_CONF_DIR, container_name
from toolkit import Result, Sandbox, snapshot

pytestmark = pytest.mark.e2e

CHECK = "Check the host: files, services, database and certificate"
STALE_CONF = f"{NGINX_CONF_DIR}/old.sandbox.test.conf"


def is_short(result: Result) -> bool:
    """The run took the converged path: its only operation is the check, with no change."""
    names = [op["name"] for op in ((result.json or {}).get("results") or {}).get("operations", [])]
    return names == [f"Mastodon | {CHECK}"] and result.totals().get("success") == 0


def concern(result: Result) -> str:
    found = re.search(r"not converged \(([^)]*)\)", result.output)
    return found.group(1) if found else ""


@pytest.fixture(scope="module")
def converged(box: Sandbox) -> Result:
    first = box.deploy()
    assert first.ok, first.describe(60)
    # the first run ends by remembering Compose's plan: the very next run is the short one
    second = box.deploy()
    assert second.ok and is_short(second), second.describe()
    return second


def test_a_converged_run_sends_the_lock_and_one_check(box, converged):
    result = box.deploy("--debug")
    assert result.ok and is_short(result), result.describe()
    commands = re.findall(r"Running command on sandbox: ", result.output)
    # pyinfra's own connection checks aside: the lock and the converged check
    assert 1 <= len(commands) <= 3, f"{len(commands)} remote commands:\n" + "\n".join(
        line[:160] for line in result.output.splitlines() if "Running command on" in line
    )


def test_a_converged_run_boots_no_rails_and_starts_no_container(box, converged):
    before = box.out("docker ps -aq --no-trunc | sort")
    events_before = box.out(
        f"docker exec {container_name('db')} psql -U postgres -tAc \"select count(*) from standin_events where event = 'rails-boot'\""
    ).strip()
    result = box.deploy()
    assert result.ok and is_short(result), result.describe()
    assert box.out("docker ps -aq --no-trunc | sort") == before
    events_after = box.out(
        f"docker exec {container_name('db')} psql -U postgres -tAc \"select count(*) from standin_events where event = 'rails-boot'\""
    ).strip()
    assert events_after == events_before


# What an operator (or a fault) may do to a converged host, the concern the check names, and a command
# that says the deploy repaired it.
DRIFTS = [
    pytest.param(f"chmod 644 {ENV_PRODUCTION}", "file", f"stat -c %a {ENV_PRODUCTION} | grep -qx 600", id="env-mode"),
    pytest.param(
        f"echo EXTRA_BY_HAND=1 >> {ENV_PRODUCTION}",
        "envfile",
        f"! grep -q EXTRA_BY_HAND {ENV_PRODUCTION}",
        id="env-line-added",
    ),
    pytest.param(
        f"echo '# edited by hand' >> {COMPOSE_FILE}",
        "file",
        f"! grep -q 'edited by hand' {COMPOSE_FILE}",
        id="compose-edit",
    ),
    pytest.param(
        f"chown root:root {COMPOSE_FILE}", "file", f"stat -c %U {COMPOSE_FILE} | grep -qx mastodon", id="compose-owner"
    ),
    pytest.param(
        "usermod -s /bin/sh mastodon",
        "user",
        "getent passwd mastodon | cut -d: -f7 | grep -qx /usr/sbin/nologin",
        id="user-shell",
    ),
    pytest.param(
        f"docker stop {container_name('sidekiq')}",
        "compose",
        f"docker inspect --format '{{{{.State.Status}}}}' {container_name('sidekiq')} | grep -qx running",
        id="container-stopped",
    ),
    pytest.param(
        f"printf '# Managed by pyinfra-mastodon\\nserver {{ listen 8081; }}\\n' > {STALE_CONF}",
        "absent",
        f"test ! -e {STALE_CONF}",
        id="stale-server-block",
    ),
]


@pytest.mark.parametrize("drift, expected, repaired", DRIFTS)
def test_drift_takes_the_full_path_and_is_repaired(box, converged, drift, expected, repaired):
    box.out(drift)
    result = box.deploy()
    assert result.ok, result.describe(60)
    assert concern(result).startswith(expected), (concern(result), result.describe())
    assert result.totals().get("success", 0) > 0, f"nothing was repaired:\n{result.describe()}"
    assert box.ssh(repaired).returncode == 0, f"not repaired: {repaired}"
    after = box.deploy()
    assert after.ok and is_short(after), after.describe()


def test_dry_run_on_a_drifted_host_says_so_and_changes_nothing(box, converged):
    box.out(f"chmod 640 {COMPOSE_FILE}")
    before = snapshot(box)
    dry = box.deploy("--dry")
    assert dry.ok, dry.describe()
    assert concern(dry) == f"file {COMPOSE_FILE}", dry.describe()
    assert any(COMPOSE_FILE in change for change in dry.planned_changes()), dry.planned_changes()
    assert snapshot(box).diff(before) == [], "--dry changed the host"
    fixed = box.deploy()
    assert fixed.ok and fixed.totals().get("success", 0) > 0, fixed.describe()
    assert is_short(box.deploy())
