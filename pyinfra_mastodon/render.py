"""
Rendering of the files in ``templates/``: one Jinja2 environment for the deploy and the tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from . import settings
from .envfile import quote_env_value

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

_ENV = Environment(
    loader=FileSystemLoader(str(TEMPLATES_DIR)),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)
def _env_value(value) -> str:
    if isinstance(value, bool):  # Mastodon reads "true"/"false"
        value = "true" if value else "false"
    return quote_env_value("" if value is None else str(value))


_ENV.filters["env_value"] = _env_value


def _context(cfg: Any) -> dict[str, Any]:
    return {
        "cfg": cfg,
        "project": settings.COMPOSE_PROJECT,
        "uid": settings.MASTODON_UID,
        "gid": settings.MASTODON_GID,
        "db_name": settings.DB_NAME,
        "db_user": settings.DB_USER,
        "letsencrypt_dir": settings.LETSENCRYPT_DIR,
        "nginx_conf_dir": settings.NGINX_CONF_DIR,
        "local_ca_dir": settings.LOCAL_CA_DIR,
        "secret_keys": list(settings.SECRET_ENV_KEYS),
    }


def render(template: str, cfg: Any) -> str:
    """
    Render one template of ``templates/`` for one host.

    + template: file name, e.g. ``docker-compose.yml.j2``
    + cfg: the host's ``settings.MastodonConfig``
    """
    return _ENV.get_template(template).render(**_context(cfg))
