"""
Stage 1: the host itself: prerequisites, the ``mastodon`` user and the directories.
"""

from __future__ import annotations

import re

from pyinfra import host
from pyinfra.facts.server import Users
from pyinfra.operations import files, server

from .. import settings
from ..errors import DeployRefused
from ..facts import ComposeCommand, DockerEngine, ExistingInstance, UidGidOwners

INSTALL_HINT = (
    "install Docker Engine and Compose v2 (Ubuntu: apt install docker.io docker-compose-v2; "
    "Debian 13: apt install docker.io docker-compose; or docker-ce + docker-compose-plugin "
    "from Docker's own repository) and start the docker service"
)


# `docker compose --dry-run` (how the deploy tells which services are out of date) came in 2.19.
MIN_COMPOSE_VERSION = (2, 19)


def compose_is_recent(version: str) -> bool:
    """
    Whether a ``docker compose version --short`` string is at least ``MIN_COMPOSE_VERSION``.

    + version: e.g. ``2.26.1``, ``v2.29.7``, ``2.24.6+ds1-0ubuntu1~22.04.1``; one that cannot be
      read passes (the check is for known old releases, not for guessing)
    """
    match = re.match(r"v?(\d+)\.(\d+)", version.strip())
    if not match:
        return True
    return (int(match.group(1)), int(match.group(2))) >= MIN_COMPOSE_VERSION


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
    if not compose_is_recent(compose["version"]):
        raise DeployRefused(
            f"host '{host.name}': Docker Compose {compose['version']} is too old, the deploy needs "
            f"{'.'.join(map(str, MIN_COMPOSE_VERSION))} or newer (for `docker compose --dry-run up`): "
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


def check_existing_instance(cfg) -> dict:
    """
    Refuse, before anything changes anywhere, what would silently break an instance already on the
    host: a new domain for it, or a database in upstream's layout that this deploy would not see.
    Returns the ``ExistingInstance`` fact (the configuration stage removes stale server blocks).
    """
    existing = host.get_fact(ExistingInstance, project_dir=settings.BASE_DIR, nginx_conf_dir=settings.NGINX_CONF_DIR)
    old = existing["local_domain"]
    if old is not None and old != cfg.domain:
        raise DeployRefused(
            f"host '{host.name}': mastodon_prefix, mastodon_server_id and mastodon_zone give the domain "
            f"'{cfg.domain}', but the instance on this host is '{old}' (LOCAL_DOMAIN in "
            f"{settings.ENV_PRODUCTION_FILE}); Mastodon cannot change its domain once it exists: "
            f"put the old values back, or remove {settings.BASE_DIR} (this deletes the instance) to start over"
        )
    if existing["upstream_pgdata"]:
        pgdata = f"{settings.POSTGRES_DIR}/pgdata"
        raise DeployRefused(
            f"host '{host.name}': {settings.POSTGRES_DIR} holds a PostgreSQL data directory in upstream's "
            f"layout, but this deploy keeps it in {pgdata} and would start an empty database: stop the "
            f"old containers, move the data (cd {settings.POSTGRES_DIR} && mkdir pgdata && "
            "find . -mindepth 1 -maxdepth 1 ! -name pgdata -exec mv {} pgdata/ \\; && chmod 700 pgdata && "
            f"chown -R {settings.MASTODON_UID}:{settings.MASTODON_GID} pgdata) and run again"
        )
    return existing


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
