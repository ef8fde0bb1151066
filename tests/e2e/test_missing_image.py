"""An image that cannot be pulled (a mistyped version or mirror) stops the run before the database
is touched: no dump, no migration, the running instance keeps its containers and its version, and
putting the setting back converges without a restart.
"""

from __future__ import annotations

import pytest
from contract import BACKUP_DIR, COMPOSE_FILE, DEFAULT_VERSION
from toolkit import Sandbox, instance_document, op_label, snapshot, standin_events

pytestmark = pytest.mark.e2e

MISSING = {"mastodon_version": "v4.6.9"}  # no such stand-in image, and no registry to pull it from


@pytest.fixture(scope="module")
def runs(box: Sandbox) -> dict:
    first = box.deploy()
    assert first.ok, f"deploy failed:\n{first.describe(60)}"
    before = snapshot(box)
    events_before = len(standin_events(box))
    bad = box.deploy(data=MISSING)
    middle = snapshot(box)
    dumps = box.out(f"ls {BACKUP_DIR} 2>/dev/null; true").split()
    events_after = standin_events(box)[events_before:]
    version = instance_document(box).get("version")
    good = box.deploy()
    after = snapshot(box)
    return dict(
        bad=bad, good=good, before=before, middle=middle, after=after, dumps=dumps, events=events_after, version=version
    )


def test_an_image_that_cannot_be_pulled_stops_the_run_at_the_pull(runs):
    bad = runs["bad"]
    assert bad.rc != 0, "the run with an image that does not exist succeeded"
    # a run in which every host failed ends with "No hosts remaining!" and no JSON: read the log
    started = [op_label(name) for name in bad.started_ops()]
    assert started and started[-1] == "Pull missing images", f"the run did not stop at the pull: {started}"
    assert "Error" in bad.stderr.split("Starting operation: Mastodon | Pull missing images", 1)[1]


def test_the_database_and_the_running_instance_are_untouched(runs):
    assert runs["dumps"] == [], f"a dump was written: {runs['dumps']}"
    assert [e.event for e in runs["events"]] == [], "the stand-in recorded migrations or seeds"
    assert not runs["before"].diff_containers(runs["middle"]), runs["before"].diff_containers(runs["middle"])
    assert runs["version"] == DEFAULT_VERSION, runs["version"]


def test_putting_the_setting_back_converges_without_a_restart(runs):
    good = runs["good"]
    assert good.ok, f"the run with the setting put back failed:\n{good.describe(60)}"
    assert not runs["before"].diff_containers(runs["after"]), runs["before"].diff_containers(runs["after"])
    changed = good.changed_labels()
    assert changed == [f"Write {COMPOSE_FILE}"], changed
