"""Testinfra suite of a deployed Mastodon host (SPEC §3, §4, §7).

Runs against any server reachable by testinfra (`--hosts`), as root (root ssh or `--sudo`).
See tests/host/README.md for the exact commands (sandbox, Vagrant, any server).

Secrets: no test ever brings a secret value into this process. Secret files are checked on the
host with `grep -c`/`sha256sum`/`test`, so a failing assertion can only show counts and booleans.
"""

from __future__ import annotations

import re

import pytest
from contract import CA_CERT as DEFAULT_CA_FILE
from host_helpers import Site

from pyinfra_mastodon.layout import POOLED_ROLES, SINGLE_SERVER_ROLES, service_names


def pytest_addoption(parser):
    group = parser.getgroup("mastodon", "deployed Mastodon host (tests/host)")
    group.addoption(
        "--mastodon-domain",
        default=None,
        help="Domain of the instance on the host under test (required), e.g. social1.sandbox.test",
    )
    group.addoption(
        "--mastodon-admin-username",
        default="admin",
        help="Username of the owner account the deploy creates (default: admin)",
    )
    group.addoption(
        "--mastodon-version",
        default=None,
        help="Expected Mastodon version reported by /api/v1/instance, e.g. 4.6.5 (optional)",
    )
    group.addoption(
        "--mastodon-roles",
        default=None,
        help=(
            "The host's mastodon_roles, comma-separated, for a host of an instance on several hosts "
            f"(default: a whole server, {','.join(SINGLE_SERVER_ROLES)}): only the checks of its roles run"
        ),
    )
    group.addoption(
        "--mastodon-services",
        default=None,
        help=(
            "The compose services the host runs, comma-separated (default: those of its roles, with "
            "pgbouncer on a cluster's app host without the db and replica with db_replica, as the deploy's defaults)"
        ),
    )
    group.addoption(
        "--mastodon-cluster",
        action="store_true",
        default=False,
        help=(
            "The host is one of an instance on several hosts (implied by --mastodon-private-address, or by "
            "roles that are not a whole server's): needed for a host that runs all of a whole server's roles"
        ),
    )
    group.addoption(
        "--mastodon-private-address",
        default=None,
        help="The host's mastodon_private_address (a host of an instance on several hosts)",
    )
    group.addoption(
        "--mastodon-ca-file",
        default=None,
        help=(
            "Path ON THE HOST of a CA certificate to verify https against "
            f"(default: {DEFAULT_CA_FILE} if it exists on the host, else the system store)"
        ),
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "standin: relies on a behaviour of the Mastodon stand-in images (e.g. unauthenticated "
        "media upload); deselect with -m 'not standin' against a real instance",
    )
    config.addinivalue_line("markers", "host: testinfra check of a deployed host")
    config.addinivalue_line("markers", "roles(*names): only on a host that runs one of these roles")
    config.addinivalue_line("markers", "whole_server: only on a host that runs the whole instance")
    config.addinivalue_line("markers", "cluster: only on a host of an instance on several hosts")
    config.addinivalue_line("markers", "services(*names): only on a host that runs one of these compose services")


def host_roles(config) -> tuple[str, ...]:
    given = _opt(config, "--mastodon-roles")
    return tuple(r for r in given.split(",") if r) if given else SINGLE_SERVER_ROLES


def in_cluster(config) -> bool:
    """The host is one of an instance on several hosts."""
    return (
        bool(_opt(config, "--mastodon-cluster"))
        or bool(_opt(config, "--mastodon-private-address"))
        or not set(host_roles(config)) >= set(SINGLE_SERVER_ROLES)
    )


def host_services(config) -> tuple[str, ...]:
    given = _opt(config, "--mastodon-services")
    if given:
        return tuple(s for s in given.split(",") if s)
    roles = set(host_roles(config))
    # the deploy's defaults (mastodon_pgbouncer true): render.pooled, render.host_services
    pooled = in_cluster(config) and "db" not in roles and bool(roles & set(POOLED_ROLES))
    extra = (*(("pgbouncer",) if pooled else ()), *(("replica",) if "db_replica" in roles else ()))
    return (*service_names(roles=host_roles(config)), *extra)


def whole_server(config) -> bool:
    return not in_cluster(config)


def _applies(item, config) -> bool:
    """Whether a check is one of the host's: its role markers, and the service it is parametrized with."""
    roles = set(host_roles(config))
    for mark in item.iter_markers("roles"):
        if not roles & set(mark.args):
            return False
    if item.get_closest_marker("whole_server") and not whole_server(config):
        return False
    if item.get_closest_marker("cluster") and whole_server(config):
        return False
    for mark in item.iter_markers("services"):
        if not set(host_services(config)) & set(mark.args):
            return False
    service = getattr(item, "callspec", None) and item.callspec.params.get("service")
    return not service or service in host_services(config)


def _opt(config, name):
    # getoption with a default also works when this conftest was not an "initial" one.
    return config.getoption(name, default=None)


def pytest_collection_modifyitems(config, items):
    here = str(config.rootpath / "tests" / "host")
    ours = [i for i in items if str(i.path).startswith(here)]
    if ours and not _opt(config, "--mastodon-domain"):
        raise pytest.UsageError("tests/host needs --mastodon-domain=DOMAIN (and --hosts=...): see tests/host/README.md")
    for item in ours:
        item.add_marker(pytest.mark.host)
    # A host of an instance on several hosts runs the checks of its roles only; the others are
    # deselected (pytest counts them as such), never reported as passing.
    other = [item for item in ours if not _applies(item, config)]
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = [item for item in items if item not in other]


# ------------------------------------------------------------------------------------ options


@pytest.fixture(scope="session")
def domain(pytestconfig) -> str:
    value = _opt(pytestconfig, "--mastodon-domain")
    if not value:
        pytest.fail("--mastodon-domain is required for tests/host")
    if not re.fullmatch(r"[A-Za-z0-9.-]+", value):
        pytest.fail(f"--mastodon-domain {value!r} is not a DNS name")
    return value.lower()


@pytest.fixture(scope="session")
def admin_username(pytestconfig) -> str:
    value = _opt(pytestconfig, "--mastodon-admin-username") or "admin"
    if not re.fullmatch(r"[A-Za-z0-9_]+", value):
        pytest.fail(f"--mastodon-admin-username {value!r} is not a Mastodon username")
    return value


@pytest.fixture(scope="session")
def expected_version(pytestconfig) -> str | None:
    value = _opt(pytestconfig, "--mastodon-version")
    return value[1:] if value and value.startswith("v") else value


@pytest.fixture(scope="module")
def ca_file(pytestconfig, host) -> str | None:
    """CA certificate (path on the host) for https checks; None means the system store."""
    given = _opt(pytestconfig, "--mastodon-ca-file")
    if given:
        assert host.file(given).is_file, f"--mastodon-ca-file {given} does not exist on the host"
        return given
    if host.file(DEFAULT_CA_FILE).is_file:
        return DEFAULT_CA_FILE
    return None


@pytest.fixture(scope="session")
def services(pytestconfig) -> tuple[str, ...]:
    """The compose services the host runs."""
    return host_services(pytestconfig)


@pytest.fixture(scope="session")
def private_address(pytestconfig) -> str:
    value = _opt(pytestconfig, "--mastodon-private-address")
    if not value:
        pytest.fail("--mastodon-private-address is required for a host of an instance on several hosts")
    return value


@pytest.fixture(scope="module")
def site(host, domain, ca_file) -> Site:
    return Site(host, domain, ca_file)
