"""
The shell scripts of ``pyinfra_mastodon/sh/``, as ``commands.script`` sends them (prelude included):
valid POSIX sh (``sh -n``), clean under shellcheck, and each one used by the package.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pyinfra_mastodon import commands

PACKAGE = Path(commands.__file__).resolve().parent
SCRIPTS = sorted(path.stem for path in commands.SCRIPTS_DIR.glob("*.sh"))


def test_there_are_scripts():
    assert len(SCRIPTS) >= 8, SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_parses_as_posix_sh(name):
    result = subprocess.run(["sh", "-n", "-c", commands.script_source(name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_passes_shellcheck(name, tmp_path):
    # scripts/bootstrap installs shellcheck; a missing one is a failure, not a skip.
    assert shutil.which("shellcheck"), "shellcheck is not installed (Debian package shellcheck)"
    # As sent, but with the files as written: their comments carry shellcheck's directives.
    path = tmp_path / f"{name}.sh"
    path.write_text("#!/bin/sh\n" + commands.script_source(name, annotated=True))
    result = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_is_used(name):
    uses = [
        path for path in PACKAGE.rglob("*.py") if f'"{name}"' in path.read_text() and path.name != "test_scripts.py"
    ]
    assert uses, f"sh/{name}.sh is used nowhere in the package"


def test_sent_text_has_no_comment_lines():
    for name in SCRIPTS:
        assert not any(line.lstrip().startswith("#") for line in commands.script_text(name).splitlines())
