"""
The deploy's stages, one module per concern. Each stage is a function ``(cfg, done) -> done``: it
adds its operations for one host and returns ``done`` with what later stages react to. The order
is stated once, in ``deploy.STAGES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import StringIO
from typing import Callable

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
    """

    existing: dict = field(default_factory=dict)
    proxy_config: tuple[OperationMeta, ...] = ()
    data_services: tuple[OperationMeta, ...] = ()
    compose_plan: ComposePlanMemo | None = None
    migrations_before: tuple[OperationMeta, ...] = ()
    database_changes: tuple[OperationMeta, ...] = ()


Stage = Callable[..., Outcome]


def create_folder(folder: desired.Folder, note: str = "") -> OperationMeta:
    """``files.directory`` of one folder ``desired`` declares; ``note`` is said after its path."""
    return files.directory(
        name=f"Create {folder.path}{note}", path=folder.path, user=folder.user, group=folder.group, mode=folder.mode
    )


def put_file(file: desired.File) -> OperationMeta:
    """``files.put`` of one file ``desired`` declares, its content rendered already."""
    return files.put(
        name=f"Write {file.path}",
        src=StringIO(file.content),
        dest=file.path,
        user=file.user,
        group=file.group,
        mode=file.mode,
    )
