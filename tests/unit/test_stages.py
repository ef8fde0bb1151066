"""Pure logic of the deploy stages (the operations themselves run end to end on the sandbox)."""

from __future__ import annotations

import pytest

from pyinfra_mastodon.stages.system import compose_is_recent


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
