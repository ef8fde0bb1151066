"""
The host suite's options (tests/host/conftest.py): which checks a host's roles and services select,
as pure functions of the command line.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_HOST = Path(__file__).resolve().parent.parent / "host"
sys.path.insert(0, str(_HOST))  # its helpers, as pytest puts them there for tests/host
_SPEC = importlib.util.spec_from_file_location("host_suite_conftest", _HOST / "conftest.py")
host_suite = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(host_suite)


class Options:
    """A pytest config's getoption over a dict of the suite's options."""

    def __init__(self, **given):
        self.given = {f"--mastodon-{key.replace('_', '-')}": value for key, value in given.items()}

    def getoption(self, name, default=None):
        return self.given.get(name, default)


@pytest.mark.parametrize(
    ("given", "services", "cluster"),
    [
        ({}, ("db", "redis", "web", "streaming", "sidekiq", "nginx"), False),
        ({"roles": "web,streaming,sidekiq"}, ("web", "streaming", "sidekiq", "pgbouncer"), True),
        (
            {"roles": "web,streaming,sidekiq,db_replica"},
            ("web", "streaming", "sidekiq", "pgbouncer", "replica"),
            True,
        ),
        ({"roles": "db,redis,web"}, ("db", "redis", "web"), True),
        ({"roles": "proxy"}, ("nginx",), True),
        # every single-server role, on a cluster host beside a replica host: told, not guessed
        ({"cluster": True}, ("db", "redis", "web", "streaming", "sidekiq", "nginx"), True),
        ({"private_address": "10.0.0.5", "roles": "web"}, ("web", "pgbouncer"), True),
        ({"roles": "web,sidekiq", "services": "web,sidekiq"}, ("web", "sidekiq"), True),
    ],
)
def test_a_hosts_services_follow_its_roles_and_the_deploys_defaults(given, services, cluster):
    config = Options(**given)
    assert set(host_suite.host_services(config)) == set(services)
    assert host_suite.in_cluster(config) is cluster
    assert host_suite.whole_server(config) is not cluster
