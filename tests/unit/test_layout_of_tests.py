"""
The test tree itself: pytest imports test modules by their file name (no packages, rootdir-relative),
so two modules of one name in tests/unit and tests/e2e stop the whole run at collection.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_no_two_test_modules_share_a_name():
    names = Counter(path.name for path in TESTS.rglob("test_*.py") if ".sandbox" not in path.parts)
    assert not [name for name, count in names.items() if count > 1], sorted(n for n, c in names.items() if c > 1)
