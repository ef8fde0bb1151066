"""
Stages 5, 7 and 8: migrations split around the restart, the seed and the owner account.
"""

from __future__ import annotations

from dataclasses import replace

from ..operations import migrate_after_restart, migrate_before_restart, owner_account, seed_database
from . import Outcome


def migrate_before(cfg, done: Outcome) -> Outcome:
    """A new database, or the pre-deployment migrations of a new version, while the old one runs."""
    pre = migrate_before_restart(
        name="Prepare the database or run pre-deployment migrations",
        web_image=cfg.web_image,
        backup=cfg.backup_before_upgrade,
        min_free_mb=cfg.min_free_mb,
    )
    return replace(done, migrations_before=(pre,))


def migrate_after(cfg, done: Outcome) -> Outcome:
    """The post-deployment migrations, once the new version runs."""
    post = migrate_after_restart(name="Run post-deployment migrations")
    return replace(done, database_changes=(*done.database_changes, post))


def seed(cfg, done: Outcome) -> Outcome:
    seeded = seed_database(name="Seed the database")
    return replace(done, database_changes=(*done.database_changes, seeded))


def owner(cfg, done: Outcome) -> Outcome:
    owner_account(
        name=f"Create the owner account {cfg.admin_username}",
        username=cfg.admin_username,
        email=cfg.admin_email,
    )
    return done
