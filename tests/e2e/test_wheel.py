"""
The package as its users get it (README "Deploying to your servers"): the wheel built from this
repository, installed into a fresh virtualenv, run from a folder that holds only an inventory.

No checkout on the path: the venv's pyinfra runs with PYTHONPATH removed, in that folder, so the
templates, the shell scripts and the deploy all come from the installed wheel. The deploy is
``pyinfra inventory.py pyinfra_mastodon.deploy.mastodon``; then a converged re-run changes nothing,
and an operator task (``pyinfra_mastodon.tasks.status``) runs the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sources
from contract import SERVICE_NAMES
from toolkit import REPO, SANDBOX_SETTINGS, Result, Sandbox, connection_data, run_pyinfra, write_inventory

pytestmark = pytest.mark.e2e


# what the installed package sees: nothing of the checkout (the e2e runner itself may have it on PYTHONPATH)
CLEAN_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def _run(*argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=CLEAN_ENV)
    assert proc.returncode == 0, f"$ {' '.join(argv)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel of this repository installed (its dependencies from pip's index)."""
    wheels = tmp_path_factory.mktemp("wheels")
    source = sources.copy(tmp_path_factory.mktemp("source"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), str(source))
    (wheel,) = wheels.glob("pyinfra_mastodon-*.whl")
    path = tmp_path_factory.mktemp("venv") / "venv"
    _run(sys.executable, "-m", "venv", str(path))
    _run(str(path / "bin" / "pip"), "install", "--disable-pip-version-check", "-q", str(wheel))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory, box: Sandbox) -> Path:
    """An empty folder, then only an inventory of the sandbox in it."""
    path = tmp_path_factory.mktemp("fleet")
    write_inventory(path, {"sandbox": {**connection_data(box), **SANDBOX_SETTINGS}})
    assert sorted(p.name for p in path.iterdir()) == ["inventory.py"]
    return path


def run(box: Sandbox, venv: Path, folder: Path, target: str, *args: str) -> Result:
    return run_pyinfra(
        box, *args, inventory=folder / "inventory.py", target=[target], venv=venv, cwd=folder, label=target
    )


@pytest.fixture(scope="module")
def first_run(box, venv, folder) -> Result:
    return run(box, venv, folder, "pyinfra_mastodon.deploy.mastodon", "--json")


def test_the_venv_imports_the_installed_package_with_its_templates(venv):
    code = (
        "import pyinfra_mastodon, pyinfra_mastodon.render as r, pyinfra_mastodon.commands as c;"
        "print(pyinfra_mastodon.__file__); print(r.TEMPLATES_DIR); print(c.SCRIPTS_DIR)"
    )
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd=venv, env=CLEAN_ENV
    )
    assert proc.returncode == 0, proc.stderr
    module, templates, scripts = proc.stdout.split()
    site = str(venv / "lib")
    assert module.startswith(site) and templates.startswith(site) and scripts.startswith(site), proc.stdout
    assert templates.endswith("pyinfra_mastodon/templates"), templates
    assert not module.startswith(str(REPO)), module


def test_the_installed_deploy_deploys_from_a_folder_with_only_an_inventory(first_run):
    assert first_run.ok, f"deploy from the wheel failed:\n{first_run.describe(60)}"
    assert first_run.totals().get("success", 0) > 0, "a fresh deploy changed nothing?"
    assert not first_run.leaks(), first_run.leaks()


def test_a_converged_rerun_of_the_installed_deploy_changes_nothing(box, venv, folder, first_run):
    assert first_run.ok, "the first deploy failed"
    again = run(box, venv, folder, "pyinfra_mastodon.deploy.mastodon", "--json")
    assert again.ok, again.describe(60)
    changed = again.changed_ops()
    assert again.totals().get("success") == 0 and not changed, f"rerun changed: {changed}"


def test_an_operator_task_runs_from_the_installed_package(box, venv, folder, first_run):
    assert first_run.ok, "the first deploy failed"
    status = run(box, venv, folder, "pyinfra_mastodon.tasks.status", "--limit", "sandbox")
    assert status.rc == 0, status.describe()
    for service in SERVICE_NAMES:
        assert any(service in line and "running" in line for line in status.stderr.splitlines()), status.describe()
    assert not status.leaks(), status.leaks()
