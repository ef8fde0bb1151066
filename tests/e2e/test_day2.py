"""
Day-2 operations: container logs capped and rotated, maintenance timers under the host's lock (a
timer's job waits for a deploy, a deploy for a job), ``status`` showing their last run, free space and
the certificate's expiry, and ``tasks.tootctl``; the second deploy stays zero-change with all of it on.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from contract import COMPOSE_FILE, LOCK_FILE, SERVICE_NAMES, container_name
from toolkit import SANDBOX_SETTINGS, Result, Sandbox, connection_data, run_pyinfra, write_inventory

pytestmark = pytest.mark.e2e

LOCK_OWNER = f"{LOCK_FILE}.owner"
ON = {
    "mastodon_media_remove_timer": True,
    "mastodon_preview_cards_remove_timer": True,
    # The tests start the jobs themselves: the default schedules (03:30, Sunday 04:30, with up to 10
    # minutes of RandomizedDelaySec) could fire in the middle of a lock test when the suite runs then.
    "mastodon_media_remove_schedule": "2099-01-01 03:30:00",
    "mastodon_preview_cards_remove_schedule": "2099-01-01 04:30:00",
    "mastodon_log_max_size": "100k",
    "mastodon_log_max_files": 2,
}


@pytest.fixture(scope="module")
def day2(box: Sandbox) -> Result:
    result = box.deploy(data=ON)
    assert result.ok, result.describe(60)
    return result


def test_second_run_is_zero_change_with_everything_on(box, day2):
    again = box.deploy(data=ON)
    assert again.ok and again.totals().get("success") == 0, again.describe()


def test_every_service_log_is_capped(box, day2):
    config = json.loads(box.out(f"docker compose -f {COMPOSE_FILE} config --format json"))
    for name in SERVICE_NAMES:
        logging = config["services"][name].get("logging") or {}
        assert logging.get("driver") == "json-file", name
        assert logging.get("options") == {"max-size": "100k", "max-file": "2"}, (name, logging)


def test_a_chatty_service_rotates(box, day2):
    web = container_name("web")
    box.out(
        f"docker exec {web} sh -c 'i=0; while [ $i -lt 4000 ]; do echo \"chatty line $i ..............\"; i=$((i+1)); done > /proc/1/fd/1'"
    )
    log = box.out(f"docker inspect --format '{{{{.LogPath}}}}' {web}").strip()
    files = box.out(f"ls {log}*").split()
    assert len(files) == 2, f"expected the log and one rotated file (max-file 2): {files}"
    sizes = [int(s) for s in box.out(f"stat -c %s {log}*").split()]
    assert max(sizes) <= 110 * 1024, sizes


def test_timers_are_installed_and_active(box, day2):
    for unit in ("mastodon-media-remove", "mastodon-preview-cards-remove"):
        assert box.out(f"systemctl is-active {unit}.timer").strip() == "active"
        assert box.out(f"systemctl is-enabled {unit}.timer").strip() == "enabled"
    unit = box.out("cat /etc/systemd/system/mastodon-media-remove.service")
    assert "bin/tootctl media remove --days 7" in unit and "/usr/local/lib/pyinfra-mastodon/run-job" in unit


def test_a_triggered_timer_runs_and_status_shows_it(box, day2):
    box.out("systemctl start mastodon-media-remove.service", timeout=300)
    journal = box.out("journalctl -u mastodon-media-remove.service --no-pager -o cat | tail -n 5")
    assert "Removed 0 media attachments" in journal, journal
    status = box.task("status")
    assert status.rc == 0, status.describe()
    lines = [line for line in status.output.splitlines() if "media-remove:" in line]
    assert lines and "last run" in lines[0] and "never" not in lines[0] and "success" in lines[0], lines
    assert any("MiB free for" in line for line in status.output.splitlines()), status.describe()
    assert any("certificate" in line and "expires" in line for line in status.output.splitlines()), status.describe()


def _deploy_in_background(box: Sandbox, data: dict, out: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.append(box.deploy(data=data, label="holder")), daemon=True)
    thread.start()
    return thread


def _lock_owner(box: Sandbox, seconds: int = 60, prefix: str = "") -> str:
    for _ in range(seconds * 5):
        owner = box.ssh(f"cat {LOCK_OWNER} 2>/dev/null").stdout.strip()
        if owner and owner.startswith(prefix):
            return owner
        time.sleep(0.2)
    raise AssertionError(f"nobody took the host's lock (wanted owner {prefix!r})")


def test_a_timer_job_waits_for_a_deploy(box, day2):
    held: list = []
    thread = _deploy_in_background(box, {**ON, "mastodon_extra_env": {"DEFAULT_LOCALE": "de"}}, held)
    deploy_owner = _lock_owner(box)
    assert not deploy_owner.startswith("timer-")
    box.out("systemctl start --no-block mastodon-preview-cards-remove.service")
    time.sleep(3)
    # the job started, and waits: the lock is still the deploy's
    assert (
        box.out("systemctl show mastodon-preview-cards-remove.service -p ActiveState --value").strip() == "activating"
    )
    assert box.ssh(f"cat {LOCK_OWNER}").stdout.strip() == deploy_owner
    thread.join(timeout=600)
    assert held and held[0].ok, held[0].describe() if held else "the deploy did not finish"
    for _ in range(120):
        if box.out("systemctl show mastodon-preview-cards-remove.service -p ActiveState --value").strip() == "inactive":
            break
        time.sleep(1)
    journal = box.out("journalctl -u mastodon-preview-cards-remove.service --no-pager -o cat | tail -n 5")
    assert "Removed media from 0 preview cards" in journal, journal


def test_a_deploy_waits_for_a_timer_job_then_refuses(box, day2):
    # a slow job: every Rails boot takes 25 s (the stand-in's STANDIN_BOOT_SECONDS, read by tootctl too)
    slow = {**ON, "mastodon_extra_env": {"STANDIN_BOOT_SECONDS": "25"}}
    assert box.deploy(data=slow).ok
    try:
        box.out("systemctl start --no-block mastodon-media-remove.service")
        owner = _lock_owner(box, prefix="timer-media-remove")
        refused = box.deploy(data={**slow, "mastodon_lock_timeout": 3})
        assert refused.rc != 0 and "Starting operation" not in refused.stderr, refused.describe()
        assert f"another run holds the host since {owner.split()[1]}" in refused.output, refused.describe()
        waited = box.deploy(data={**slow, "mastodon_lock_timeout": 300})
        assert waited.ok, waited.describe()
    finally:
        assert box.deploy(data=ON).ok


def test_tootctl_task_shows_the_output(box, day2):
    result = box.task("tootctl", data={"mastodon_tootctl": "version"})
    assert result.rc == 0, result.describe()
    assert "4.6.5" in result.output, result.describe()


@pytest.mark.parametrize("words", ["version; rm -rf /", "accounts modify $(id)", "media remove --days `x`", ""])
def test_tootctl_task_refuses_what_would_reach_a_shell(box, day2, words):
    result = box.task("tootctl", data={"mastodon_tootctl": words})
    assert result.rc != 0 and "Starting operation" not in result.stderr, result.describe()
    assert "mastodon_tootctl" in result.output


def test_timers_turned_off_are_removed(box, day2):
    off = box.deploy(data={"mastodon_log_max_size": "100k", "mastodon_log_max_files": 2})
    assert off.ok, off.describe()
    assert box.ssh("ls /etc/systemd/system/mastodon-*.timer").returncode != 0, "a timer unit was left"
    assert box.ssh("systemctl is-active mastodon-media-remove.timer").stdout.strip() != "active"
    again = box.deploy(data={"mastodon_log_max_size": "100k", "mastodon_log_max_files": 2})
    assert again.ok and again.totals().get("success") == 0, again.describe()


@pytest.fixture(scope="module")
def second_host(box: Sandbox, day2):
    """A second sandbox server (same key and images), deployed as social2.sandbox.test."""
    env = dict(
        os.environ,
        SANDBOX_NAME=os.environ.get("SANDBOX_NAME", "pyinfra-mastodon-sandbox") + "-two",
        SANDBOX_PORT=str(int(box.port) + 1000),
        SANDBOX_CACHE=str(box.cache),
    )
    up = subprocess.run(
        [str(box.repo / "scripts" / "sandbox"), "up"], env=env, capture_output=True, text=True, timeout=1800
    )
    assert up.returncode == 0, up.stderr[-2000:]
    two = Sandbox(repo=box.repo, inventory=box.inventory, key=box.key, port=int(env["SANDBOX_PORT"]), cache=box.cache)
    hosts = {
        "sandbox": {**connection_data(box), **SANDBOX_SETTINGS},
        "sandbox2": {**connection_data(two), **SANDBOX_SETTINGS, "mastodon_server_id": "2"},
    }
    inventory = write_inventory(Path(tempfile.mkdtemp(prefix="pyinfra-mastodon-two-")), hosts)
    deployed = run_pyinfra(box, "--json", "--limit", "sandbox2", inventory=inventory)
    assert deployed.ok, deployed.describe(60)
    yield inventory
    subprocess.run([str(box.repo / "scripts" / "sandbox"), "down"], env=env, capture_output=True, timeout=600)


def test_tootctl_task_runs_on_two_hosts_and_shows_each_output(box, second_host):
    result = run_pyinfra(
        box, inventory=second_host, target=["pyinfra_mastodon.tasks.tootctl"], data={"mastodon_tootctl": "version"}
    )
    assert result.rc == 0, result.describe()
    for name in ("sandbox", "sandbox2"):
        assert any(line.strip().startswith(f"[{name}]") and "4.6.5" in line for line in result.output.splitlines()), (
            name,
            result.describe(),
        )
