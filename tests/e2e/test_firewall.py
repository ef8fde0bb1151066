"""
The opt-in firewall (``mastodon_firewall``) on the sandbox, which has its own network namespace (and
CAP_NET_ADMIN): nftables from the archive, input dropped but SSH, 80 and 443, Docker's own tables
untouched. The deploy still connects after it (the re-run, zero changes), Docker's ports published on
127.0.0.1 still answer, the instance is still served on 443, and a port nobody opened (the
sandbox's SMTP sink on 25, reached from outside the server) no longer answers. Turned off, it is gone.

One fresh server, three runs: on, again (converged), off.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from contract import DOMAIN
from toolkit import Result, Sandbox

pytestmark = pytest.mark.e2e

ON = {"mastodon_firewall": True}
TABLE = "inet mastodon_firewall"


def server_address() -> str:
    """The server container's address on this machine's Docker network (outside the server)."""
    name = os.environ.get("SANDBOX_NAME") or "pyinfra-mastodon-sandbox"
    return subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]


def answers(port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((server_address(), port), timeout=timeout):
            return True
    except OSError:
        return False


def docker_tables(box: Sandbox) -> str:
    """Docker's NAT rules (iptables-nft): what a `flush ruleset` would have taken away."""
    return box.out("iptables -t nat -S DOCKER 2>&1; iptables -S DOCKER-USER 2>&1 | head -3")


@pytest.fixture(scope="module")
def runs(box) -> dict:
    smtp_before = answers(25)
    first: Result = box.deploy(label="deploy with the firewall", data=ON)
    state = {"smtp_before": smtp_before, "first": first}
    if first.ok:
        state["docker_nat"] = docker_tables(box)
        state["smtp_on"] = answers(25)
        state["again"] = box.deploy(label="rerun with the firewall", data=ON)
    return state


def test_the_deploy_with_the_firewall_succeeds(runs):
    assert runs["first"].ok, runs["first"].describe(80)
    assert any("Install nftables" in op for op in runs["first"].changed_ops()), runs["first"].changed_ops()


def test_the_table_drops_input_but_ssh_http_https(box, runs):
    assert runs["first"].ok, "the deploy failed"
    table = box.out(f"nft list table {TABLE}")
    assert "policy drop" in table, table
    # sshd's own port (22: the sandbox forwards the deploy's port to it) and 80/443
    assert "tcp dport { 22," in table or "tcp dport 22 " in table, table
    assert "tcp dport { 80, 443 }" in table, table
    assert box.out("systemctl is-enabled mastodon-firewall; systemctl is-active mastodon-firewall").split() == [
        "enabled",
        "active",
    ]


def test_a_port_nobody_opened_no_longer_answers_from_outside(runs):
    assert runs["first"].ok, "the deploy failed"
    assert runs["smtp_before"], (
        "the sandbox's SMTP sink did not answer on 25 before the firewall: the check proves nothing"
    )
    assert not runs["smtp_on"], "port 25 still answers from outside the server with the firewall on"
    assert answers(443) and answers(80), "80/443 do not answer from outside the server"


def test_docker_keeps_its_tables_and_its_published_ports_answer(box, runs):
    assert runs["first"].ok, "the deploy failed"
    # web and streaming are published on 127.0.0.1 through Docker's NAT (nginx runs on the host's network)
    nat = runs["docker_nat"]
    assert "--dport 3000 -j DNAT" in nat and "--dport 4000 -j DNAT" in nat, nat
    assert box.out("curl -fsS -m 10 http://127.0.0.1:3000/health").strip() == "OK"
    assert box.ssh("curl -fsS -m 10 -o /dev/null http://127.0.0.1:4000/api/v1/streaming/health").returncode == 0
    assert (
        box.ssh(f"curl -fsS -m 10 -o /dev/null --resolve {DOMAIN}:443:127.0.0.1 -k https://{DOMAIN}/").returncode == 0
    )


def test_the_deploy_still_connects_and_the_rerun_changes_nothing(runs):
    again = runs.get("again")
    assert again is not None, "the deploy failed"
    assert again.ok, again.describe(60)
    changed = again.changed_ops()
    assert again.totals().get("success") == 0 and not changed, f"rerun changed: {changed}"


def test_turned_off_the_firewall_is_gone(box, runs):
    assert runs["first"].ok, "the deploy failed"
    off = box.deploy(label="deploy with the firewall off")
    assert off.ok, off.describe(60)
    assert box.ssh(f"nft list table {TABLE}").returncode != 0, "the table is still there"
    assert box.ssh("test ! -e /etc/systemd/system/mastodon-firewall.service").returncode == 0
    assert answers(25), "port 25 does not answer again with the firewall off"
    assert "--dport 3000 -j DNAT" in docker_tables(box)
