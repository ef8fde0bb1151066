"""
Stage 1: the host itself: prerequisites, the ``mastodon`` user and the directories.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.server import Users
from pyinfra.operations import files, server

from .. import settings
from ..errors import DeployRefused
from ..facts import ComposeCommand, DockerEngine, UidGidOwners

INSTALL_HINT = (
    "install Docker Engine and Compose v2 (Ubuntu: apt install docker.io docker-compose-v2; "
    "Debian 13: apt install docker.io docker-compose; or docker-ce + docker-compose-plugin "
    "from Docker's own repository) and start the docker service"
)


def check_prerequisites() -> None:
    """
    Refuse, before anything changes anywhere, a host that lacks Docker or Compose v2 or whose
    uid/gid 991 belongs to another name. Runs while preparing, so the run stops for every host.
    """
    if not host.get_fact(DockerEngine):
        raise DeployRefused(f"host '{host.name}': no Docker Engine answers: {INSTALL_HINT}")
    compose = host.get_fact(ComposeCommand)
    if not compose or compose["command"] != "docker compose":
        found = f"only {compose['command']} {compose['version']}" if compose else "no Compose"
        raise DeployRefused(
            f"host '{host.name}': Docker Compose v2 (`docker compose`) is required, found {found}: "
            f"{INSTALL_HINT}"
        )

    uid, name = settings.MASTODON_UID, settings.MASTODON_USER
    owners = host.get_fact(UidGidOwners, uid=uid, gid=settings.MASTODON_GID)
    if owners["user"] not in (None, name):
        raise DeployRefused(
            f"host '{host.name}': uid {uid} belongs to user '{owners['user']}', but the Mastodon "
            f"images run as uid {uid}: free it or rename that user to '{name}'"
        )
    if owners["group"] not in (None, name):
        raise DeployRefused(
            f"host '{host.name}': gid {settings.MASTODON_GID} belongs to group '{owners['group']}', "
            f"but the Mastodon images run as gid {settings.MASTODON_GID}: free it"
        )
    existing = (host.get_fact(Users) or {}).get(name)
    if existing and str(existing.get("uid")) != str(uid):
        raise DeployRefused(
            f"host '{host.name}': user '{name}' exists with uid {existing.get('uid')}, "
            f"the Mastodon images need uid {uid}"
        )


def apply() -> None:
    """Create the ``mastodon`` user and group (991) and every directory, with owners and modes."""
    user = settings.MASTODON_USER
    server.group(
        name=f"Create group {user} (gid {settings.MASTODON_GID})",
        group=user,
        gid=settings.MASTODON_GID,
        system=True,
    )
    server.user(
        name=f"Create user {user} (uid {settings.MASTODON_UID})",
        user=user,
        uid=settings.MASTODON_UID,
        group=user,
        home=settings.BASE_DIR,
        shell="/usr/sbin/nologin",
        system=True,
        ensure_home=False,
    )
    base = settings.BASE_DIR
    # postgres14 and redis stay 0755 (SPEC): PostgreSQL keeps its own 0700 data dir one level below.
    for path in (base, f"{base}/postgres14", f"{base}/redis", f"{base}/public", f"{base}/public/system"):
        files.directory(
            name=f"Create {path}",
            path=path,
            user=user,
            group=user,
            mode="755",
        )
    for path in ("/data/nginx", settings.NGINX_CONF_DIR, settings.LETSENCRYPT_DIR):
        files.directory(name=f"Create {path}", path=path, user="root", group="root", mode="755")
