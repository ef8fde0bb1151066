"""
Fake commands for the unit tests that run the package's shell through a real /bin/sh: each is a small
script put first on PATH in place of a real program (docker, restic...). Imported as ``fakes``.
"""

from __future__ import annotations

import stat
from pathlib import Path


def fake_bin(directory: Path, **scripts: str) -> Path:
    """A ``bin`` folder below ``directory`` holding one executable per keyword (name -> its text)."""
    bin_dir = Path(directory) / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir
