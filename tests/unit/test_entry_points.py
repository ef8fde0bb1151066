"""
The names an operator types: ``pyinfra INVENTORY pyinfra_mastodon.deploy.mastodon`` (the installed
package's deploy) and ``pyinfra_mastodon.tasks.NAME``, resolved the way pyinfra's CLI resolves a
``module.function`` argument, to the deploy functions themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pyinfra_cli.commands import get_func_and_args

from pyinfra_mastodon import deploy, tasks

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
TASKS = sorted(set(re.findall(r"pyinfra_mastodon\.tasks\.(\w+)", README)))


def test_the_deploy_resolves_as_pyinfra_resolves_module_function():
    func, (args, kwargs) = get_func_and_args(["pyinfra_mastodon.deploy.mastodon"])
    assert func is deploy.mastodon and args == [] and kwargs == {}
    # a pyinfra @deploy (it brings the settings' defaults as data_defaults), not a bare function
    assert func.deploy_name == "Mastodon"


def test_readme_names_the_tasks():
    assert {"start", "stop", "status", "migrate", "create_admin", "db_status", "tootctl"} <= set(TASKS), TASKS


@pytest.mark.parametrize("name", TASKS)
def test_each_task_the_readme_names_resolves(name):
    func, _ = get_func_and_args([f"pyinfra_mastodon.tasks.{name}"])
    assert func is getattr(tasks, name)
