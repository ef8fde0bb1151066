"""The opt-in firewall's ruleset and unit as rendered, and the SSH ports it keeps open (pure logic;
the ruleset is loaded by a real nft on the sandbox, tests/e2e/test_firewall.py)."""

from __future__ import annotations

import re

from pyinfra_mastodon import desired, layout, settings
from pyinfra_mastodon.desired import ssh_ports
from pyinfra_mastodon.render import render_with

BASE = {"mastodon_server_id": "1", "mastodon_zone": "example.org", "mastodon_admin_email": "a@example.org"}
CFG = settings.load_config("web1", {**BASE, "mastodon_firewall": True})


def test_the_deploys_port_and_sshds_stay_open():
    assert ssh_ports(None, []) == [22]
    assert ssh_ports(2222, [22]) == [22, 2222]
    assert ssh_ports("2200", [2200]) == [2200]


def test_ruleset_replaces_only_its_own_table():
    rules = render_with("firewall.nft.j2", CFG, ssh_ports=[22, 2222])
    code = "\n".join(line for line in rules.splitlines() if not line.lstrip().startswith("#"))
    assert "flush ruleset" not in code and "flush" not in code
    tables = set(re.findall(r"^\s*(?:delete )?table (\w+ \w+)", code, re.M))
    assert tables == {layout.FIREWALL_TABLE}
    # declared (so that the delete never fails), deleted, declared with its rules: one transaction
    assert re.search(
        r"table inet mastodon_firewall\ndelete table inet mastodon_firewall\n\ntable inet mastodon_firewall \{", code
    )


def test_ruleset_drops_input_but_ssh_http_https_loopback_and_docker():
    rules = render_with("firewall.nft.j2", CFG, ssh_ports=[22, 2222])
    assert "type filter hook input priority filter; policy drop;" in rules
    assert "tcp dport { 22, 2222 } accept" in rules
    assert "tcp dport { 80, 443 } accept" in rules
    assert 'iif "lo" accept' in rules and "ct state established,related accept" in rules
    assert "hook forward" not in rules and "hook output" not in rules  # Docker's forwarding is Docker's


def test_unit_loads_and_removes_the_table():
    unit = render_with("systemd/firewall.service.j2", CFG)
    assert f"ExecStart={layout.NFT} -f {layout.FIREWALL_RULES}" in unit
    assert f"ExecStop={layout.NFT} delete table {layout.FIREWALL_TABLE}" in unit
    assert "WantedBy=multi-user.target" in unit


def test_firewall_is_opt_in():
    assert settings.SETTINGS_BY_NAME["mastodon_firewall"].default is False
    assert settings.SETTINGS_BY_NAME["mastodon_install_docker"].default is True


def test_the_converged_check_sees_the_firewall_on_and_its_absence_when_off():
    on = settings.load_config("web1", {**BASE, "mastodon_firewall": True})
    args, _ = desired.converged_check(on, [22, 2222])
    rules, unit = desired.firewall_files(on, [22, 2222])
    assert f"file {rules.path} {rules.sha256} root root 644" in args
    assert f"file {unit.path} {unit.sha256} root root 644" in args
    assert f"unit {layout.FIREWALL_UNIT}.service" in args
    assert "tcp dport { 22, 2222 } accept" in rules.content
    off = settings.load_config("web1", BASE)
    args, _ = desired.converged_check(off)
    assert f"absent {layout.FIREWALL_RULES}" in args and f"absent {desired.firewall_unit()}" in args
    assert not [item for item in args if item.startswith("unit ")]
