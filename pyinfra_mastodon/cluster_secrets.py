"""
The secrets of an instance that spreads over several hosts: the same values on every host that needs
them, generated once.

The authoritative copy is the ``.env.production`` of the instance's db host (``Cluster.jobs_host``,
which runs the database's jobs and is backed up with the database): Mastodon's secrets
(``secrets.SECRET_KEYS``) and the passwords of PostgreSQL and Redis (``layout.CLUSTER_SECRET_KEYS``).
While pyinfra prepares, the first host of the instance reads them from there, once per run, into the
control machine's memory (never a file, never printed: the command's output is not shown even with
``-vvv``, and nothing of it goes into an operation's name or arguments' labels); what is missing is
generated there. Every host of the instance then writes the values its roles use, as overrides of
its env files (``desired.env_files``), all in one operation: a host added later, or rebuilt, gets
the values the db host has. (On a first deploy where only the db host's write fails, the next run
finds the app hosts' copies and refuses: copy one of them to the db host, they are the same.)

Refused: a db host without its copy while another host of the instance has one (a rebuilt db host):
the values would be generated anew and the instance's encrypted data, sessions and push keys lost.
"""

from __future__ import annotations

import re

from gevent.lock import RLock
from pyinfra import inventory, state
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
from pyinfra.api.command import StringCommand

from . import layout, settings
from .errors import DeployRefused
from .facts import EnvFileKeys
from .operations import _generate_secrets
from .secrets import SECRET_KEYS

# Generated for the instance on several hosts: 64 hex characters, plain in a URL and an env file.
_PASSWORD_BYTES = 32
_LINE = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")
# Module state of the inventory's module, as deploy._VALIDATED: one read per instance and run.
_CACHE = "_pyinfra_mastodon_instance_secrets"
# pyinfra prepares the hosts in parallel greenlets, and reading the db host waits on the network:
# without this lock a second host would read too, find nothing yet on a first deploy, and generate
# other secrets than the first (each host of the instance with its own: the app hosts then could not
# log in to PostgreSQL and Redis).
_READING = RLock()


def instance_keys() -> tuple[str, ...]:
    """Every secret of an instance on several hosts, in the order of ``.env.production``."""
    return (*settings.SECRET_ENV_KEYS, *layout.CLUSTER_SECRET_KEYS)


def read_command(path: str = layout.ENV_PRODUCTION_FILE) -> str:
    """The lines of ``path`` that hold one of the instance's secrets; nothing when it is missing."""
    keys = "|".join(instance_keys())
    # A file that is there but cannot be read fails (exit 3), never reads as "no secrets": that would
    # generate new ones over the instance's.
    return f"[ -f {path} ] || exit 0; [ -r {path} ] || exit 3; grep -E '^({keys})=' {path}; [ $? -le 1 ]"


def parse(output: list[str] | tuple[str, ...]) -> dict[str, str]:
    """
    The values of ``read_command``'s output: ``KEY=value``, the value unquoted as the deploy
    writes it (``envfile.quote_env_value``); an empty value counts as missing.
    """
    found: dict[str, str] = {}
    for line in output:
        match = _LINE.match(line.rstrip("\n"))
        if not match or match.group(1) not in instance_keys():
            continue
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if value:
            found[match.group(1)] = value
    return found


def complete(found: dict[str, str]) -> dict[str, str]:
    """``found`` with every missing secret generated (in the formats Mastodon's own generators make)."""
    import secrets as _random

    missing = {key for key in settings.SECRET_ENV_KEYS if key not in found}
    out = {**found, **_generate_secrets(missing)} if missing else dict(found)
    for key in layout.CLUSTER_SECRET_KEYS:
        if key not in out:
            out[key] = _random.token_hex(_PASSWORD_BYTES)
    return out


def _read(host_name: str, path: str = layout.ENV_PRODUCTION_FILE) -> list[str]:
    target = inventory.get_host(host_name)
    if not getattr(target, "connected", False):
        # --limit left it out, or it could not be reached: without it, its hosts' secrets are unknown
        raise DeployRefused(
            f"host '{host_name}': the db host of the instance, which keeps its secrets, is not connected in "
            "this run (left out by --limit, or unreachable): deploy an instance on several hosts with its db host"
        )
    # the connector arguments (_sudo, _su_user, --sudo...) as pyinfra resolves them for an operation there
    arguments, _ = pop_global_arguments(state, target, {})
    connector = {key: value for key, value in arguments.items() if key in CONNECTOR_ARGUMENT_KEYS}
    ok, output = target.run_shell_command(
        StringCommand(read_command(path)), print_output=False, print_input=False, **connector
    )
    if not ok:
        # no output in the message: it could hold a value
        raise DeployRefused(
            f"host '{host_name}': could not read the instance's secrets in {path} "
            "(run the deploy as root or with _sudo)"
        )
    return list(output.stdout_lines)


def _other_copies(cfg) -> list[str]:
    """Hosts of the instance, other than the db host, whose .env.production already holds secrets."""
    out = []
    for name in cfg.cluster.hosts:
        if name == cfg.cluster.jobs_host:
            continue
        found = inventory.get_host(name).get_fact(EnvFileKeys, path=layout.ENV_PRODUCTION_FILE)
        if found and any(found["keys"].get(key) for key in settings.SECRET_ENV_KEYS):
            out.append(name)
    return out


def for_instance(cfg) -> dict[str, str]:
    """
    The instance's secrets (env key -> value) for a host of an instance on several hosts, read from
    the db host once per run, the missing ones generated; ``{}`` for a whole server.
    """
    if not cfg.cluster:
        return {}
    with _READING:
        return _for_instance(cfg)


def _for_instance(cfg) -> dict[str, str]:
    module = inventory._get_module()
    cache: dict[str, dict[str, str]] = getattr(module, _CACHE, None) or {}
    setattr(module, _CACHE, cache)
    if cfg.domain not in cache:
        found = parse(_read(cfg.cluster.jobs_host))
        if not any(key in found for key in SECRET_KEYS):
            others = _other_copies(cfg)
            if others:
                raise DeployRefused(
                    f"host '{cfg.cluster.jobs_host}': {layout.ENV_PRODUCTION_FILE}, the authoritative copy of the "
                    f"secrets of the instance {cfg.domain}, is missing or empty, while "
                    f"{', '.join(repr(name) for name in others)} hold theirs: restore it from a backup of "
                    f"'{cfg.cluster.jobs_host}' or copy one of theirs (the same values) before deploying; the "
                    "deploy will not make new ones (the instance's encrypted data would be lost)"
                )
        cache[cfg.domain] = complete(found)
    return cache[cfg.domain]


def from_backup(cfg, backup: str) -> dict[str, str]:
    """
    Mastodon's secrets (``secrets.SECRET_KEYS``) in the ``env.production`` of the db host's backup
    ``backup`` (a folder name of ``layout.BACKUP_DIR``), read as ``for_instance`` reads the instance's:
    a restore gives them to every host, the instance's own passwords staying (a backup of a whole
    server has none; PostgreSQL's roles are not in the dump). Refused when one is missing.
    """
    path = f"{layout.BACKUP_DIR}/{backup}/env.production"
    with _READING:
        module = inventory._get_module()
        cache: dict[tuple[str, str], dict[str, str]] = getattr(module, _CACHE + "_backups", None) or {}
        setattr(module, _CACHE + "_backups", cache)
        if (cfg.domain, backup) not in cache:
            found = parse(_read(cfg.cluster.jobs_host, path))
            missing = [key for key in SECRET_KEYS if key not in found]
            if missing:
                raise DeployRefused(
                    f"host '{cfg.cluster.jobs_host}': {path} holds no {', '.join(missing)}: not a backup this "
                    "deploy took of a Mastodon instance, nothing restored"
                )
            cache[(cfg.domain, backup)] = {key: found[key] for key in SECRET_KEYS}
    return cache[(cfg.domain, backup)]
