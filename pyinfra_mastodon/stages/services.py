"""
Stages 3, 4, 6 and 9: images, compose services up, PostgreSQL ready, restarts and the proxy reload
only when something changed.
"""

from __future__ import annotations

from dataclasses import replace

from .. import desired, layout
from ..operations import (
    ComposePlanMemo,
    compose_up,
    ensure_certificate,
    pull_missing_images,
    reload_nginx,
    restart_services,
    wait_for_postgres,
)
from . import Outcome


def start_data_services(cfg, done: Outcome) -> Outcome:
    """
    Pull what is missing, start the data services (alone: the application waits for its
    migrations), then wait until PostgreSQL is ready.
    """
    pull_missing_images(name="Pull missing images", images=cfg.images)
    data = layout.service_names(layout.DATA)
    memo = ComposePlanMemo()
    # No --wait here: the bounded wait below ends with a message that says what to check.
    up = compose_up(name=f"Start {' and '.join(data)}", services=data, wait_timeout=None, memo=memo)
    ready = wait_for_postgres(name="Wait until PostgreSQL is ready", timeout=cfg.postgres_wait_timeout)
    return replace(done, data_services=(up, ready), compose_plan=memo)


def start_all(cfg, done: Outcome) -> Outcome:
    """
    Start every service, recreating those whose image or configuration changed. When nothing
    changed since the data services' ``compose_up`` found nothing to do, its plan is used again.
    """
    compose_up(
        name="Start or update all services",
        wait_timeout=cfg.healthy_timeout,
        memo=done.compose_plan,
        reuse_plan=(*done.data_services, *done.migrations_before) if done.compose_plan else None,
    )
    return done


def restart_after(cfg, done: Outcome) -> Outcome:
    """Restart the application when post-deployment migrations or the seed changed the database."""
    app = layout.service_names(layout.APP)
    restart_services(
        name=f"Restart {', '.join(app[:-1])} and {app[-1]} after migrations or seeding",
        services=app,
        after=done.database_changes,
        wait_timeout=cfg.healthy_timeout,
    )
    return done


def reload_proxy(cfg, done: Outcome) -> Outcome:
    """Make nginx read its server blocks again when one was written or removed."""
    (proxy,) = layout.service_names(layout.PROXY)
    reload_nginx(name="Reload nginx after its configuration changed", after=done.proxy_config, proxy=proxy)
    return done


def ensure_certificate_served(cfg, done: Outcome) -> Outcome:
    """Fail the run, after a retry and a bounded wait, when 443 does not serve the domain's certificate."""
    (proxy,) = layout.service_names(layout.PROXY)
    ensure_certificate(
        name=f"Check that 443 serves the certificate of {cfg.domain}",
        domain=cfg.domain,
        acme_server=desired.acme_server(cfg),
        timeout=cfg.certificate_timeout,
        proxy=proxy,
    )
    return done
