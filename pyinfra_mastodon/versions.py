"""
Mastodon versions: which changes of ``mastodon_version`` on a running instance are upgrades the deploy
can make, and which it must refuse (pure functions, no pyinfra).

Rules, from upstream:

+ no downgrade: the older code would run on a database the newer one has migrated. A downgrade within
  one minor series (4.6.5 → 4.6.4) is allowed with ``mastodon_allow_patch_downgrade``, for a patch
  release withdrawn upstream; anything else goes back by restoring the dump taken before the upgrade;
+ the deploy's upgrade is zero-downtime (``SKIP_POST_DEPLOYMENT_MIGRATIONS``), which Mastodon refuses
  from versions earlier than 4.2.0 (``lib/tasks/db.rake``, ``pre_migration_check``: "Zero-downtime
  migrations from Mastodon versions earlier than 4.2.0 are not supported"): such an instance first goes
  to 4.2.x by hand;
+ skipping minor series is allowed otherwise: the release notes ask to read the skipped releases' notes,
  and the migrations of every skipped release run in order. ``OTP_SECRET``, which a version before 4.3
  still needs for its migration (CHANGELOG 4.4.0), is kept by this deploy.
"""

from __future__ import annotations

import re

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-.]?([0-9A-Za-z.-]+))?$")

# The oldest running version a zero-downtime upgrade may start from.
ZERO_DOWNTIME_FROM = (4, 2, 0)


def parse(version: str) -> tuple[int, int, int] | None:
    """``v4.6.5`` or ``4.6.5-rc.1`` → ``(4, 6, 5)``; None for a tag that is not a version (``latest``...)."""
    match = _VERSION_RE.match(version.strip())
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def image_tag(ref: str) -> str | None:
    """The tag of an image reference (``ghcr.io:443/mastodon/mastodon:v4.6.5@sha256:...`` → ``v4.6.5``)."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def _text(version: tuple[int, int, int]) -> str:
    return "v" + ".".join(map(str, version))


def refusal(running: str, wanted: str, allow_patch_downgrade: bool = False) -> str | None:
    """
    Why moving a running instance from ``running`` to ``wanted`` is refused, or None when it is fine
    (also when either is not a version number: then nothing can be said).

    + running: the version the instance runs (the web container's image tag)
    + wanted: ``mastodon_version``
    + allow_patch_downgrade: ``mastodon_allow_patch_downgrade``
    """
    old, new = parse(running), parse(wanted)
    if old is None or new is None or old == new:
        return None
    if new < old:
        if allow_patch_downgrade and new[:2] == old[:2]:
            return None
        allowed = " (mastodon_allow_patch_downgrade allows one within a minor series)" if new[:2] == old[:2] else ""
        return (
            f"is {wanted}, older than the {running} the instance runs: the older code would run on a database "
            f"the newer one has migrated{allowed}. To go back, restore the database dump taken before the "
            f"upgrade (/var/backups/mastodon) with the old version, or put {running} back"
        )
    if old < ZERO_DOWNTIME_FROM <= new:
        return (
            f"is {wanted}, but the instance runs {running}: Mastodon refuses zero-downtime migrations from "
            f"versions earlier than {_text(ZERO_DOWNTIME_FROM)} (lib/tasks/db.rake pre_migration_check): "
            "upgrade it to the latest v4.2.x first, following that release's notes"
        )
    return None


def postgres_major(image: str) -> int | None:
    """
    The PostgreSQL major version an image reference names by its tag (``postgres:14-alpine`` -> 14,
    ``postgres:17.2`` -> 17), or None when the tag does not say (``latest``, a digest only).
    """
    ref = image.split("@", 1)[0]
    tag = ref.rpartition(":")[2] if ":" in ref.rpartition("/")[2] else ""
    match = re.match(r"(\d+)(?:[.-]|$)", tag)
    return int(match.group(1)) if match else None
