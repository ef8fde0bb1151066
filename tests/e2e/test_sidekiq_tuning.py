"""
Sidekiq's threads and queues (mastodon_sidekiq_concurrency, mastodon_sidekiq_queues) on a running
instance: the sidekiq container works what the settings say, with one database connection per thread,
a second run changes and restarts nothing, and going back to upstream's defaults restores its command.
"""

from __future__ import annotations

import json

import pytest
from contract import container_name
from toolkit import Result, Sandbox, container

pytestmark = pytest.mark.e2e

# every upstream queue, the scheduler included (the only Sidekiq of the instance), other weights
QUEUES = ["default,4", "ingress,4", "push,2", "mailers", "pull", "scheduler", "fasp"]
TUNED = {"mastodon_sidekiq_concurrency": 12, "mastodon_sidekiq_queues": QUEUES}


def _env(box: Sandbox, service: str) -> list[str]:
    out = box.out(f"docker inspect --format '{{{{json .Config.Env}}}}' {container_name(service)}")
    return json.loads(out)


def _command(box: Sandbox, service: str) -> list[str]:
    return json.loads(box.out(f"docker inspect --format '{{{{json .Config.Cmd}}}}' {container_name(service)}"))


@pytest.fixture(scope="module")
def runs(box) -> dict[str, Result]:
    out = {"before": box.deploy()}
    assert out["before"].ok, out["before"].describe()
    out["sidekiq_before"] = container(box, "sidekiq")
    out["web_before"] = container(box, "web")
    out["tuned"] = box.deploy(data=TUNED)
    out["sidekiq_tuned"] = container(box, "sidekiq")
    out["again"] = box.deploy(data=TUNED)
    out["sidekiq_again"] = container(box, "sidekiq")
    out["title"] = box.out(f"docker exec {container_name('sidekiq')} ps -eo args")
    out["env"] = _env(box, "sidekiq")
    out["web_env"] = _env(box, "web")
    out["web_tuned"] = container(box, "web")
    out["logs"] = box.out(f"docker logs {container_name('sidekiq')} 2>&1")
    yield out
    back = box.deploy()
    assert back.ok, back.describe()


def test_sidekiq_runs_the_threads_and_queues_asked(runs):
    assert runs["tuned"].ok, runs["tuned"].describe()
    # the stand-in takes Sidekiq's own command line: its title and log say what it works
    assert "sidekiq 8.1.6 mastodon [0 of 12 busy]" in runs["title"], runs["title"]
    assert f"INFO: concurrency 12, queues {' '.join(QUEUES)}" in runs["logs"], runs["logs"][-2000:]
    # one database connection per thread, for Sidekiq alone
    assert "DB_POOL=12" in runs["env"]
    assert not [line for line in runs["web_env"] if line.startswith("DB_POOL=")]


def test_only_sidekiq_was_recreated(runs):
    assert runs["sidekiq_tuned"] != runs["sidekiq_before"]
    assert runs["web_tuned"] == runs["web_before"], "web restarted for a Sidekiq setting"


def test_a_second_run_changes_and_restarts_nothing(runs):
    again = runs["again"]
    assert again.ok and again.totals().get("success") == 0, again.describe()
    assert runs["sidekiq_again"] == runs["sidekiq_tuned"]


def test_back_to_upstreams_defaults(box, runs):
    back = box.deploy()
    assert back.ok, back.describe()
    assert _command(box, "sidekiq") == ["bundle", "exec", "sidekiq"]
    assert "sidekiq 8.1.6 mastodon [0 of 5 busy]" in box.out(f"docker exec {container_name('sidekiq')} ps -eo args")
    assert not [line for line in _env(box, "sidekiq") if line.startswith("DB_POOL=")]
