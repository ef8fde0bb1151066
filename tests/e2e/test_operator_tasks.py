"""Operator tasks (README "Operator commands"): each one pyinfra command, on one host with --limit.

Also the prerequisite checks: a host without Docker Engine or Compose v2 is refused before any change.
"""

from __future__ import annotations

import json
import re

import pytest
from contract import ADMIN_PASSWORD_FILE, COMPOSE_PROJECT, SERVICE_NAMES, container_name
from toolkit import Sandbox, run_pyinfra, snapshot

pytestmark = pytest.mark.e2e


def started(box: Sandbox) -> dict[str, str]:
    out = box.out(
        f"docker ps -q --filter label=com.docker.compose.project={COMPOSE_PROJECT} | "
        "xargs -r docker inspect -f '{{.Name}} {{.State.StartedAt}}'"
    )
    return dict(line.lstrip("/").split(" ", 1) for line in out.splitlines())


@pytest.fixture(scope="module")
def box(sandbox) -> Sandbox:
    sandbox.reset()
    conn = sandbox
    result = conn.deploy()
    assert result.ok, f"deploy failed:\n{result.describe(60)}"
    return conn


def test_status_lists_every_service_running(box):
    proc = box.task("status")
    assert proc.rc == 0, proc.describe()
    for service in SERVICE_NAMES:
        assert f"{service}" in proc.stderr and "running" in proc.stderr, proc.describe()
        # its own line: "[sandbox] SERVICE   running (health)  IMAGE  since ..."
        line = re.compile(rf"^(?:.*\]\s*)?{re.escape(service)}\s+running\b.*$", re.M)
        assert line.search(proc.stderr), f"no line says {service} is running:\n{proc.describe()}"
    assert "missing" not in proc.stderr


def test_db_status_says_postgres_accepts_connections(box):
    proc = box.task("db_status")
    assert proc.rc == 0 and "PostgreSQL accepts connections" in proc.stderr, proc.describe()


def test_status_fact_as_json(box):
    proc = run_pyinfra(
        box,
        "--json",
        label="fact ComposeServices",
        yes=False,
        target=["fact", "pyinfra_mastodon.facts.ComposeServices"],
    )
    assert proc.rc == 0, proc.describe()
    services = json.loads(proc.stdout)["pyinfra_mastodon.facts.ComposeServices"]["sandbox"]
    assert {s: v["state"] for s, v in services.items()} == dict.fromkeys(SERVICE_NAMES, "running")


def test_restart_restarts_every_service(box):
    before = started(box)
    proc = box.task("restart")
    assert proc.rc == 0, proc.describe()
    after = started(box)
    assert set(after) == set(before) and all(after[c] != before[c] for c in before), (before, after)


def test_stop_then_start(box):
    proc = box.task("stop")
    assert proc.rc == 0, proc.describe()
    assert started(box) == {}, "containers still running after stop"
    proc = box.task("start")
    assert proc.rc == 0, proc.describe()
    assert len(started(box)) == len(SERVICE_NAMES)


def test_migrate_and_create_admin_do_nothing_on_a_converged_host(box):
    before = snapshot(box)
    for name in ("migrate", "create_admin"):
        proc = box.task(name)
        assert proc.rc == 0, proc.describe()
        assert "Grand total" in proc.stderr
        total = [line for line in proc.stderr.splitlines() if "Grand total" in line][0].split()
        assert total[3] == "-", f"{name} changed something on a converged host: {total}"
    after = snapshot(box)
    assert not before.diff_files(after) and not before.diff_containers(after)


def test_create_admin_creates_a_missing_owner(box):
    box.out(
        f"docker exec {container_name('db')} psql -U postgres -d postgres -qc "
        "\"delete from users where account_id in (select id from accounts where username='admin'); "
        f"delete from accounts where username='admin'\" && rm -f {ADMIN_PASSWORD_FILE}"
    )
    proc = box.task("create_admin")
    assert proc.rc == 0, proc.describe()
    assert box.out(f"stat -c '%a %U' {ADMIN_PASSWORD_FILE}").strip() == "600 root"
    count = box.out(
        f"docker exec {container_name('db')} psql -U postgres -d postgres -tAc "
        '"select count(*) from accounts a join users u on u.account_id = a.id '
        "where a.username = 'admin' and a.domain is null\""
    ).strip()
    assert count == "1"


@pytest.mark.parametrize(
    "hide, expected",
    [
        ("mv /usr/bin/docker /usr/bin/docker.hidden", "no Docker Engine answers"),
        (
            "mv /usr/libexec/docker/cli-plugins/docker-compose /root/docker-compose.hidden",
            "Docker Compose v2 (`docker compose`) is required",
        ),
    ],
    ids=["no-docker", "no-compose-v2"],
)
def test_missing_prerequisite_is_refused_before_any_change(box, hide, expected):
    before = snapshot(box)
    box.out(hide)
    try:
        result = box.deploy()
    finally:
        box.out(
            "[ -e /usr/bin/docker.hidden ] && mv /usr/bin/docker.hidden /usr/bin/docker; "
            "[ -e /root/docker-compose.hidden ] && "
            "mv /root/docker-compose.hidden /usr/libexec/docker/cli-plugins/docker-compose; true"
        )
    output = result.stdout + result.stderr
    assert result.rc != 0, "the deploy ran although a prerequisite is missing"
    assert "Starting operation" not in output, "operations ran before the refusal"
    refusal = [line for line in output.splitlines() if expected in line]
    assert refusal and "host 'sandbox'" in refusal[0] and "install" in refusal[0], result.describe()
    assert not before.diff_files(snapshot(box))
