"""
What the stages decide for themselves (``pyinfra_mastodon/stages/__init__.py``), as pure functions of a
host's configuration and the run's state.
"""

from __future__ import annotations

from types import SimpleNamespace

from pyinfra.context import ctx_state

from pyinfra_mastodon.stages import runs_jobs, unless_jobs_host_failed


def _cfg(host: str, jobs_host: str | None):
    cluster = SimpleNamespace(jobs_host=jobs_host) if jobs_host else None
    return SimpleNamespace(host=host, cluster=cluster)


def _state(*failed: str):
    return SimpleNamespace(failed_hosts=[SimpleNamespace(name=name) for name in failed])


def test_another_host_of_an_instance_skips_its_start_once_the_db_host_failed():
    guard = unless_jobs_host_failed(_cfg("app1", "db"))["_if"]
    with ctx_state.use(_state()):
        assert guard() is True
    with ctx_state.use(_state("app2")):
        assert guard() is True  # another app host failing is not the database's problem
    with ctx_state.use(_state("db")):
        assert guard() is False


def test_a_whole_server_and_the_db_host_have_no_guard():
    assert unless_jobs_host_failed(_cfg("solo", None)) == {}
    assert unless_jobs_host_failed(_cfg("db", "db")) == {}
    assert runs_jobs(_cfg("db", "db")) and not runs_jobs(_cfg("app1", "db"))
