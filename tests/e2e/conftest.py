"""Shared fixtures of the end-to-end tests: the sandbox server (scripts/sandbox).

Tests marked ``e2e`` that take the ``sandbox`` fixture get a server brought up (and reset to a clean
state) once per test session; modules that need a fresh server call ``sandbox.reset()`` or
``sandbox.ensure_clean()``. ``sandbox.ssh(cmd)`` runs one shell command line on it as root.
Tests that take the ``cluster`` fixture get the four servers of ``scripts/sandbox up --cluster``,
once per module, taken down after it.
"""

import pytest
from toolkit import Sandbox, SandboxCluster


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


@pytest.fixture(scope="module")
def cluster():
    """The sandbox cluster (db, app1, app2, edge), up and clean for this module, down after it."""
    sandbox = Sandbox.from_env()
    try:
        yield SandboxCluster.up(sandbox)
    finally:  # also after a failed up: no half cluster left behind
        sandbox.run("down", "--cluster")
