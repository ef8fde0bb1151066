"""
Stages 5, 7 and 8: migrations split around the restart, the seed and the owner account.
"""

from __future__ import annotations

from pyinfra.api.operation import OperationMeta

from ..operations import migrate_after_restart, migrate_before_restart, owner_account, seed_database


def migrate_before(cfg) -> OperationMeta:
    return migrate_before_restart(
        name="Prepare the database or run pre-deployment migrations",
        web_image=cfg.web_image,
        backup=cfg.backup_before_upgrade,
    )


def migrate_after() -> OperationMeta:
    return migrate_after_restart(name="Run post-deployment migrations")


def seed() -> OperationMeta:
    return seed_database(name="Seed the database")


def owner(cfg) -> OperationMeta:
    return owner_account(
        name=f"Create the owner account {cfg.admin_username}",
        username=cfg.admin_username,
        email=cfg.admin_email,
    )
