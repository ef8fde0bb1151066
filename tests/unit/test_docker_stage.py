"""What ``stages/docker.py`` installs, from what a host has (pure logic; installs run on the sandbox)."""

from __future__ import annotations

import pytest

from pyinfra_mastodon import layout
from pyinfra_mastodon.stages.docker import DockerPlan, _pin_files, plan, release_of

V2 = {"command": "docker compose", "version": "2.26.1"}
V1 = {"command": "docker-compose", "version": "1.29.2"}


@pytest.mark.parametrize(
    "release, packages, pin",
    [
        (("Ubuntu", "22.04"), ("docker.io", "docker-compose-v2"), False),
        (("Ubuntu", "24.04"), ("docker.io", "docker-compose-v2"), False),
        (("Debian", "12"), ("docker.io", "docker-compose"), True),
        (("Debian", "13"), ("docker.io", "docker-cli", "docker-compose"), False),
    ],
)
def test_a_bare_host_gets_engine_and_compose_from_its_archive(release, packages, pin):
    assert plan(release, [], False, None, None) == DockerPlan(packages=packages, compose_pin=pin)


def test_a_working_docker_is_left_alone():
    assert plan(("Debian", "12"), ["docker.io", "docker-compose"], True, "20.10.24", V2) == DockerPlan()
    # docker-ce with its plugin: not one package of ours is looked at
    assert plan(("Ubuntu", "24.04"), ["docker-ce", "docker-compose-plugin"], True, "27.3.1", V2) == DockerPlan()


@pytest.mark.parametrize(
    "installed, docker_cli",
    [
        (["docker-ce"], True),  # docker-ce without its compose plugin: the checks refuse, nothing is mixed in
        (["docker-ce-cli"], True),
        ([], True),  # a docker binary no package of the archive owns (a static install)
    ],
)
def test_a_docker_not_from_the_archive_is_left_alone_even_when_incomplete(installed, docker_cli):
    assert plan(("Ubuntu", "24.04"), installed, docker_cli, None, None) == DockerPlan()


def test_only_the_missing_package_is_installed():
    # engine from the archive, Compose v2 missing: only Compose
    assert plan(("Ubuntu", "24.04"), ["docker.io"], True, "24.0.7", None) == DockerPlan(packages=("docker-compose-v2",))
    # Debian 12 with only Compose v1 (bookworm's docker-compose): v1 is that package, nothing to install,
    # the checks refuse "only docker-compose 1.29.2"
    assert plan(("Debian", "12"), ["docker.io", "docker-compose"], True, "20.10.24", V1) == DockerPlan()


def test_installed_packages_that_do_not_work_are_not_reinstalled():
    # daemon stopped or binary moved away, every package there: the operator's to fix, the checks say so
    assert plan(("Debian", "13"), ["docker.io", "docker-cli", "docker-compose"], False, None, None) == DockerPlan()


def test_an_unsupported_release_is_a_reason_not_a_plan():
    problem = plan(("Debian", "11"), [], False, None, None)
    assert isinstance(problem, str) and "Debian 11" in problem and "mastodon_install_docker" in problem


@pytest.mark.parametrize(
    "fact, expected",
    [
        ({"name": "Ubuntu", "major": 22, "minor": 4}, ("Ubuntu", "22.04")),
        ({"name": "Ubuntu", "major": 24, "minor": 4}, ("Ubuntu", "24.04")),
        ({"name": "Debian", "major": 12, "minor": 7}, ("Debian", "12")),
        ({"name": "Debian", "major": 13, "minor": None}, ("Debian", "13")),
    ],
)
def test_release_of_the_distribution_fact(fact, expected):
    assert release_of(fact) == expected
    assert expected in layout.DOCKER_FROM_ARCHIVE


def test_debian_12_pins_every_trixie_package_away_but_compose():
    sources, preferences = _pin_files("http://mirror.example.org/debian")
    assert "URIs: http://mirror.example.org/debian\nSuites: trixie\nComponents: main\n" in sources
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in sources
    stanzas = [s for s in preferences.split("\n\n")]
    assert "Package: *\nPin: release n=trixie\nPin-Priority: -1" in stanzas[0]
    assert stanzas[1] == "Package: docker-compose\nPin: release n=trixie\nPin-Priority: 500\n"
