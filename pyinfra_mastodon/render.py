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


def replica_data_dir(cfg: Any) -> str:
    """The read replica's data folder, named by the major of the db image it copies."""
    return layout.replica_data_dir(versions.postgres_major(cfg.images["db"]))


def s3_env(cfg: Any) -> list[tuple[str, str]]:
    """
    The ``.env.production`` lines of the object storage (``mastodon_s3_*``), in ``settings.S3_ENV_KEYS``
    order; none without a bucket. Upstream (config/initializers/paperclip.rb) builds media URLs from
    ``S3_PROTOCOL`` and ``S3_HOSTNAME`` (default ``s3-REGION.amazonaws.com``) unless an alias host is set:
    with another endpoint, the endpoint's host is the one that serves them.
    """
    if not cfg.s3_bucket:
        return []
    hostname = cfg.s3_hostname or (settings.s3_endpoint_host(cfg.s3_endpoint) if cfg.s3_endpoint else None)
    pairs = {
        "S3_ENABLED": "true",
        "S3_BUCKET": cfg.s3_bucket,
        "S3_REGION": cfg.s3_region,
        "S3_ENDPOINT": cfg.s3_endpoint,
        "S3_PROTOCOL": cfg.s3_protocol,
        "S3_HOSTNAME": hostname,
        "S3_ALIAS_HOST": cfg.s3_alias_host,
        "AWS_ACCESS_KEY_ID": cfg.s3_access_key_id,
        "AWS_SECRET_ACCESS_KEY": cfg.s3_secret_access_key,
    }
    return [(key, pairs[key]) for key in settings.S3_ENV_KEYS if pairs[key] is not None]


def sidekiq_command(cfg: Any) -> str:
    """The sidekiq service's command: upstream's ``bundle exec sidekiq``, with ``-c`` and ``-q`` when set."""
    words = ["bundle", "exec", "sidekiq"]
    if cfg.sidekiq_concurrency is not None:
        words += ["-c", str(cfg.sidekiq_concurrency)]
    for queue in cfg.sidekiq_queues or ():
        words += ["-q", queue]
    return " ".join(words)


def host_services(cfg: Any) -> tuple[str, ...]:
    """
    The services the host's compose file defines, in ``SERVICES`` order: those of its roles; on the
    jobs host of an instance on several hosts also web, under the jobs profile (``jobs_only``).
    """
    mine = set(layout.service_names(roles=cfg.roles))
    if jobs_only(cfg):
        mine.add("web")
    ordered = tuple(name for name in layout.service_names() if name in mine)
    if not cfg.cluster:
        return ordered
    extra = ("replica",) if "db_replica" in cfg.roles else ()
    return (*ordered, *extra, *(("pgbouncer",) if pooled(cfg) else ()))


def pooled(cfg: Any) -> bool:
    """
    The host's application reaches PostgreSQL through PgBouncer (transaction mode): a host of an
    instance on several hosts that runs web, streaming or sidekiq without the db (``mastodon_pgbouncer``).
    The db host's application and its one-off jobs (migrations among them) connect directly.
    """
    return bool(cfg.cluster) and pools(cfg)


def pools(cfg: Any) -> bool:
    """``pooled`` without asking whether the host is one of several (instance rules run before ``cfg.cluster``)."""
    return bool(cfg.pgbouncer) and "db" not in cfg.roles and bool(set(layout.POOLED_ROLES) & set(cfg.roles))


def has_replica(cfg: Any) -> bool:
    """The host's instance has a read replica (a host with the ``db_replica`` role)."""
    return bool(cfg.cluster) and bool(cfg.cluster.addresses("db_replica"))


def jobs_only(cfg: Any) -> bool:
    """The host defines web only to run the database's one-off jobs in it (``layout.JOBS_PROFILE``)."""
    return bool(cfg.cluster) and cfg.host == cfg.cluster.jobs_host and "web" not in cfg.roles


def peer(cfg: Any, service: str) -> str:
    """
    Where the application reaches ``db`` or ``redis``: the compose service on the same host, or the
    private address of the instance's host that runs it.
    """
    if not cfg.cluster or service in layout.service_names(roles=cfg.roles):
        return layout.SERVICES_BY_NAME[service].name
    return cfg.cluster.address(service)


def replica_host(cfg: Any) -> str | None:
    """Where the application reaches the read replica; None when the instance has none."""
    if not has_replica(cfg):
        return None
    if "db_replica" in cfg.roles:
        return layout.SERVICES_BY_NAME["replica"].name
    return cfg.cluster.address("db_replica")


def secret_keys(cfg: Any) -> list[str]:
    """
    The secret lines of ``.env.production``: Mastodon's, on several hosts also PostgreSQL's and Redis's
    passwords, and the read replica's (the same as PostgreSQL's) when the instance has one.
    """
    return [
        *settings.SECRET_ENV_KEYS,
        *(layout.CLUSTER_SECRET_KEYS if cfg.cluster else ()),
        *((layout.REPLICA_SECRET_KEY,) if has_replica(cfg) else ()),
    ]


def guarded(cfg: Any) -> list[tuple[str, str, int, tuple[str, ...]]]:
    """
    What the host serves to the instance's other hosts, for its firewall: (service, private address,
    port, the addresses of the hosts that may connect); nothing on a whole server.
    """
    if not cfg.cluster:
        return []
    return [
        (name, str(cfg.private_address), layout.SERVICE_PORTS[name], cfg.cluster.clients(name))
        for name in layout.SERVICE_PORTS
        if layout.SERVICES_BY_NAME[name].role in cfg.roles
    ]


def _context(cfg: Any) -> dict[str, Any]:
    major = versions.postgres_major(cfg.images["db"])
    db = replace(layout.SERVICES_BY_NAME["db"], data_dir=layout.db_data_dir(major))
    replica = replace(layout.SERVICES_BY_NAME["replica"], data_dir=layout.replica_data_dir(major))
    return {
        # what this host runs: every service on a whole server
        "here": host_services(cfg),
        "jobs_only": jobs_only(cfg),
        "cluster": cfg.cluster,
        # where the application's connections to PostgreSQL go: PgBouncer on this host, or PostgreSQL
        "db_host": layout.SERVICES_BY_NAME["pgbouncer"].name if pooled(cfg) else peer(cfg, "db"),
        "db_port": layout.PGBOUNCER_PORT if pooled(cfg) else layout.SERVICE_PORTS["db"],
        "pooled": pooled(cfg),
        # where PgBouncer and the replica reach the primary
        "primary_host": peer(cfg, "db"),
        "replica_address": cfg.cluster.address("db_replica") if has_replica(cfg) else None,
        # where the application reaches the replica: on its own host inside the compose network (its
        # firewall admits only the other hosts to the published port)
        "replica_host": replica_host(cfg),
        "trusted_proxies": ("127.0.0.1/8", "::1/128", *cfg.cluster.addresses("proxy")) if cfg.cluster else (),
        "redis_host": peer(cfg, "redis"),
        # where web and streaming publish their ports: the proxy on the same host, or on the instance's others
        "publish": str(cfg.private_address) if cfg.cluster else "127.0.0.1",
        "ports": layout.SERVICE_PORTS,
        "guarded": guarded(cfg),
        "cfg": cfg,
        "layout": layout,
        # service name -> its record: templates say `services.db.data_dir`, never "postgres14"
        "services": {**layout.SERVICES_BY_NAME, "db": db, "replica": replica},
        "secret_keys": secret_keys(cfg),
        "s3_env": s3_env(cfg),
        "sidekiq_command": sidekiq_command(cfg),
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
