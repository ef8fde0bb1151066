"""
Instances: hosts with one domain are one Mastodon instance, whose roles (``mastodon_roles``) are spread
over them. Each instance is checked as a whole before any change on any host, like the single host's
``settings.ASSERTIONS``: every rule below is data (``RULES``), and a refusal names the hosts and the
setting.

A single server runs every role of ``layout.SINGLE_SERVER_ROLES`` (the default); two such hosts with
one domain are two whole instances fighting over one name, refused as before roles existed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from . import layout
from .render import pools
from .settings import SETTINGS, MastodonConfig, SettingsError


@dataclass(frozen=True)
class Instance:
    """
    The hosts of one domain, in inventory order.

    + domain: the instance's domain (``LOCAL_DOMAIN``)
    + configs: host name -> its ``MastodonConfig``
    """

    domain: str
    configs: Mapping[str, MastodonConfig]

    def hosts_with(self, role: str) -> list[str]:
        """The hosts that run ``role``, in inventory order."""
        return [name for name, cfg in self.configs.items() if role in cfg.roles]

    @property
    def several_hosts(self) -> bool:
        return len(self.configs) > 1


def instances(configs: Mapping[str, MastodonConfig]) -> list[Instance]:
    """The instances of an inventory: its hosts grouped by domain, in the order each domain first appears."""
    by_domain: dict[str, dict[str, MastodonConfig]] = {}
    for name, cfg in configs.items():
        by_domain.setdefault(cfg.domain, {})[name] = cfg
    return [Instance(domain, hosts) for domain, hosts in by_domain.items()]


def _names(hosts: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in hosts)


def _whole_servers_once(inst: Instance) -> tuple[str, str, str] | None:
    whole = [name for name, cfg in inst.configs.items() if set(cfg.roles) >= set(layout.SINGLE_SERVER_ROLES)]
    if len(whole) > 1:
        return whole[1], "mastodon_server_id", f"the domain '{inst.domain}' is also the domain of host '{whole[0]}'"
    return None


def _role_count(role: str, low: int, high: int | None) -> Callable[[Instance], tuple[str, str, str] | None]:
    """Between ``low`` and ``high`` hosts of the instance run ``role`` (``high`` None: no upper bound)."""

    def check(inst: Instance) -> tuple[str, str, str] | None:
        hosts = inst.hosts_with(role)
        first = next(iter(inst.configs))
        where = f"the instance {inst.domain} ({_names(list(inst.configs))})"
        if len(hosts) < low:
            how = "exactly one host" if high == 1 else "at least one host"
            return first, "mastodon_roles", f"no host of {where} runs {role}: give it to {how}"
        if high is not None and len(hosts) > high:
            many = "exactly one" if low == high == 1 else "at most one" if high == 1 else f"at most {high}"
            return hosts[-1], "mastodon_roles", f"{_names(hosts)} all run {role} in {where}: {many} may"
        return None

    return check


def _queues(cfg: MastodonConfig) -> list[str]:
    if cfg.sidekiq_queues is None:
        return [name for name, _ in layout.SIDEKIQ_QUEUES]
    return [entry.partition(",")[0] for entry in cfg.sidekiq_queues]


def _scheduler_once(inst: Instance) -> tuple[str, str, str] | None:
    sidekiqs = inst.hosts_with("sidekiq")
    scheduling = [name for name in sidekiqs if layout.SIDEKIQ_SCHEDULER_QUEUE in _queues(inst.configs[name])]
    queue = layout.SIDEKIQ_SCHEDULER_QUEUE
    if sidekiqs and not scheduling:
        return (
            sidekiqs[0],
            "mastodon_sidekiq_queues",
            f"no Sidekiq of the instance {inst.domain} works the {queue} queue: its periodic jobs would "
            "never run; give it to exactly one host",
        )
    if len(scheduling) > 1:
        return (
            scheduling[-1],
            "mastodon_sidekiq_queues",
            f"{_names(scheduling)} all work the {queue} queue (a host without the setting works every "
            f"queue): exactly one Sidekiq of the instance {inst.domain} may; list the others' queues without it",
        )
    return None


def _every_queue_worked(inst: Instance) -> tuple[str, str, str] | None:
    sidekiqs = inst.hosts_with("sidekiq")
    worked = {queue for name in sidekiqs for queue in _queues(inst.configs[name])}
    missing = [name for name, _ in layout.SIDEKIQ_QUEUES if name not in worked]
    if sidekiqs and missing:
        return (
            sidekiqs[0],
            "mastodon_sidekiq_queues",
            f"no Sidekiq of the instance {inst.domain} works {', '.join(missing)}: those jobs would pile up "
            "unprocessed (mastodon#20710); every upstream queue needs a host",
        )
    return None


def _object_storage(cfg: MastodonConfig) -> bool:
    """Media go to object storage: the typed settings, or upstream's variable in mastodon_extra_env."""
    return bool(cfg.s3_bucket) or str(cfg.extra_env.get("S3_ENABLED")).lower() == "true"


def _sidekiq_settings_need_sidekiq(inst: Instance) -> tuple[str, str, str] | None:
    for name, cfg in inst.configs.items():
        if "sidekiq" in cfg.roles:
            continue
        for key in ("sidekiq_queues", "sidekiq_concurrency"):
            if getattr(cfg, key) is not None:
                return (
                    name,
                    f"mastodon_{key}",
                    "is set on a host that runs no sidekiq (mastodon_roles): it would do nothing",
                )
    return None


def _media_shared(inst: Instance) -> tuple[str, str, str] | None:
    hosts = [name for name, cfg in inst.configs.items() if {"web", "sidekiq"} & set(cfg.roles)]
    # on several hosts even one app host: its media would be on a disk that the backup and the media
    # timer (both on the db host) never see
    if hosts and inst.several_hosts:
        without = [name for name in hosts if not _object_storage(inst.configs[name])]
        if without:
            return (
                without[0],
                "mastodon_s3_bucket",
                f"is required: {_names(hosts)} run web or sidekiq on an instance on several hosts, whose media "
                "must be shared by its hosts and reach the db host's backup (object storage)",
            )
    return None


def _private_addresses(inst: Instance) -> tuple[str, str, str] | None:
    if not inst.several_hosts:
        return None
    seen: dict[str, str] = {}
    for name, cfg in inst.configs.items():
        served = [role for role in cfg.roles if role in layout.SERVED_ROLES]
        if cfg.private_address is None:
            why = (
                f"other hosts of the instance {inst.domain} connect to its {', '.join(served)}"
                if served
                else f"it connects to the other hosts of the instance {inst.domain}, whose firewalls admit "
                "only the instance's addresses"
            )
            return name, "mastodon_private_address", f"is required: {why}"
        if cfg.private_address is not None:
            if cfg.private_address in seen:
                return (
                    name,
                    "mastodon_private_address",
                    f"{cfg.private_address} is also the address of host '{seen[cfg.private_address]}'",
                )
            seen[cfg.private_address] = name
    return None


_INSTANCE_SETTINGS = tuple(setting for setting in SETTINGS if not setting.per_host)


def _settings_agree(inst: Instance) -> tuple[str, str, str] | None:
    first_name, first = next(iter(inst.configs.items()))
    for name, cfg in list(inst.configs.items())[1:]:
        for setting in _INSTANCE_SETTINGS:
            if getattr(cfg, setting.short) != getattr(first, setting.short):
                # never the values: some are secrets
                return (
                    name,
                    setting.name,
                    f"differs from host '{first_name}' of the same instance {inst.domain}: every host of an "
                    "instance takes the instance's value (set it for the group, not per host)",
                )
    return None


def _firewall_where_served(inst: Instance) -> tuple[str, str, str] | None:
    if not inst.several_hosts:
        return None
    for name, cfg in inst.configs.items():
        served = [role for role in cfg.roles if role in layout.SERVED_ROLES]
        if served and not cfg.firewall:
            return (
                name,
                "mastodon_firewall",
                f"must be true: other hosts of the instance {inst.domain} connect to its {', '.join(served)}, "
                "and the firewall is what admits only the instance's own hosts to them",
            )
    return None


# What the deploy writes into .env.production on the hosts of an instance on several hosts (besides
# settings.MANAGED_ENV_KEYS): the Redis password, PgBouncer's and the read replica's settings.
CLUSTER_ENV_KEYS: tuple[str, ...] = (
    "REDIS_PASSWORD",
    "PREPARED_STATEMENTS",
    "REPLICA_DB_HOST",
    "REPLICA_DB_PORT",
    "REPLICA_DB_NAME",
    "REPLICA_DB_USER",
    "REPLICA_DB_PASS",
    "REPLICA_DATABASE_URL",
    "REPLICA_PREPARED_STATEMENTS",
    "REPLICA_DB_TASKS",
)


def _extra_env_leaves_cluster_keys(inst: Instance) -> tuple[str, str, str] | None:
    if not inst.several_hosts:
        return None
    for name, cfg in inst.configs.items():
        taken = sorted(key for key in cfg.extra_env if key in CLUSTER_ENV_KEYS)
        if taken:
            return (
                name,
                "mastodon_extra_env",
                f"sets {', '.join(taken)}, which the deploy writes on the hosts of an instance on several hosts "
                "(Redis's password, PgBouncer's and the read replica's settings): leave them to it",
            )
    return None


def _pools_fit(inst: Instance) -> tuple[str, str, str] | None:
    # every PgBouncer keeps up to its pool size of connections open to the one PostgreSQL; the db
    # host's own application, the one-off jobs, backups and status need the rest
    if not inst.several_hosts:
        return None
    pooled = [(name, cfg.pgbouncer_pool_size) for name, cfg in inst.configs.items() if pools(cfg)]
    room = layout.POSTGRES_MAX_CONNECTIONS - layout.POSTGRES_CONNECTIONS_KEPT
    total = sum(size for _name, size in pooled)
    if total > room:
        return (
            pooled[-1][0],
            "mastodon_pgbouncer_pool_size",
            f"the PgBouncer pools of {_names([name for name, _size in pooled])} add up to {total} connections, "
            f"over the {room} PostgreSQL can give them (max_connections {layout.POSTGRES_MAX_CONNECTIONS}, "
            f"{layout.POSTGRES_CONNECTIONS_KEPT} kept for the superuser, the db host and one-off jobs): "
            "lower the pool size (a transaction pool of 10 serves a busy host)",
        )
    return None


# In order: the first rule that fails stops the run.
RULES: tuple[Callable[[Instance], tuple[str, str, str] | None], ...] = (
    _whole_servers_once,
    _settings_agree,
    _role_count("db", 1, 1),
    _role_count("redis", 1, 1),
    _role_count("db_replica", 0, 1),
    _role_count("web", 1, None),
    _role_count("streaming", 1, None),
    _role_count("sidekiq", 1, None),
    _role_count("proxy", 1, None),
    _sidekiq_settings_need_sidekiq,
    _scheduler_once,
    _every_queue_worked,
    _media_shared,
    _private_addresses,
    _firewall_where_served,
    _extra_env_leaves_cluster_keys,
    _pools_fit,
)


def _machine(name: str, data: Mapping[str, Any]) -> tuple[str, str]:
    """Where pyinfra connects for a host: its ``ssh_hostname`` (or its name) and port."""
    # host names are case-insensitive; an address is itself
    return str(data.get("ssh_hostname") or name).lower().rstrip("."), str(data.get("ssh_port") or 22)


def _one_instance_per_machine(data_of: Mapping[str, Mapping[str, Any]]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for name, data in data_of.items():
        machine = _machine(name, data)
        if machine in seen:
            raise SettingsError(
                name,
                "ssh_hostname",
                f"{machine[0]} port {machine[1]} is also host '{seen[machine]}': one server holds one "
                "host of one instance (give each role to that one host)",
            )
        seen[machine] = name


@dataclass(frozen=True, eq=False)  # one object shared by the instance's hosts
class Cluster:
    """
    Where the other parts of an instance that spreads over several hosts are: what a host of it
    renders into its files (``MastodonConfig.cluster``; None for a whole server).

    + domain: the instance's domain
    + hosts: host name -> its private address, every host of the instance in inventory order
    + roles: host name -> its roles
    + jobs_host: the host that runs the database's one-off jobs (migrations, seed, owner account,
      tootctl of the timers): the db host, next to PostgreSQL, which also keeps the instance's secrets
    """

    domain: str
    hosts: Mapping[str, str]
    roles: Mapping[str, tuple[str, ...]]
    jobs_host: str

    def addresses(self, role: str) -> tuple[str, ...]:
        """The private addresses of the hosts that run ``role``, in inventory order."""
        return tuple(self.hosts[name] for name, roles in self.roles.items() if role in roles)

    def address(self, role: str) -> str:
        """The private address of the one host that runs ``role`` (db, redis)."""
        (found,) = self.addresses(role)
        return found

    def clients(self, role: str) -> tuple[str, ...]:
        """
        The private addresses of the hosts that connect to the service ``role`` on another host: the application
        to PostgreSQL and Redis, the proxy to web and streaming; the host that serves it leaves its
        own traffic inside its compose network.
        """
        users = CLIENT_ROLES[role]
        serving = layout.SERVICES_BY_NAME[role].role
        return tuple(
            self.hosts[name] for name, roles in self.roles.items() if set(users) & set(roles) and serving not in roles
        )


# Who connects to what across hosts (the firewall admits only them).
CLIENT_ROLES: dict[str, tuple[str, ...]] = {
    "db": ("web", "streaming", "sidekiq", "db_replica"),
    "replica": ("web", "streaming", "sidekiq", "db"),  # db: the jobs host's tootctl reads from it too
    "redis": ("web", "streaming", "sidekiq", "db"),  # db: the jobs host
    "web": ("proxy",),
    "streaming": ("proxy",),
}


def _cluster(inst: Instance) -> Cluster:
    return Cluster(
        domain=inst.domain,
        hosts={name: str(cfg.private_address) for name, cfg in inst.configs.items()},
        roles={name: tuple(cfg.roles) for name, cfg in inst.configs.items()},
        jobs_host=inst.hosts_with("db")[0],
    )


def check(configs: Mapping[str, MastodonConfig], data_of: Mapping[str, Mapping[str, Any]]) -> dict[str, MastodonConfig]:
    """
    Check every instance of the inventory as a whole; raises the first ``SettingsError``. Returns the
    configurations, each host of an instance on several hosts with its ``cluster``.

    + configs: host name -> its validated ``MastodonConfig``, in inventory order
    + data_of: host name -> its data (where pyinfra connects: ``ssh_hostname``, ``ssh_port``)
    """
    for inst in instances(configs):
        for rule in RULES:
            problem = rule(inst)
            if problem:
                host, key, text = problem
                raise SettingsError(host, key, text)
    _one_instance_per_machine(data_of)
    out = dict(configs)
    for inst in instances(configs):
        if inst.several_hosts:
            cluster = _cluster(inst)
            for name in inst.configs:
                out[name] = replace(configs[name], cluster=cluster)
    return out
