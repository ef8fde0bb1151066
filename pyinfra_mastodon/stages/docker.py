"""
Stage 0: Docker Engine and Compose v2 from the distribution's own archive, when the host has none
(``mastodon_install_docker``, on by default). It runs before the checks that need Docker: with the
packages planned, those checks do not refuse the host for lacking them.

A host that has a working Docker, or a Docker the deploy did not install from the archive (docker-ce,
moby, a ``docker`` binary no package owns), gets no operation at all: it is left alone, and the
checks refuse it as before when it lacks something.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import StringIO

from pyinfra import host
from pyinfra.facts.apt import AptSources
from pyinfra.facts.server import LinuxDistribution, Which
from pyinfra.operations import apt, files, systemd

from .. import layout
from ..errors import DeployRefused
from ..facts import ComposeCommand, DockerEngine, InstalledPackages

SETTING = "mastodon_install_docker"
_ARCHIVE_PACKAGES = sorted({p for engine, compose in layout.DOCKER_FROM_ARCHIVE.values() for p in (*engine, compose)})
_ENGINE_PACKAGES = {p for engine, _ in layout.DOCKER_FROM_ARCHIVE.values() for p in engine}
_SUPPORTED = ", ".join(f"{name} {version}" for name, version in layout.DOCKER_FROM_ARCHIVE)


@dataclass(frozen=True)
class DockerPlan:
    """
    What the stage does on one host.

    + packages: the packages to install from the archive, then the docker service is enabled and
      started (none: the host is left as it is)
    + compose_pin: Debian 12: Compose v2 comes from Debian 13's archive, pinned to that one package
    """

    packages: tuple[str, ...] = ()
    compose_pin: bool = False


def release_of(distribution: dict) -> tuple[str, str]:
    """``("Ubuntu", "24.04")``, ``("Debian", "12")`` from pyinfra's ``LinuxDistribution`` fact."""
    name, major, minor = distribution.get("name"), distribution.get("major"), distribution.get("minor")
    if name == "Ubuntu" and major is not None:
        return name, f"{major}.{int(minor or 0):02d}"
    return str(name), str(major)


def plan(
    release: tuple[str, str],
    installed: list[str] | set[str],
    docker_cli: bool,
    engine: str | None,
    compose: dict | None,
) -> DockerPlan | str:
    """
    Decide, from what the host has, what to install: a ``DockerPlan``, or why it cannot be done (str).
    Only missing packages are installed: a Docker whose packages are all there but that does not
    work (daemon stopped, a binary removed) is the operator's, and the checks refuse it as before.

    + release: (distribution, release), e.g. ``("Debian", "12")``
    + installed: the Docker packages dpkg has installed (``InstalledPackages``)
    + docker_cli: whether a ``docker`` command exists
    + engine: the ``DockerEngine`` fact (None: no daemon answers)
    + compose: the ``ComposeCommand`` fact
    """
    has_compose_v2 = bool(compose) and compose["command"] == "docker compose"
    if engine and has_compose_v2:
        return DockerPlan()
    installed = set(installed)
    if installed & set(layout.DOCKER_FOREIGN_PACKAGES) or (docker_cli and not installed & _ENGINE_PACKAGES):
        return DockerPlan()  # not ours to change: the checks say what is missing
    packages_of = layout.DOCKER_FROM_ARCHIVE.get(release)
    if packages_of is None:
        return (
            f"the host has no Docker Engine and Compose v2, and {SETTING} installs them from the archive of "
            f"{_SUPPORTED} only (this host: {' '.join(release)})"
        )
    engine_pkgs, compose_pkg = packages_of
    packages = [p for p in engine_pkgs if p not in installed]
    if not has_compose_v2 and compose_pkg not in installed:
        packages.append(compose_pkg)
    pin = bool(packages) and compose_pkg in packages and release == layout.DOCKER_COMPOSE_PIN["release"]
    return DockerPlan(packages=tuple(packages), compose_pin=pin)


def _archive_uri(release: tuple[str, str]) -> str | None:
    """The host's own Debian mirror: the first ``deb`` source of its release's suite."""
    codename = {("Debian", "12"): "bookworm"}.get(release)
    for repo in host.get_fact(AptSources) or []:
        if repo["type"] == "deb" and repo["distribution"] == codename and "main" in repo["components"]:
            return repo["url"].rstrip("/")
    return None


def _pin_files(uri: str) -> tuple[str, str]:
    pin = layout.DOCKER_COMPOSE_PIN
    sources = (
        f"{layout.MANAGED_HEADER}: Compose v2 ({pin['package']}) from Debian 13, pinned in {pin['preferences_file']}\n"
        "Types: deb\n"
        f"URIs: {uri}\n"
        f"Suites: {pin['suite']}\n"
        "Components: main\n"
        f"Signed-By: {pin['keyring']}\n"
    )
    preferences = (
        f"{layout.MANAGED_HEADER}: of {pin['suite']}, only {pin['package']} (Compose v2)\n"
        "Package: *\n"
        f"Pin: release n={pin['suite']}\n"
        "Pin-Priority: -1\n"
        "\n"
        f"Package: {pin['package']}\n"
        f"Pin: release n={pin['suite']}\n"
        "Pin-Priority: 500\n"
    )
    return sources, preferences


def install_when_missing(cfg) -> bool:
    """
    Add the operations that install and start Docker when the host lacks it; returns whether the
    host gets Docker from this run (then the checks do not refuse it for lacking Docker).
    """
    if not cfg.install_docker:
        return False
    release = release_of(host.get_fact(LinuxDistribution) or {})
    found = plan(
        release,
        host.get_fact(InstalledPackages, packages=[*_ARCHIVE_PACKAGES, *layout.DOCKER_FOREIGN_PACKAGES]),
        bool(host.get_fact(Which, command="docker")),
        host.get_fact(DockerEngine),
        host.get_fact(ComposeCommand),
    )
    if isinstance(found, str):
        raise DeployRefused(
            f"host '{host.name}': setting '{SETTING}': {found}: install Docker Engine and Compose v2 yourself"
        )
    if not found.packages:
        return False
    if found.compose_pin:
        uri = _archive_uri(release)
        if uri is None:
            raise DeployRefused(
                f"host '{host.name}': setting '{SETTING}': Compose v2 for Debian 12 comes from Debian 13's "
                "archive, but no 'deb ... bookworm main' source says which mirror this host uses: "
                "install docker-compose (v2) yourself"
            )
        sources, preferences = _pin_files(uri)
        pin = layout.DOCKER_COMPOSE_PIN
        for name, text, dest in (
            (f"Add Debian 13's archive for {pin['package']} (Compose v2) only", sources, pin["sources_file"]),
            (f"Pin every package of Debian 13 away but {pin['package']}", preferences, pin["preferences_file"]),
        ):
            files.put(name=name, src=StringIO(text), dest=dest, user="root", group="root", mode="644")
    # Only on a run that installs (a host with Docker gets none of these): no cache_time needed.
    apt.update(name="Update the package lists")
    apt.packages(
        name=f"Install {' and '.join(found.packages)} from the distribution's archive",
        packages=list(found.packages),
        no_recommends=True,
    )
    systemd.service(
        name="Enable and start the Docker service",
        service=layout.DOCKER_SERVICE,
        running=True,
        enabled=True,
    )
    return True
