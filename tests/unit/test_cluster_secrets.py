"""The secrets of an instance on several hosts (``cluster_secrets``): read once, generated once, the
same for every host, also when pyinfra prepares the hosts in parallel greenlets."""

from __future__ import annotations

import types

import gevent
import pytest

from pyinfra_mastodon import cluster_secrets
from pyinfra_mastodon.errors import DeployRefused

KEYS = cluster_secrets.instance_keys()


class FakeCluster:
    jobs_host = "db"
    hosts = {"db": "10.0.0.11", "app1": "10.0.0.21", "app2": "10.0.0.22"}


def cfg(name: str):
    return types.SimpleNamespace(host=name, domain="social1.example.org", cluster=FakeCluster())


@pytest.fixture
def module(monkeypatch):
    holder = types.SimpleNamespace()
    monkeypatch.setattr(cluster_secrets, "inventory", types.SimpleNamespace(_get_module=lambda: holder))
    return holder


def test_hosts_preparing_at_once_get_one_set_of_secrets(module, monkeypatch):
    reads = []

    def slow_read(host_name):  # the db host's file is missing: a first deploy
        reads.append(host_name)
        gevent.sleep(0.05)  # the network: another greenlet runs meanwhile
        return []

    monkeypatch.setattr(cluster_secrets, "_read", slow_read)
    monkeypatch.setattr(cluster_secrets, "_other_copies", lambda c: [])
    jobs = [gevent.spawn(cluster_secrets.for_instance, cfg(name)) for name in ("app2", "db", "app1")]
    gevent.joinall(jobs, raise_error=True)
    first, *others = [job.value for job in jobs]
    assert sorted(first) == sorted(KEYS)
    assert all(other == first for other in others)
    assert reads == ["db"]


def test_the_db_hosts_values_are_kept_and_only_the_missing_generated(module, monkeypatch):
    monkeypatch.setattr(
        cluster_secrets, "_read", lambda h: ["SECRET_KEY_BASE=" + "a" * 128, "DB_PASS='" + "d" * 64 + "'", "DB_HOST=db"]
    )
    found = cluster_secrets.for_instance(cfg("app1"))
    assert found["SECRET_KEY_BASE"] == "a" * 128 and found["DB_PASS"] == "d" * 64
    assert len(found["REDIS_PASSWORD"]) == 64 and sorted(found) == sorted(KEYS)


def test_a_db_host_that_lost_its_copy_while_others_have_theirs_is_refused(module, monkeypatch):
    monkeypatch.setattr(cluster_secrets, "_read", lambda h: [])
    monkeypatch.setattr(cluster_secrets, "_other_copies", lambda c: ["app1"])
    with pytest.raises(DeployRefused) as info:
        cluster_secrets.for_instance(cfg("app2"))
    assert "host 'db'" in str(info.value) and "'app1'" in str(info.value) and "restore it" in str(info.value)


def test_a_whole_server_has_no_instance_secrets():
    assert cluster_secrets.for_instance(types.SimpleNamespace(cluster=None)) == {}


def test_a_db_host_left_out_of_the_run_is_refused_by_name(monkeypatch):
    absent = types.SimpleNamespace(connected=False, data={})
    monkeypatch.setattr(cluster_secrets, "inventory", types.SimpleNamespace(get_host=lambda name: absent))
    with pytest.raises(DeployRefused) as info:
        cluster_secrets._read("db")
    assert "host 'db'" in str(info.value) and "--limit" in str(info.value)


def test_an_unreadable_copy_fails_the_read_instead_of_reading_as_none(tmp_path):
    import subprocess

    path = tmp_path / ".env.production"
    path.write_text("SECRET_KEY_BASE=" + "a" * 128 + "\nLOCAL_DOMAIN=x\n")
    run = lambda: subprocess.run(["sh", "-c", cluster_secrets.read_command(str(path))], capture_output=True, text=True)  # noqa: E731
    found = run()
    assert found.returncode == 0 and found.stdout == "SECRET_KEY_BASE=" + "a" * 128 + "\n"
    path.write_text("LOCAL_DOMAIN=x\n")  # no secret in it: nothing, and no error
    assert (run().returncode, run().stdout) == (0, "")
    path.chmod(0)
    import os

    if os.geteuid() != 0:  # root reads it anyway
        assert run().returncode == 3
    path.unlink()
    assert (run().returncode, run().stdout) == (0, "")
