"""
Stages 5, 7 and 8: migrations split around the restart, the seed and the owner account.
"""

from __future__ import annotations

from dataclasses import replace

from ..operations import migrate_after_restart, migrate_before_restart, owner_account, seed_database
from ..render import jobs_only as jobs_only_here
from . import Outcome, runs_jobs


def migrate_before(cfg, done: Outcome) -> Outcome:
    """
    A new database, or the pre-deployment migrations of a new version, while the old one runs; once
    per instance, on the host that runs the database's jobs (``runs_jobs``), before any restart.
    """
    if not runs_jobs(cfg):
        return done
    jobs_only = jobs_only_here(cfg)
    pre = migrate_before_restart(
        name="Prepare the database or run pre-deployment migrations",
        web_image=cfg.web_image,
        backup=cfg.backup_before_upgrade,
        min_free_mb=cfg.min_free_mb,
        **({"jobs_only": True} if jobs_only else {}),
    )
    return replace(done, migrations_before=(pre,))


def migrate_after(cfg, done: Outcome) -> Outcome:
    """The post-deployment migrations, once the new version runs (on every host of the instance)."""
    if not runs_jobs(cfg):
        return done
    image = {"image": cfg.web_image} if jobs_only_here(cfg) else {}
    post = migrate_after_restart(name="Run post-deployment migrations", **image)
    return replace(done, database_changes=(*done.database_changes, post))


def seed(cfg, done: Outcome) -> Outcome:
    if not runs_jobs(cfg):
        return done
    seeded = seed_database(name="Seed the database")
    return replace(done, database_changes=(*done.database_changes, seeded))


def owner(cfg, done: Outcome) -> Outcome:
    if not runs_jobs(cfg):
        return done
    owner_account(
        name=f"Create the owner account {cfg.admin_username}",
        username=cfg.admin_username,
        email=cfg.admin_email,
    )
    return done
