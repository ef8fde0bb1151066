"""
Instances checked as a whole (``instance.RULES``): each rule refuses with the host and the setting it
names, before any change; a single whole server passes them all.
"""

from __future__ import annotations

import pytest
from contract import CLUSTER_QUEUES_WITHOUT_SCHEDULER, CLUSTER_ROLES

from pyinfra_mastodon import instance, layout
from pyinfra_mastodon.settings import SettingsError, load_inventory_configs

BASE = {
    "mastodon_server_id": "1",
    "mastodon_zone": "example.org",
    "mastodon_admin_email": "admin@example.org",
}
S3 = {"mastodon_s3_bucket": "media", "mastodon_s3_access_key_id": "AKIA1", "mastodon_s3_secret_access_key": "k" * 40}
NO_SCHEDULER = CLUSTER_QUEUES_WITHOUT_SCHEDULER


def cluster(**changes: dict) -> dict[str, dict]:
    """The sandbox cluster's shape: db + redis, two app hosts, an edge proxy; ``changes`` per host."""
    hosts = CLUSTER_ROLES
    out = {}
    for name, data in hosts.items():
        merged = {**BASE, **S3, "ssh_hostname": f"{name}.example.org", **data, **changes.get(name, {})}
        out[name] = {key: value for key, value in merged.items() if value is not None}
    return out


def refusal(hosts: dict[str, dict]) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        load_inventory_configs(hosts.items())
    return info.value


def test_a_single_whole_server_is_an_instance():
    configs = load_inventory_configs([("web1", BASE)])
    (inst,) = instance.instances(configs)
    assert inst.domain == "social1.example.org" and not inst.several_hosts
    assert inst.hosts_with("db") == ["web1"]


def test_two_instances_of_one_server_each():
    configs = load_inventory_configs([("a", BASE), ("b", {**BASE, "mastodon_server_id": "2"})])
    assert [inst.domain for inst in instance.instances(configs)] == ["social1.example.org", "social2.example.org"]


def test_a_valid_cluster_passes_and_each_host_knows_the_others():
    configs = load_inventory_configs(cluster().items())
    shared = {cfg.cluster for cfg in configs.values()}
    assert len(shared) == 1
    (topology,) = shared
    assert topology.jobs_host == "db"
    assert topology.address("db") == topology.address("redis") == "10.213.0.11"
    assert topology.addresses("web") == topology.addresses("streaming") == ("10.213.0.21", "10.213.0.22")
    # who may connect: the application to PostgreSQL and Redis, the proxy to web and streaming
    assert topology.clients("db") == topology.clients("redis") == ("10.213.0.21", "10.213.0.22")
    assert topology.clients("web") == topology.clients("streaming") == ("10.213.0.31",)


def test_a_whole_server_has_no_cluster():
    assert load_inventory_configs([("web1", BASE)])["web1"].cluster is None


def test_a_host_that_serves_the_others_needs_the_firewall():
    error = refusal(cluster(db={"mastodon_firewall": None}))
    assert (error.host, error.key) == ("db", "mastodon_firewall")
    assert "admits only the instance's own hosts" in error.problem


def test_a_read_replica_serves_the_app_hosts_behind_its_firewall():
    error = refusal(cluster(edge={"mastodon_roles": ["proxy", "db_replica"], "mastodon_firewall": None}))
    assert (error.host, error.key) == ("edge", "mastodon_firewall")
    assert "connect to its db_replica" in error.problem


@pytest.mark.parametrize(
    ("changes", "host", "key", "words"),
    [
        ({"db": {"mastodon_roles": ["redis"]}}, "db", "mastodon_roles", "runs db"),
        ({"app1": {"mastodon_roles": ["db", "web", "streaming", "sidekiq"]}}, "app1", "mastodon_roles", "all run db"),
        ({"app1": {"mastodon_roles": ["redis", "web", "streaming", "sidekiq"]}}, "app1", "mastodon_roles", "run redis"),
        (
            {
                "app1": {"mastodon_roles": ["db_replica", "web", "streaming", "sidekiq"]},
                "edge": {"mastodon_roles": ["db_replica", "proxy"], "mastodon_private_address": "10.213.0.31"},
            },
            "edge",
            "mastodon_roles",
            "at most one may",
        ),
        (
            {"edge": {"mastodon_roles": ["web"], "mastodon_private_address": "10.213.0.31"}},
            "db",
            "mastodon_roles",
            "runs proxy",
        ),
        (
            {"app1": {"mastodon_roles": ["web", "sidekiq"]}, "app2": {"mastodon_roles": ["web", "sidekiq"]}},
            "db",
            "mastodon_roles",
            "runs streaming",
        ),
        ({"app2": {"mastodon_sidekiq_queues": None}}, "app2", "mastodon_sidekiq_queues", "all work the scheduler"),
        ({"app1": {"mastodon_sidekiq_queues": NO_SCHEDULER}}, "app1", "mastodon_sidekiq_queues", "periodic jobs"),
        (
            {
                "app1": {"mastodon_sidekiq_queues": ["default", "scheduler"]},
                "app2": {"mastodon_sidekiq_queues": ["push", "pull"]},
            },
            "app1",
            "mastodon_sidekiq_queues",
            "ingress, mailers, fasp",
        ),
        ({"app2": {"mastodon_private_address": None}}, "app2", "mastodon_private_address", "web, streaming"),
        ({"app2": {"mastodon_private_address": "10.213.0.21"}}, "app2", "mastodon_private_address", "host 'app1'"),
        ({"app2": {"mastodon_version": "v4.6.4"}}, "app2", "mastodon_version", "differs from host 'db'"),
    ],
)
def test_each_instance_rule_refuses_naming_the_host_and_the_setting(changes, host, key, words):
    error = refusal(cluster(**changes))
    assert (error.host, error.key) == (host, key), error
    assert words in error.problem, error.problem


def test_media_on_several_app_hosts_need_object_storage():
    hosts = cluster()
    for data in hosts.values():
        for name in S3:
            data.pop(name)
    error = refusal(hosts)
    assert (error.host, error.key) == ("app1", "mastodon_s3_bucket")
    assert "'app1', 'app2' run web or sidekiq" in error.problem


def test_a_secret_that_differs_between_hosts_is_named_never_shown():
    one, two = "a" * 128, "b" * 128
    error = refusal(cluster(db={"mastodon_secret_key_base": one}, app1={"mastodon_secret_key_base": two}))
    assert (error.host, error.key) == ("app1", "mastodon_secret_key_base")
    assert one not in str(error) and two not in str(error)


def test_a_host_alone_with_part_of_the_roles_is_refused():
    error = refusal({"web1": {**BASE, "mastodon_roles": ["web", "streaming", "sidekiq", "proxy"]}})
    assert (error.host, error.key) == ("web1", "mastodon_roles") and "runs db" in error.problem


def test_a_single_server_keeps_the_scheduler_and_every_queue():
    error = refusal({"web1": {**BASE, "mastodon_sidekiq_queues": NO_SCHEDULER}})
    assert error.key == "mastodon_sidekiq_queues" and "periodic jobs" in error.problem
    error = refusal({"web1": {**BASE, "mastodon_sidekiq_queues": ["default", "scheduler"]}})
    assert "push, ingress, mailers, pull, fasp" in error.problem
    everything = [name for name, _ in layout.SIDEKIQ_QUEUES]
    assert load_inventory_configs([("web1", {**BASE, "mastodon_sidekiq_queues": everything})])


def test_one_server_is_one_host_of_one_instance():
    a = {**BASE, "ssh_hostname": "10.0.0.5"}
    b = {**BASE, "mastodon_server_id": "2", "ssh_hostname": "10.0.0.5", "ssh_port": 22}
    error = refusal({"a": a, "b": b})
    assert (error.host, error.key) == ("b", "ssh_hostname") and "also host 'a'" in error.problem
    # the same address on another port is another server (the sandboxes, containers behind one address)
    assert load_inventory_configs([("a", a), ("b", {**b, "ssh_port": 2222})])


def test_sidekiq_settings_on_a_host_without_sidekiq_are_refused():
    error = refusal(cluster(edge={"mastodon_sidekiq_concurrency": 10}))
    assert (error.host, error.key) == ("edge", "mastodon_sidekiq_concurrency")


def test_object_storage_through_extra_env_counts_as_shared_media():
    hosts = cluster()
    for data in hosts.values():
        for name in S3:
            data.pop(name)
        data["mastodon_extra_env"] = {"S3_ENABLED": "true", "S3_BUCKET": "media"}
    assert load_inventory_configs(hosts.items())["app1"].cluster is not None


def test_a_role_several_hosts_may_run_asks_for_at_least_one():
    error = refusal(cluster(edge={"mastodon_roles": ["web"], "mastodon_private_address": "10.213.0.31"}))
    assert "give it to at least one host" in error.problem


def test_one_app_host_of_several_hosts_needs_object_storage_too():
    """Its media would stay on its own disk, which the backup and the media timer (db host) never see."""
    hosts = {name: data for name, data in cluster().items() if name != "app2"}
    for data in hosts.values():
        for name in S3:
            data.pop(name)
    error = refusal(hosts)
    assert (error.host, error.key) == ("app1", "mastodon_s3_bucket")
    assert "reach the db host's backup" in error.problem


def test_extra_env_may_not_set_what_the_cluster_writes():
    extra = {"mastodon_extra_env": {"PREPARED_STATEMENTS": "true", "REPLICA_DB_HOST": "x"}}
    error = refusal(cluster(**{name: extra for name in CLUSTER_ROLES}))
    assert (error.host, error.key) == ("db", "mastodon_extra_env")
    assert "PREPARED_STATEMENTS, REPLICA_DB_HOST" in error.problem


def test_a_whole_server_may_point_extra_env_at_its_own_replica():
    cfg = load_inventory_configs([("web1", {**BASE, "mastodon_extra_env": {"REPLICA_DB_NAME": "mastodon"}})])["web1"]
    assert cfg.extra_env == {"REPLICA_DB_NAME": "mastodon"}


def test_the_pgbouncer_pools_must_fit_in_postgres_max_connections():
    # two app hosts at 40 each: 80, the room max_connections leaves them
    fits = {name: {"mastodon_pgbouncer_pool_size": 40} for name in ("app1", "app2")}
    load_inventory_configs(cluster(**fits).items())
    error = refusal(cluster(app1={"mastodon_pgbouncer_pool_size": 40}, app2={"mastodon_pgbouncer_pool_size": 41}))
    assert (error.host, error.key) == ("app2", "mastodon_pgbouncer_pool_size"), error
    assert "'app1', 'app2' add up to 81 connections" in error.problem, error.problem
    assert f"max_connections {layout.POSTGRES_MAX_CONNECTIONS}" in error.problem, error.problem
    # a host without PgBouncer keeps no pool there
    load_inventory_configs(
        cluster(app1={"mastodon_pgbouncer_pool_size": 80}, app2={"mastodon_pgbouncer": False}).items()
    )
