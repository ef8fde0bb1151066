"""
Stage 1: the host itself: the ``mastodon`` user and group and every directory.
"""

from __future__ import annotations

from pyinfra.operations import server

from .. import desired, layout
from . import Outcome, create_folder


def apply(cfg, done: Outcome) -> Outcome:
    """Create the ``mastodon`` user and group (991) and every directory, with owners and modes."""
    user = layout.MASTODON_USER
    server.group(
        name=f"Create group {layout.MASTODON_GROUP} (gid {layout.MASTODON_GID})",
        group=layout.MASTODON_GROUP,
        gid=layout.MASTODON_GID,
        system=True,
    )
    server.user(
        name=f"Create user {user} (uid {layout.MASTODON_UID})",
        user=user,
        uid=layout.MASTODON_UID,
        group=layout.MASTODON_GROUP,
        home=layout.BASE_DIR,
        shell=desired.USER_SHELL,
        system=True,
        ensure_home=False,
    )
    for folder in desired.system_folders(cfg):
        create_folder(folder)
    return done
