"""An image that cannot be pulled (a mistyped version or mirror) stops the run before the database
is touched: no dump, no migration, the running instance keeps its containers and its version, and
putting the setting back converges without a restart.
"""

from __future__ import annotations

import pytest

from deploy_helpers import (
    BACKUP_DIR,
    Result,
    Sandbox,
    diff_containers,
    host_snapshot,
    instance_document,
    op_label,
    standin_events,
)

pytestmark = pytest.mark.e2e

DOMAIN = "social1.sandbox.test"
MISSING = {"mastodon_version": "v4.6.9"}  # no such stand-in image, and no registry to pull it from


def started_ops(result: Result) -> list[str]:
    # A run in which every host failed ends with "No hosts remaining!" and no JSON: read the log.
    marker = "--> Starting operation: "
    return [op_label(line.split(marker, 1)[1].strip()) for line in result.stderr.splitlines() if marker in line]


@pytest.fixture(scope="module")
def runs(box: Sandbox) -> dict:
    first = box.deploy()
    assert first.ok, f"deploy failed:\n{first.safe_output(60)}"
    before = host_snapshot(box)
    events_before = len(standin_events(box))
    bad = box.deploy(data=MISSING)
    middle = host_snapshot(box)
    dumps = box.out(f"ls {BACKUP_DIR} 2>/dev/null; true").split()
    events_after = standin_events(box)[events_before:]
    version = instance_document(box, DOMAIN).get("version")
    good = box.deploy()
    after = host_snapshot(box)
    return dict(bad=bad, good=good, before=before, middle=middle, after=after, dumps=dumps,
                events=events_after, version=version)


def test_an_image_that_cannot_be_pulled_stops_the_run_at_the_pull(runs):
    bad = runs["bad"]
    assert bad.rc != 0, "the run with an image that does not exist succeeded"
    started = started_ops(bad)
    assert started and started[-1] == "Pull missing images", f"the run did not stop at the pull: {started}"
    assert "Error" in bad.stderr.split("Starting operation: Mastodon | Pull missing images", 1)[1]


def test_the_database_and_the_running_instance_are_untouched(runs):
    assert runs["dumps"] == [], f"a dump was written: {runs['dumps']}"
    assert [e.event for e in runs["events"]] == [], "the stand-in recorded migrations or seeds"
    assert not diff_containers(runs["before"], runs["middle"]), diff_containers(runs["before"], runs["middle"])
    assert runs["version"] == "4.6.5", runs["version"]


def test_putting_the_setting_back_converges_without_a_restart(runs):
    good = runs["good"]
    assert good.ok, f"the run with the setting put back failed:\n{good.safe_output(60)}"
    assert not diff_containers(runs["before"], runs["after"]), diff_containers(runs["before"], runs["after"])
    changed = good.changed_labels()
    assert changed == ["Write /opt/mastodon/docker-compose.yml"], changed
