"""Shared fixtures of the end-to-end tests: the sandbox server (scripts/sandbox).

Tests marked ``e2e`` that take the ``sandbox`` fixture get a server brought up (and reset to a clean
state) once per test session. ``sandbox.ssh(cmd)`` runs one shell command line on it as root.
"""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SANDBOX_SCRIPT = REPO / "scripts" / "sandbox"


@dataclass
class Sandbox:
    repo: Path
    inventory: Path
    script: Path = SANDBOX_SCRIPT

    def run(self, *args: str, check: bool = False, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
        """Run ``scripts/sandbox ARGS...`` (captured, text)."""
        return subprocess.run(
            [str(self.script), *args], cwd=self.repo, capture_output=True, text=True,
            check=check, timeout=timeout, **kw,
        )

    def ssh(self, cmd: str, check: bool = False, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
        """Run one shell command line on the server as root; returns the CompletedProcess (text)."""
        return self.run("ssh", cmd, check=check, timeout=timeout, **kw)

    def is_clean(self) -> bool:
        """No Mastodon deployed: no /opt/mastodon, no compose project's containers."""
        return self.ssh(
            "test ! -e /opt/mastodon && "
            'test -z "$(docker ps -aq --filter label=com.docker.compose.project=mastodon)"'
        ).returncode == 0

    def ensure_clean(self) -> None:
        """Reset the server when an earlier test module left a deploy on it (ports 80/443 taken...)."""
        if not self.is_clean():
            self.up(*self.suite_args())

    @staticmethod
    def suite_args() -> list[str]:
        return ["--suite", os.environ["SANDBOX_SUITE"]] if os.environ.get("SANDBOX_SUITE") else []

    def up(self, *args: str) -> subprocess.CompletedProcess:
        """(Re-)start the server, reset to a clean state. Fails the test with the script's output."""
        proc = self.run("up", *args)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            pytest.fail(f"scripts/sandbox up {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        return proc


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    """The sandbox server, up and clean (once per session). Suite from SANDBOX_SUITE (default bookworm)."""
    box = Sandbox(repo=REPO, inventory=REPO / "inventories" / "sandbox.py")
    box.up(*box.suite_args())
    return box
