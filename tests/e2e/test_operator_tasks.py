"""Operator tasks (README "Operator commands"): each one pyinfra command, on one host with --limit.

Also the prerequisite checks: a host without Docker Engine or Compose v2 is refused before any change.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from deploy_helpers import Sandbox, _bin, diff_containers, diff_files, host_snapshot

pytestmark = pytest.mark.e2e


def task(box: Sandbox, name: str, *args: str) -> subprocess.CompletedProcess:
    argv = [_bin("pyinfra"), "-y", *args, box.inventory, f"pyinfra_mastodon.tasks.{name}", "--limit", "sandbox"]
    env = dict(os.environ, PYINFRA_PROGRESS="off", NO_COLOR="1")
    return subprocess.run(argv, cwd=box.repo, env=env, capture_output=True, text=True, timeout=600)


def started(box: Sandbox) -> dict[str, str]:
    out = box.out("docker ps -q --filter label=com.docker.compose.project=mastodon | "
                  "xargs -r docker inspect -f '{{.Name}} {{.State.StartedAt}}'")
    return dict(line.lstrip("/").split(" ", 1) for line in out.splitlines())


@pytest.fixture(scope="module")
def box(sandbox) -> Sandbox:
    sandbox.reset()
    conn = sandbox
    result = conn.deploy()
    assert result.ok, f"deploy failed:\n{result.safe_output(60)}"
    return conn


def test_status_lists_every_service_running(box):
    proc = task(box, "status")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for service in ("nginx", "db", "redis", "web", "streaming", "sidekiq"):
        assert f"{service}" in proc.stderr and "running" in proc.stderr, proc.stderr[-2000:]
        # its own line: "[sandbox] SERVICE   running (health)  IMAGE  since ..."
        line = re.compile(rf"^(?:.*\]\s*)?{re.escape(service)}\s+running\b.*$", re.M)
        assert line.search(proc.stderr), f"no line says {service} is running:\n{proc.stderr[-2000:]}"
    assert "missing" not in proc.stderr


def test_db_status_says_postgres_accepts_connections(box):
    proc = task(box, "db_status")
    assert proc.returncode == 0 and "PostgreSQL accepts connections" in proc.stderr, proc.stderr[-2000:]


def test_status_fact_as_json(box):
    argv = [_bin("pyinfra"), box.inventory, "fact", "pyinfra_mastodon.facts.ComposeServices", "--json"]
    proc = subprocess.run(argv, cwd=box.repo, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYINFRA_PROGRESS="off"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    services = json.loads(proc.stdout)["pyinfra_mastodon.facts.ComposeServices"]["sandbox"]
    assert {s: v["state"] for s, v in services.items()} == dict.fromkeys(
        ("nginx", "db", "redis", "web", "streaming", "sidekiq"), "running")


def test_restart_restarts_every_service(box):
    before = started(box)
    proc = task(box, "restart")
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = started(box)
    assert set(after) == set(before) and all(after[c] != before[c] for c in before), (before, after)


def test_stop_then_start(box):
    proc = task(box, "stop")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert started(box) == {}, "containers still running after stop"
    proc = task(box, "start")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(started(box)) == 6


def test_migrate_and_create_admin_do_nothing_on_a_converged_host(box):
    before = host_snapshot(box)
    for name in ("migrate", "create_admin"):
        proc = task(box, name)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "Grand total" in proc.stderr
        total = [line for line in proc.stderr.splitlines() if "Grand total" in line][0].split()
        assert total[3] == "-", f"{name} changed something on a converged host: {total}"
    after = host_snapshot(box)
    assert not diff_files(before, after) and not diff_containers(before, after)


def test_create_admin_creates_a_missing_owner(box):
    box.out("docker exec mastodon-db-1 psql -U postgres -d postgres -qc "
            "\"delete from users where account_id in (select id from accounts where username='admin'); "
            "delete from accounts where username='admin'\" && rm -f /root/mastodon-admin-password")
    proc = task(box, "create_admin")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert box.out("stat -c '%a %U' /root/mastodon-admin-password").strip() == "600 root"
    count = box.out("docker exec mastodon-db-1 psql -U postgres -d postgres -tAc "
                    "\"select count(*) from accounts a join users u on u.account_id = a.id "
                    "where a.username = 'admin' and a.domain is null\"").strip()
    assert count == "1"


@pytest.mark.parametrize(
    "hide, expected",
    [
        ("mv /usr/bin/docker /usr/bin/docker.hidden", "no Docker Engine answers"),
        ("mv /usr/libexec/docker/cli-plugins/docker-compose /root/docker-compose.hidden",
         "Docker Compose v2 (`docker compose`) is required"),
    ],
    ids=["no-docker", "no-compose-v2"],
)
def test_missing_prerequisite_is_refused_before_any_change(box, hide, expected):
    before = host_snapshot(box)
    box.out(hide)
    try:
        result = box.deploy()
    finally:
        box.out("[ -e /usr/bin/docker.hidden ] && mv /usr/bin/docker.hidden /usr/bin/docker; "
                "[ -e /root/docker-compose.hidden ] && "
                "mv /root/docker-compose.hidden /usr/libexec/docker/cli-plugins/docker-compose; true")
    output = result.stdout + result.stderr
    assert result.rc != 0, "the deploy ran although a prerequisite is missing"
    assert "Starting operation" not in output, "operations ran before the refusal"
    refusal = [line for line in output.splitlines() if expected in line]
    assert refusal and "host 'sandbox'" in refusal[0] and "install" in refusal[0], output[-2000:]
    assert not diff_files(before, host_snapshot(box))
