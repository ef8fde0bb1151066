"""Which changes of mastodon_version on a running instance are refused (versions.py)."""

from __future__ import annotations

import pytest

from pyinfra_mastodon import versions


@pytest.mark.parametrize(
    "ref, tag",
    [
        ("ghcr.io/mastodon/mastodon:v4.6.5", "v4.6.5"),
        ("registry.example.org:5000/mastodon/mastodon:v4.6.4@sha256:" + "a" * 64, "v4.6.4"),
        ("registry.example.org:5000/mastodon/mastodon", None),
        ("mastodon@sha256:" + "b" * 64, None),
    ],
)
def test_image_tag(ref, tag):
    assert versions.image_tag(ref) == tag


@pytest.mark.parametrize(
    "running, wanted, allow, refused",
    [
        ("v4.6.5", "v4.6.5", False, None),
        ("v4.6.4", "v4.6.5", False, None),  # an upgrade
        ("v4.3.9", "v4.6.5", False, None),  # minor series may be skipped
        ("v4.6.5", "v4.6.4", False, "older than the v4.6.5"),
        ("v4.6.5", "v4.6.4", True, None),  # a patch downgrade, allowed
        ("v4.6.5", "v4.5.15", True, "older than the v4.6.5"),  # never across minor series
        ("v4.1.9", "v4.6.5", False, "earlier than v4.2.0"),
        ("v4.2.0", "v4.6.5", False, None),
        ("latest", "v4.6.5", False, None),  # not a version: nothing can be said
        ("v4.6.5", "nightly", False, None),
    ],
)
def test_refusal(running, wanted, allow, refused):
    problem = versions.refusal(running, wanted, allow)
    if refused is None:
        assert problem is None
    else:
        assert problem and refused in problem


def test_downgrade_refusal_says_how_to_go_back():
    problem = versions.refusal("v4.6.5", "v4.6.4")
    assert "restore the database dump" in problem and "/var/backups/mastodon" in problem
    assert "mastodon_allow_patch_downgrade" in problem
