"""Shared fixtures of the end-to-end tests: the sandbox server (scripts/sandbox).

Tests marked ``e2e`` that take the ``sandbox`` fixture get a server brought up (and reset to a clean
state) once per test session; modules that need a fresh server call ``sandbox.reset()`` or
``sandbox.ensure_clean()``. ``sandbox.ssh(cmd)`` runs one shell command line on it as root.
"""

import pytest
from toolkit import Sandbox


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    """The sandbox server, up and clean (once per session). Suite from SANDBOX_SUITE (default bookworm)."""
    box = Sandbox.from_env()
    box.reset()
    return box


@pytest.fixture(scope="module")
def box(sandbox) -> Sandbox:
    """The sandbox, reset to a fresh server for this module (a module may override this fixture)."""
    sandbox.reset()
    return sandbox
