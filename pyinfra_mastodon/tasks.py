"""
Operator tasks, each one command for one host (``--limit HOST``) or the whole fleet::

    pyinfra inventories/prod.py pyinfra_mastodon.tasks.status
    pyinfra inventories/prod.py pyinfra_mastodon.tasks.restart --limit social42.example.org

``status`` and ``db_status`` only read; the others act (``-y`` skips the confirmation prompt).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from .deploy import validated_config
from .facts import ComposeServices, PostgresReady
from .operations import compose
from .settings import BASE_DIR, COMPOSE_PROJECT, DEFAULTS, SERVICES
from .stages import database, services


@deploy("Start Mastodon")
def start() -> None:
    """Start every service (those already running are left alone) and wait until healthy."""
    server.shell(
        name="Start all services",
        commands=[compose("up --detach --wait --remove-orphans")],
    )


@deploy("Stop Mastodon")
def stop() -> None:
    """Stop every service; containers and data stay, ``start`` brings them back."""
    server.shell(name="Stop all services", commands=[compose("stop")])


@deploy("Restart Mastodon")
def restart() -> None:
    """Restart every service."""
    server.shell(name="Restart all services", commands=[compose("restart")])


@deploy("Migrate Mastodon", data_defaults=DEFAULTS)
def migrate() -> None:
    """
    Run pending migrations in the deploy's order: pre-deployment, restart on the configured
    version, post-deployment. Does nothing when none are pending.
    """
    cfg = validated_config()
    database.migrate_before(cfg)
    services.start_all(cfg)
    post = database.migrate_after()
    services.restart_after(cfg, [post])


@deploy("Create the Mastodon owner account", data_defaults=DEFAULTS)
def create_admin() -> None:
    """
    Create the owner account (``mastodon_admin_username``/``mastodon_admin_email``) if it is missing;
    its password goes to the root-only file /root/mastodon-admin-password, never to the terminal.
    """
    cfg = validated_config()
    database.owner(cfg)


@deploy("Mastodon database status")
def db_status() -> None:
    """Say whether PostgreSQL accepts connections (``pg_isready -U postgres`` in the db service)."""
    ready = host.get_fact(PostgresReady, project_dir=BASE_DIR)
    host.log(f"PostgreSQL {'accepts connections' if ready else 'is NOT ready'}")


@deploy("Mastodon service status")
def status() -> None:
    """One line per compose service: state, health, image."""
    found = host.get_fact(ComposeServices, project=COMPOSE_PROJECT) or {}
    for service in SERVICES:
        info = found.get(service)
        if info is None:
            host.log(f"{service:<10} missing")
            continue
        health = f" ({info['health']})" if info.get("health") else ""
        host.log(f"{service:<10} {info['state']}{health}  {info['image']}  since {info['started_at']}")
