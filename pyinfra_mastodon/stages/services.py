"""
Stages 3, 4, 6 and 9: images, compose services up, PostgreSQL ready, restarts and the proxy reload
only when something changed.
"""

from __future__ import annotations

from dataclasses import replace

from .. import desired, layout, render
from ..operations import (
    ComposePlanMemo,
    _changed,
    clone_replica,
    compose_up,
    ensure_certificate,
    pull_missing_images,
    reload_nginx,
    restart_services,
    wait_for_postgres,
)
from ..render import host_services
from . import Outcome, rolling, runs_jobs, unless_jobs_host_failed


def start_data_services(cfg, done: Outcome) -> Outcome:
    """
    Pull what is missing, start the data services (alone: the application waits for its
    migrations), then wait until PostgreSQL is ready.
    """
    here = host_services(cfg)
    pull_missing_images(
        name="Pull missing images", images={service: image for service, image in cfg.images.items() if service in here}
    )
    data = tuple(name for name in layout.service_names(layout.DATA) if name in here)
    memo = ComposePlanMemo() if data or "replica" in here else None
    started: tuple = ()
    if data:
        # No --wait here: the bounded wait below ends with a message that says what to check.
        started = (compose_up(name=f"Start {' and '.join(data)}", services=data, wait_timeout=None, memo=memo),)
        if "db" in data:
            ready = wait_for_postgres(name="Wait until PostgreSQL is ready", timeout=cfg.postgres_wait_timeout)
            started = (*started, ready)
    if render.has_replica(cfg):
        # every host of the instance at this line: after the db host's PostgreSQL is ready on all of them
        started = (*started, *_start_replica(cfg, here, memo))
    # a host of an instance on several hosts without PostgreSQL or Redis has none
    return replace(done, data_services=started, compose_plan=memo) if started else done


def _start_replica(cfg, here: tuple[str, ...], memo) -> tuple:
    """The read replica: its copy of the primary (once), then the replica started from it."""
    mine = "replica" in here
    cloned = copy_primary(cfg, f"{layout.BASE_DIR}/{render.replica_data_dir(cfg)}/pgdata" if mine else None)
    if not mine:
        return ()
    up = compose_up(name="Start the read replica", services=("replica",), wait_timeout=cfg.healthy_timeout, memo=memo)
    return (cloned, up)


def copy_primary(cfg, pgdata: str | None, **arguments):
    """``clone_replica`` of the instance's primary into ``pgdata`` (None: the replica is elsewhere)."""
    return clone_replica(
        name="Copy the primary into the read replica",
        pgdata=pgdata,
        primary=cfg.cluster.address("db"),
        port=layout.SERVICE_PORTS["db"],
        timeout=cfg.postgres_wait_timeout,
        **arguments,
    )


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
        # an instance on several hosts: one host after the other, each healthy before the next
        settle=_settle(cfg),
        _serial=rolling(),
        **unless_jobs_host_failed(cfg),
    )
    return done


def _settle(cfg) -> int:
    """How long a host of an instance on several hosts that serves the proxy waits after a restart."""
    serves_proxy = {"web", "streaming"} & set(cfg.roles)
    return layout.PROXY_FAIL_TIMEOUT if cfg.cluster is not None and serves_proxy else 0


# The database changes of each instance on several hosts (domain -> its jobs host's operations),
# for the restart of its application on the other hosts: known there only once they ran.
_DATABASE_CHANGES: dict[str, tuple] = {}


def restart_after(cfg, done: Outcome) -> Outcome:
    """
    Restart the application when post-deployment migrations or the seed changed the database; on an
    instance on several hosts, those of its db host, one application host after the other.
    """
    app = layout.service_names(layout.APP)
    name = f"Restart {', '.join(app[:-1])} and {app[-1]} after migrations or seeding"
    if cfg.cluster is None:
        restart_services(
            name=name, services=app, after=done.database_changes, wait_timeout=cfg.healthy_timeout, _serial=rolling()
        )
        return done
    if runs_jobs(cfg):
        _DATABASE_CHANGES[cfg.domain] = done.database_changes
    mine = tuple(service for service in app if service in layout.service_names(roles=cfg.roles))
    domain = cfg.domain
    # Every host calls it, so that it comes after the db host's database changes on all of them.
    restart_services(
        name=name,
        services=mine,
        after=(),
        wait_timeout=cfg.healthy_timeout,
        decided_elsewhere=True,
        settle=_settle(cfg),
        _if=lambda: _changed(_DATABASE_CHANGES.get(domain, ())),
        _serial=rolling(),
    )
    return done


def reload_proxy(cfg, done: Outcome) -> Outcome:
    """Make nginx read its server blocks again when one was written or removed."""
    if not desired.runs_proxy(cfg):
        return done
    (proxy,) = layout.service_names(layout.PROXY)
    reload_nginx(name="Reload nginx after its configuration changed", after=done.proxy_config, proxy=proxy)
    return done


def ensure_certificate_served(cfg, done: Outcome) -> Outcome:
    """Fail the run, after a retry and a bounded wait, when 443 does not serve the domain's certificate."""
    if not desired.runs_proxy(cfg):
        return done
    (proxy,) = layout.service_names(layout.PROXY)
    ensure_certificate(
        name=f"Check that 443 serves the certificate of {cfg.domain}",
        domain=cfg.domain,
        acme_server=desired.acme_server(cfg),
        timeout=cfg.certificate_timeout,
        proxy=proxy,
    )
    return done
