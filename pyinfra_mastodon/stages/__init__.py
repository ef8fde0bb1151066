"""
The deploy's stages, one module per concern. Each stage is a function ``(cfg, done) -> done``: it
adds its operations for one host and returns ``done`` with what later stages react to. The order
is stated once, in ``deploy.STAGES``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from io import StringIO
from typing import Callable

from pyinfra import host, state
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files

from .. import desired
from ..operations import ComposePlanMemo


@dataclass(frozen=True)
class Outcome:
    """
    What the stages so far did on this host, for the stages after them.

    + existing: what an earlier install left (``ExistingInstance``, from the preflight checks)
    + proxy_config: the operations that wrote or removed nginx server blocks
    + data_services: starting db and redis and waiting for PostgreSQL
    + compose_plan: the plan of the data services' ``compose_up``, for the one that starts all
    + migrations_before: the pre-deployment migrations (or the new database)
    + database_changes: what changed the database while the new version runs (post-deployment
      migrations, the seed): the application is restarted after them
    + instance_secrets: the secrets of an instance on several hosts (``cluster_secrets``); never shown
    """

    existing: dict = field(default_factory=dict)
    proxy_config: tuple[OperationMeta, ...] = ()
    data_services: tuple[OperationMeta, ...] = ()
    compose_plan: ComposePlanMemo | None = None
    migrations_before: tuple[OperationMeta, ...] = ()
    database_changes: tuple[OperationMeta, ...] = ()
    instance_secrets: dict = field(default_factory=dict, repr=False)


def rolling() -> bool:
    """
    Whether the run restarts the application one host at a time (``_serial``, which must be the same
    on every host of a run): when an instance of the inventory spreads over several hosts.
    """
    from ..deploy import inventory_configs

    return any(cfg.cluster for cfg in inventory_configs().values())


def runs_jobs(cfg) -> bool:
    """The host runs the database's one-off jobs: a whole server, or the db host of an instance on several."""
    return cfg.cluster is None or cfg.host == cfg.cluster.jobs_host


def unless_jobs_host_failed(cfg) -> dict:
    """
    ``_if`` for an operation of another host of an instance on several hosts that must not run once its
    db host failed in this run (a failed pre-deployment migration, restore or upgrade there): pyinfra
    goes on with the hosts that did not fail, which would start or restart the application on a
    database that is not as it expects. ``{}`` on a whole server and on the db host.
    """
    if cfg.cluster is None or runs_jobs(cfg):
        return {}
    jobs_host = cfg.cluster.jobs_host

    def jobs_host_ok() -> bool:
        return jobs_host not in {failed.name for failed in state.failed_hosts}

    return {"_if": jobs_host_ok}


Stage = Callable[..., Outcome]


def create_folder(folder: desired.Folder, note: str = "") -> OperationMeta:
    """``files.directory`` of one folder ``desired`` declares; ``note`` is said after its path."""
    # pyinfra tells operations apart by where they are called and their loop position: the hosts of an
    # instance create different folders from one loop, so the position is the path's own (one
    # operation per folder, whatever turn of the loop it comes at on each host)
    host.loop_position.append(zlib.crc32(folder.path.encode()))
    try:
        return files.directory(
            name=f"Create {folder.path}{note}", path=folder.path, user=folder.user, group=folder.group, mode=folder.mode
        )
    finally:
        host.loop_position.pop()


def put_file(file: desired.File, **arguments) -> OperationMeta:
    """``files.put`` of one file ``desired`` declares, its content rendered already (``arguments``: ``_if``...)."""
    return files.put(
        name=f"Write {file.path}",
        src=StringIO(file.content),
        dest=file.path,
        user=file.user,
        group=file.group,
        mode=file.mode,
        **arguments,
    )
