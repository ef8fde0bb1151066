"""
Stage 2: the configuration files: ``.env.db``, ``.env.production`` (with its secrets),
``docker-compose.yml`` and the nginx server block; server blocks of a former domain go.
"""

from __future__ import annotations

from dataclasses import replace

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files

from .. import desired, layout
from ..operations import secret_env_file
from . import Outcome, create_folder, put_file


def apply(cfg, done: Outcome) -> Outcome:
    """Write the four files; returns the proxy's configuration changes for its reload."""
    for folder in desired.config_folders(cfg):
        create_folder(folder)
    write_env_files(cfg, done.instance_secrets)
    for path in desired.absent_config_files(cfg):
        files.file(name=f"Remove {path} (no restic repository)", path=path, present=False)
    hba = desired.pg_hba_file(cfg)
    if hba is not None:  # the db host of an instance with a read replica
        put_file(hba)
    # Compose compares the env files' contents itself: the services stage needs no link to these.
    put_file(desired.compose_file(cfg))
    ca = desired.local_ca_folder(cfg)
    if ca:
        create_folder(ca, " (local CA key, root only)")
    server_block = desired.nginx_file(cfg)
    if server_block is None:
        # a host of an instance on several hosts that runs no proxy: a server block this deploy wrote
        # there (the host was a whole server, or the proxy) goes, as the converged check expects
        _remove_stale_server_blocks(cfg, done.existing.get("nginx_confs", []), current=None)
        return done
    nginx = put_file(server_block)
    stale = _remove_stale_server_blocks(cfg, done.existing.get("nginx_confs", []), layout.nginx_conf(cfg.domain))
    return replace(done, proxy_config=(nginx, *stale))


def write_env_files(cfg, instance_secrets: dict) -> None:
    """The host's env files (``desired.env_files``), with the instance's secrets on several hosts."""
    envs = {env.path: env for env in desired.env_files(cfg, instance_secrets)}
    # One call site per file, not a loop: the hosts of an instance write different sets of them, and
    # pyinfra tells operations apart by where they are called (its results would name one for another).
    if layout.ENV_DB_FILE in envs:
        _write_env(envs.pop(layout.ENV_DB_FILE))
    if layout.ENV_REDIS_FILE in envs:
        _write_env(envs.pop(layout.ENV_REDIS_FILE))
    if layout.ENV_REPLICA_FILE in envs:
        _write_env(envs.pop(layout.ENV_REPLICA_FILE))
    if layout.ENV_PGBOUNCER_FILE in envs:
        _write_env(envs.pop(layout.ENV_PGBOUNCER_FILE))
    if layout.ENV_PRODUCTION_FILE in envs:
        _write_env(envs.pop(layout.ENV_PRODUCTION_FILE))
    if layout.RESTIC_ENV_FILE in envs:
        _write_env(envs.pop(layout.RESTIC_ENV_FILE))
    assert not envs, f"an env file without its call site: {sorted(envs)}"


def _write_env(env: desired.EnvFile) -> OperationMeta:
    return secret_env_file(
        name=f"Write {env.path}{env.note}",
        path=env.path,
        rendered=env.rendered,
        overrides=env.overrides,
        user=env.user,
        group=env.group,
        mode=env.mode,
    )


def _remove_stale_server_blocks(cfg, managed_confs: list[str], current: str | None) -> list[OperationMeta]:
    """
    Remove the server blocks this deploy wrote for a former domain (an instance started over on a
    new one): two blocks would both claim ``default_server`` and the same upstream, and nginx would
    refuse the configuration.

    + managed_confs: the ``.conf`` files in ``user_conf.d`` that carry this deploy's header
    + current: the host's own server block, None on a host that runs no proxy (every one goes)
    """
    why = "server block of a former domain" if current else "this host runs no proxy"
    return [
        files.file(name=f"Remove {path} ({why})", path=path, present=False) for path in managed_confs if path != current
    ]
