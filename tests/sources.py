"""
The checkout's files as git would commit them (tracked, or new and not ignored), copied elsewhere:
what the release check and the wheel test build from. Building in the checkout itself would leave
build/ and *.egg-info there (a build/ folder changes how ruff sorts imports) and could pick up local
state (.sandbox/, .venv/, caches). pytest imports this as ``sources`` (``pythonpath = ["tests"]``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy(dest: Path) -> Path:
    """Copy the files git would commit into ``dest``; returns ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest
