"""
Stages 3, 6 and 9: compose services up, PostgreSQL ready, restarts only when something changed.
"""

from __future__ import annotations

from typing import Sequence

from pyinfra.api.operation import OperationMeta

from ..operations import (
    compose_up,
    pull_missing_images,
    reload_nginx,
    restart_services,
    wait_for_postgres,
)

APP_SERVICES = ("web", "streaming", "sidekiq")


def start_data_services(cfg) -> list[OperationMeta]:
    """
    Pull what is missing, start PostgreSQL and Redis (alone: the application waits for its
    migrations), then wait until PostgreSQL is ready. Returns the last two operations.
    """
    pull_missing_images(name="Pull missing images", images=cfg.images)
    # No --wait here: the bounded wait below ends with a message that says what to check.
    up = compose_up(name="Start db and redis", services=("db", "redis"), wait_timeout=None)
    ready = wait_for_postgres(
        name="Wait until PostgreSQL is ready",
        timeout=cfg.postgres_wait_timeout,
    )
    return [up, ready]


def start_all(cfg, unchanged_since: Sequence[OperationMeta] | None = None) -> OperationMeta:
    """
    Start every service, recreating those whose image or configuration changed.

    + unchanged_since: ``start_data_services``' operations and those after it: when none changed
      anything, its compose plan is used again instead of asking Compose a second time
    """
    return compose_up(
        name="Start or update all services",
        wait_timeout=cfg.healthy_timeout,
        reuse_plan=unchanged_since,
    )


def restart_after(cfg, after: Sequence[OperationMeta]) -> None:
    """Restart the application when post-deployment migrations or the seed changed the database."""
    restart_services(
        name="Restart web, streaming and sidekiq after migrations or seeding",
        services=APP_SERVICES,
        after=after,
        wait_timeout=cfg.healthy_timeout,
    )


def reload_proxy(after: Sequence[OperationMeta]) -> None:
    reload_nginx(name="Reload nginx after its configuration changed", after=after)
