"""The Vagrant path, run for real: `scripts/test-vagrant` through Vagrant's built-in Docker provider.

Vagrant, the Vagrantfile's machine and provisioning, `vagrant ssh-config`, inventories/vagrant.py, the
deploy over SSH as the `vagrant` user with sudo, the second run with zero changes and the testinfra
host suite with `--ssh-config` are the real thing; only the hypervisor is a container (see the script).
The script runs once with ``--keep``; the tests then read its log and look at the machine it left,
and the last one destroys it (the fixture's finalizer does too, whatever happened).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from contract import BASE_DIR
from toolkit import REPO, tail

pytestmark = [pytest.mark.e2e, pytest.mark.vagrant]

SCRIPT = REPO / "scripts" / "test-vagrant"
SSH_CONFIG = REPO / ".vagrant" / "ssh-config"
MACHINE_ID = REPO / ".vagrant" / "machines" / "social1" / "docker" / "id"
# the steps scripts/test-vagrant logs, in this order
STEPS = [
    "vagrant up --provider=docker",
    "vagrant provision (again",
    "loading the stand-in images",
    "pyinfra inventories/vagrant.py deploys/mastodon.py --dry",
    "pyinfra -y inventories/vagrant.py deploys/mastodon.py",
    "(second run: zero changes)",
    "pytest tests/host --hosts=social1 --ssh-config=.vagrant/ssh-config --sudo",
]


class Run:
    def __init__(self, proc: subprocess.CompletedProcess, seconds: float):
        self.rc = proc.returncode
        self.log = proc.stdout + "\n" + proc.stderr
        self.seconds = seconds


def _vagrant(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, VAGRANT_DEFAULT_PROVIDER="docker")
    return subprocess.run(["vagrant", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _machine_ssh(command: str) -> subprocess.CompletedProcess:
    """One command line on the machine, as `vagrant`, through the exported ssh config."""
    return subprocess.run(
        ["ssh", "-F", str(SSH_CONFIG), "-o", "BatchMode=yes", "social1", command],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def run():
    # scripts/bootstrap installs vagrant (and the script would install it): missing is a failure
    assert shutil.which("vagrant") or os.geteuid() == 0, "vagrant is not installed and this is not root"
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(SCRIPT), "--keep"], cwd=REPO, capture_output=True, text=True, timeout=3600, stdin=subprocess.DEVNULL
    )
    result = Run(proc, time.monotonic() - t0)
    yield result
    if MACHINE_ID.exists():
        _vagrant("destroy", "-f")
    SSH_CONFIG.unlink(missing_ok=True)  # as the script does: a stale config would name a gone address


def test_script_passes(run):
    assert run.rc == 0, f"scripts/test-vagrant failed (exit {run.rc}, {run.seconds:.0f} s):\n{tail(run.log, 80)}"


def test_every_step_ran_in_order(run):
    positions = [run.log.find(step) for step in STEPS]
    missing = [step for step, at in zip(STEPS, positions, strict=True) if at < 0]
    assert not missing, f"steps not in the log: {missing}\n{tail(run.log, 40)}"
    assert positions == sorted(positions), f"steps out of order: {list(zip(STEPS, positions, strict=True))}"


def test_second_run_changed_nothing(run):
    assert re.search(r"second run: zero changes", run.log), tail(run.log, 40)


def test_host_suite_passed(run):
    # the last pytest summary line of the log is the host suite's ("45 passed, 1 skipped in 30.1s")
    lines = [line for line in run.log.splitlines() if re.search(r"\d+ passed.* in [\d.]+s", line)]
    assert lines, f"no pytest summary of tests/host in the log:\n{tail(run.log, 40)}"
    counts = {word.rstrip("s"): int(n) for n, word in re.findall(r"(\d+) (\w+)", lines[-1])}
    assert counts.get("passed", 0) >= 20, lines[-1]
    assert not counts.get("failed") and not counts.get("error"), lines[-1]


def test_ssh_config_logs_in_as_vagrant_with_the_inserted_key(run):
    text = SSH_CONFIG.read_text()
    assert re.search(r"^\s*User vagrant$", text, re.MULTILINE), text
    key = re.search(r"^\s*IdentityFile (.+)$", text, re.MULTILINE).group(1).strip().strip('"')
    assert Path(key) == MACHINE_ID.parent / "private_key", key


def test_deploy_went_through_sudo_as_vagrant(run):
    # root has no SSH key on the machine, so every root command of the deploy went through sudo
    proc = _machine_ssh(
        "sudo sh -c 'test ! -s /root/.ssh/authorized_keys && echo no-root-key'; "
        f"sudo test -d {BASE_DIR} && echo deployed; "
        "sudo journalctl -q --no-pager _COMM=sudo | grep -c 'vagrant : .*USER=root'"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert lines[:2] == ["no-root-key", "deployed"], proc.stdout
    assert int(lines[2]) > 50, f"only {lines[2]} sudo commands by vagrant in the journal"


def test_provisioning_installed_docker_from_the_archive(run):
    proc = _machine_ssh(
        "dpkg-query -W -f='${Status} ${Package}\\n' docker.io docker-cli docker-compose; docker compose version"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("install ok installed") == 3, proc.stdout
    assert "Docker Compose version 2." in proc.stdout or "Docker Compose version v2." in proc.stdout, proc.stdout


def test_vagrant_destroy_removes_the_machine(run):
    cid = MACHINE_ID.read_text().strip()
    proc = _vagrant("destroy", "-f")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gone = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True)
    assert gone.returncode != 0, f"container {cid[:12]} still exists after vagrant destroy"
