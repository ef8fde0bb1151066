"""Pure logic of the preflight checks (the checks themselves run end to end on the sandbox)."""

from __future__ import annotations

import pytest

from pyinfra_mastodon.preflight import compose_is_recent
from pyinfra_mastodon.versions import postgres_major


@pytest.mark.parametrize(
    "version, recent",
    [
        ("2.19.0", True),
        ("2.26.1", True),
        ("v2.29.7", True),
        ("2.24.6+ds1-0ubuntu1~22.04.1", True),
        ("3.0.0", True),
        ("2.18.1", False),
        ("v2.17.3", False),
        ("2.2.3", False),
        ("1.29.2", False),
        ("", True),  # unreadable: not refused on a guess
        ("dev", True),
    ],
)
def test_compose_is_recent(version, recent):
    assert compose_is_recent(version) is recent


@pytest.mark.parametrize(
    "image, major",
    [
        ("postgres:14-alpine", 14),
        ("postgres:17", 17),
        ("postgres:17.2-bookworm", 17),
        ("registry.example.org:5000/postgres:16-alpine", 16),
        ("docker.io/library/postgres:14@sha256:" + "0" * 64, 14),
        ("postgres", None),
        ("postgres:latest", None),
        ("registry.example.org:5000/postgres", None),
        ("postgres@sha256:" + "0" * 64, None),
    ],
)
def test_postgres_major(image, major):
    assert postgres_major(image) == major
