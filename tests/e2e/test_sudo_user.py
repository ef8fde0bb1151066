"""The deploy as a non-root SSH user with sudo, as on Vagrant (user `vagrant`) and most cloud servers.

With `_sudo`, pyinfra uploads files as the SSH user through /tmp and then copies them as root; the
secret files must not take that path, and facts must still see the root-only files. The inotify watcher
of test_security_files (toolkit.Watcher) runs through both deploys.
"""

from __future__ import annotations

import pytest
from contract import ADMIN_PASSWORD_FILE, ENV_DB, ENV_PRODUCTION, PRIVATE_KEYS
from toolkit import Sandbox, Watcher, secret_hashes, snapshot

pytestmark = pytest.mark.e2e

USER = "deployer"
SUDO_DATA = {"ssh_user": USER, "_sudo": True}


@pytest.fixture(scope="module")
def box(sandbox) -> Sandbox:
    sandbox.reset()
    conn = sandbox
    conn.out(
        f"useradd --create-home --shell /bin/bash {USER} && "
        f"install -d -m 700 -o {USER} -g {USER} /home/{USER}/.ssh && "
        f"install -m 600 -o {USER} -g {USER} /root/.ssh/authorized_keys /home/{USER}/.ssh/authorized_keys && "
        f"echo '{USER} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{USER} && chmod 440 /etc/sudoers.d/{USER}"
    )
    return conn


@pytest.fixture(scope="module")
def watcher(box):
    w = Watcher(box, "sudo")
    w.start()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def runs(box, watcher):
    first = box.deploy(data=SUDO_DATA)
    before = snapshot(box)
    second = box.deploy(data=SUDO_DATA)
    after = snapshot(box)
    return first, second, before, after


def test_deploy_as_sudo_user_succeeds(runs):
    first, *_ = runs
    assert first.ok, f"deploy as {USER} with sudo failed:\n{first.describe(60)}"
    leaks = first.leaks()
    assert not leaks, f"the deploy's output holds a secret value (lines withheld): {leaks}"


def test_second_run_as_sudo_user_changes_nothing(runs):
    _, second, before, after = runs
    assert second.ok, f"second run failed:\n{second.describe(60)}"
    assert second.totals().get("success") == 0, f"second run changed: {second.changed_ops()}"
    assert not before.diff_files(after) and not before.diff_containers(after)


def test_secret_files_are_owned_by_mastodon_and_private(box, runs):
    listing = box.out(f"stat -c '%n %a %U:%G' {ENV_PRODUCTION} {ENV_DB} {ADMIN_PASSWORD_FILE}")
    assert listing.split("\n")[:3] == [
        f"{ENV_PRODUCTION} 600 mastodon:mastodon",
        f"{ENV_DB} 600 mastodon:mastodon",
        f"{ADMIN_PASSWORD_FILE} 600 root:root",
    ], listing
    assert all(v != "missing" for v in secret_hashes(box).values())


def test_no_secret_copy_left_in_temporary_directories(box, runs):
    # Secret files never travel as uploads: nothing of theirs may be left in /tmp or /var/tmp.
    leftovers = box.out(f"grep -rlE '^({'|'.join(PRIVATE_KEYS)})=' /tmp /var/tmp /home/{USER} 2>/dev/null; true")
    assert leftovers.strip() == "", f"secret copies left behind: {leftovers.split()}"


def test_no_secret_file_readable_by_others_at_any_moment(box, watcher, runs):
    assert watcher.alive(), "the watcher died during the module: the no-leak result would mean nothing"
    # pyinfra uploads docker-compose.yml and the nginx conf as the SSH user through /tmp (0644): a state
    # whose content is empty or exactly a public file is no leak; anything else in /tmp is
    public = watcher.public_copies()
    names = [v for v in watcher.violations() if v not in public]
    digests = watcher.digest_violations()
    assert any(v.startswith("CLOSE_WRITE") and " /tmp/" in v for v in public), (
        "the watcher saw no upload of a public file through /tmp: it does not see what a sudo deploy does"
    )
    assert not names and not digests, "files readable by group/other that hold or copy a secret:\n" + "\n".join(
        (names + [f"digest: {d}" for d in digests])[:30]
    )
