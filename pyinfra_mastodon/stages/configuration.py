"""
Stage 2: the configuration files: ``.env.db``, ``.env.production`` (with its secrets),
``docker-compose.yml`` and the nginx server block.
"""

from __future__ import annotations

from io import StringIO

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files

from .. import settings
from ..operations import secret_env_file
from ..render import render


def apply(cfg) -> dict[str, OperationMeta]:
    """Write the four files; returns the operations, for the stages that react to their changes."""
    base = settings.BASE_DIR
    ops: dict[str, OperationMeta] = {}
    ops["env_db"] = secret_env_file(
        name=f"Write {base}/.env.db",
        path=f"{base}/.env.db",
        rendered=render("env.db.j2", cfg),
    )
    ops["env_production"] = secret_env_file(
        name=f"Write {base}/.env.production (secrets kept, never shown)",
        path=f"{base}/.env.production",
        rendered=render("env.production.j2", cfg),
        overrides=cfg.secret_overrides,
    )
    ops["compose"] = files.put(
        name=f"Write {base}/docker-compose.yml",
        src=StringIO(render("docker-compose.yml.j2", cfg)),
        dest=f"{base}/docker-compose.yml",
        user=settings.MASTODON_USER,
        group=settings.MASTODON_USER,
        mode="644",
    )
    if cfg.certbot_local_ca:
        files.directory(
            name=f"Create {settings.LOCAL_CA_DIR} (local CA key, root only)",
            path=settings.LOCAL_CA_DIR,
            user="root",
            group="root",
            mode="700",
        )
    conf = f"{settings.NGINX_CONF_DIR}/{cfg.domain}.conf"
    ops["nginx"] = files.put(
        name=f"Write {conf}",
        src=StringIO(render("nginx-site.conf.j2", cfg)),
        dest=conf,
        user="root",
        group="root",
        mode="644",
    )
    return ops


def remove_stale_server_blocks(cfg, managed_confs: list[str]) -> list[OperationMeta]:
    """
    Remove the server blocks this deploy wrote for a former domain (an instance started over on a
    new one): two blocks would both claim ``default_server`` and the same upstream, and nginx would
    refuse the configuration.

    + managed_confs: the ``.conf`` files in ``user_conf.d`` that carry this deploy's header
    """
    current = f"{settings.NGINX_CONF_DIR}/{cfg.domain}.conf"
    return [
        files.file(name=f"Remove {path} (server block of a former domain)", path=path, present=False)
        for path in managed_confs
        if path != current
    ]
