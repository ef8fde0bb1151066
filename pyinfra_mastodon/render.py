"""
Rendering of the files in ``templates/``: one Jinja2 environment for the deploy and the tests.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from . import layout, settings, versions
from .envfile import quote_env_value


def _templates_dir() -> Path:
    """
    The templates: ``pyinfra_mastodon/templates`` in an installed wheel (pyproject.toml maps the
    repository's ``templates/`` there), the repository's ``templates/`` in a checkout.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / "docker-compose.yml.j2").is_file():
            return candidate
    raise FileNotFoundError(f"no templates next to {package}: the package is installed without its templates")


TEMPLATES_DIR = _templates_dir()

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


def db_data_dir(cfg: Any) -> str:
    """The db service's data folder for the PostgreSQL major of the host's db image."""
    return layout.db_data_dir(versions.postgres_major(cfg.images["db"]))


def _context(cfg: Any) -> dict[str, Any]:
    db = replace(layout.SERVICES_BY_NAME["db"], data_dir=db_data_dir(cfg))
    return {
        "cfg": cfg,
        "layout": layout,
        # service name -> its record: templates say `services.db.data_dir`, never "postgres14"
        "services": {**layout.SERVICES_BY_NAME, "db": db},
        "secret_keys": list(settings.SECRET_ENV_KEYS),
    }


def render(template: str, cfg: Any) -> str:
    """
    Render one template of ``templates/`` for one host.

    + template: file name, e.g. ``docker-compose.yml.j2``
    + cfg: the host's ``settings.MastodonConfig``
    """
    return _ENV.get_template(template).render(**_context(cfg))


def render_with(template: str, cfg: Any, **extra: Any) -> str:
    """``render`` with more names in the template's context (e.g. one timer's record)."""
    return _ENV.get_template(template).render(**_context(cfg), **extra)
