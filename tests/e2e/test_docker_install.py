"""
Docker when missing (``mastodon_install_docker``, on by default): a sandbox server without Docker
Engine and Compose (``scripts/sandbox up --no-docker``) ends up with a healthy instance in one run, on
Debian 12 (Compose v2 from Debian 13, pinned to that one package) and on Debian 13; ``--dry`` on it
before changes nothing; the second run changes nothing.

Costly: a fresh server per suite, and each run installs from the Debian archive. One ``--dry``, one
deploy and one re-run per suite.
"""

from __future__ import annotations

import pytest
from contract import BASE_DIR, HEALTHCHECKED
from toolkit import Result, Sandbox, container_name, wait_healthy

pytestmark = pytest.mark.e2e

PIN_FILES = (
    "/etc/apt/sources.list.d/pyinfra-mastodon-compose.sources",
    "/etc/apt/preferences.d/pyinfra-mastodon-compose",
)
# what --dry must leave as it is: the package database, the apt configuration, the instance
STATE = (
    "dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\\n' | sha256sum; "
    "ls -la /etc/apt/sources.list.d /etc/apt/preferences.d 2>&1; "
    f"ls -d {BASE_DIR} 2>&1; command -v docker || echo 'no docker'"
)
PACKAGES = "dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\\n' | awk '$1 == \"ii\" { print $2, $3 }'"


@pytest.fixture(scope="module", params=["bookworm", "trixie"])
def box(request, sandbox) -> Sandbox:
    """A server of this suite without Docker; the next module's reset brings the usual one back."""
    sandbox.up("--no-docker", "--suite", request.param)
    return sandbox


@pytest.fixture(scope="module")
def runs(box) -> dict:
    assert box.ssh("command -v docker").returncode != 0, "the --no-docker server has a docker command"
    before = box.out(STATE)
    packages = box.out(PACKAGES)
    dry = box.deploy("--dry", label="dry run without docker")
    after_dry = box.out(STATE)
    first = box.deploy(label="deploy without docker")
    health = wait_healthy(box, HEALTHCHECKED) if first.ok else {}
    again = box.deploy(label="rerun") if first.ok else None
    installed = set(box.out(PACKAGES).splitlines()) - set(packages.splitlines())
    return {
        "before": before,
        "dry": dry,
        "after_dry": after_dry,
        "first": first,
        "health": health,
        "again": again,
        # what the deploy installed or upgraded: "name version"
        "installed": sorted(installed),
    }


def only_from(policy: str, suite: str, base: str) -> list[str]:
    """The packages whose installed version (``***`` in ``apt-cache policy``) comes from ``suite``'s
    archive and not from ``base``'s (a version both offer came from the base). apt list would name
    suites by their moving name ("stable"); apt-cache policy names them by codename."""
    sources: dict[str, list[str]] = {}
    package, in_installed = None, False
    for line in policy.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            package, in_installed = line[:-1], False
        elif line.startswith(" *** "):
            in_installed = True
            sources[package] = []
        elif line.startswith("     ") and not line.startswith("      "):  # another version of the table
            in_installed = False
        elif in_installed:
            sources[package].append(line)
    return sorted(
        name
        for name, lines in sources.items()
        if any(f" {suite}/" in line for line in lines) and not any(f" {base}/" in line for line in lines)
    )


def suite(box: Sandbox) -> str:
    return box.out(". /etc/os-release && echo $VERSION_CODENAME").strip()


def test_dry_run_plans_the_install_and_changes_nothing(runs):
    dry: Result = runs["dry"]
    assert dry.rc == 0, dry.describe(60)
    planned = dry.planned_changes()
    assert any("Install docker.io" in op for op in planned), planned
    assert any("Enable and start the Docker service" in op for op in planned), planned
    assert runs["after_dry"] == runs["before"], "--dry changed the server"


def test_one_run_installs_docker_and_deploys_a_healthy_instance(box, runs):
    first: Result = runs["first"]
    assert first.ok, first.describe(80)
    assert "Install docker.io" in " ".join(first.changed_ops()), first.changed_ops()
    assert box.out("systemctl is-enabled docker; systemctl is-active docker").split() == ["enabled", "active"]
    assert box.out("docker compose version --short").strip()[:1] == "2"
    assert runs["health"] == {container_name(s): "healthy" for s in HEALTHCHECKED}, runs["health"]


def test_compose_comes_from_the_archive_and_nothing_else_from_debian_13(box, runs):
    assert runs["first"].ok, "the deploy failed"
    if suite(box) == "bookworm":
        assert box.ssh(f"test -f {PIN_FILES[0]} && test -f {PIN_FILES[1]}").returncode == 0
        # every package the deploy installed or upgraded is bookworm's but docker-compose: the pin
        # holds (the sandbox server's own trixie packages, the S3 server's, were there before it)
        names = [line.split()[0] for line in runs["installed"]]
        assert "docker-compose" in names, runs["installed"]
        policy = box.out(f"apt-cache policy {' '.join(names)}")
        from_trixie = only_from(policy, "trixie", "bookworm")
        assert from_trixie == ["docker-compose"], from_trixie
    else:
        assert box.ssh(f"test ! -e {PIN_FILES[0]} && test ! -e {PIN_FILES[1]}").returncode == 0
        assert box.out("dpkg-query -W -f '${db:Status-Abbrev}' docker-compose").strip() == "ii"


def test_the_second_run_changes_nothing(runs):
    again = runs["again"]
    assert again is not None, "the deploy failed"
    assert again.ok, again.describe(60)
    changed = again.changed_ops()
    assert again.totals().get("success") == 0 and not changed, f"rerun changed: {changed}"
