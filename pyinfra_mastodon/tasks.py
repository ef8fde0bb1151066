"""
Operator tasks, each one command for one host (``--limit HOST``) or the whole fleet::

    pyinfra inventories/prod.py pyinfra_mastodon.tasks.status
    pyinfra inventories/prod.py pyinfra_mastodon.tasks.restart --limit social42.example.org

``status`` and ``db_status`` only read; the others act (``-y`` skips the confirmation prompt).
"""

from __future__ import annotations

from dataclasses import replace

from pyinfra import host, inventory
from pyinfra.api import OperationError, deploy
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS
from pyinfra.api.command import StringCommand
from pyinfra.operations import python, server

from . import cluster_secrets, commands, desired, layout, preflight
from .deploy import run_stages, select, validated_config
from .errors import DeployRefused
from .facts import (
    BackupInfo,
    CertificateState,
    ComposeServices,
    FreeSpace,
    PathsPresent,
    PostgresReady,
    Replication,
    TimerRuns,
)
from .operations import (
    adopt_upstream_data,
    backup_refusal,
    change_postgres_major,
    nothing_to_do,
    postgres_major_change,
    restore_backup,
)
from .render import has_replica, host_services, render
from .render import replica_data_dir as render_replica_data_dir
from .settings import DEFAULTS
from .stages import (
    configuration,
    create_folder,
    database,
    put_file,
    rolling,
    runs_jobs,
    services,
    system,
    unless_jobs_host_failed,
)


def _locked_config():
    """This host's validated settings, with the host's lock taken (every task that acts takes it)."""
    cfg = validated_config()
    preflight.take_lock(cfg)
    return cfg


def _elsewhere(cfg, task: str) -> bool:
    """
    True (and an operation that says so) on a host of an instance on several hosts other than its db
    host: the tasks that work on the database (its dump, the owner account, tootctl) run only where
    the database's one-off jobs run, once per instance.
    """
    if cfg.cluster is None or cfg.host == cfg.cluster.jobs_host:
        return False
    nothing_to_do(
        name=f"{task}: runs on {cfg.cluster.jobs_host}, the db host",
        reason=f"{task} runs on '{cfg.cluster.jobs_host}', the db host of {cfg.domain}, where its jobs run",
    )
    return True


@deploy("Start Mastodon", data_defaults=DEFAULTS)
def start() -> None:
    """Start every service (those already running are left alone) and wait until healthy."""
    _locked_config()
    server.shell(
        name="Start all services",
        commands=[commands.compose("up --detach --wait --remove-orphans")],
    )


@deploy("Stop Mastodon", data_defaults=DEFAULTS)
def stop() -> None:
    """Stop every service; containers and data stay, ``start`` brings them back."""
    _locked_config()
    server.shell(name="Stop all services", commands=[commands.compose("stop")])


@deploy("Restart Mastodon", data_defaults=DEFAULTS)
def restart() -> None:
    """Restart every service; on an instance on several hosts, one host after the other."""
    _locked_config()
    server.shell(
        name="Restart all services",
        # each host healthy again before the next one restarts
        commands=[
            commands.compose("restart"),
            *([commands.compose("up --detach --wait"), f"sleep {layout.PROXY_FAIL_TIMEOUT}"] if rolling() else []),
        ],
        _serial=rolling(),
    )


@deploy("Migrate Mastodon", data_defaults=DEFAULTS)
def migrate() -> None:
    """
    Run pending migrations in the deploy's order: pre-deployment, restart on the configured
    version, post-deployment. Does nothing when none are pending.
    """
    stages = select(database.migrate_before, services.start_all, database.migrate_after, services.restart_after)
    run_stages(_locked_config(), stages)


@deploy("Create the Mastodon owner account", data_defaults=DEFAULTS)
def create_admin() -> None:
    """
    Create the owner account (``mastodon_admin_username``/``mastodon_admin_email``) if it is missing;
    its password goes to the root-only file /root/mastodon-admin-password, never to the terminal.
    """
    cfg = _locked_config()
    if not _elsewhere(cfg, "create_admin"):
        run_stages(cfg, select(database.owner))


@deploy("Adopt an instance laid out by upstream's compose file", data_defaults=DEFAULTS)
def adopt_upstream() -> None:
    """
    Make the data of an instance set up with upstream's compose file (its folders copied to
    /opt/mastodon, its containers stopped) usable by the deploy: the mastodon user, PostgreSQL's data
    moved into ``postgres14/pgdata``, and ``postgres14`` and ``redis`` owned by uid 991. ``--dry``
    says what would move and change owner. Run the deploy afterwards.
    """
    preflight.check_prerequisites()
    cfg = _locked_config()
    run_stages(cfg, select(system.apply))
    adopt_upstream_data(name="Move upstream's data into this deploy's layout and owner")


@deploy("Mastodon database status", data_defaults=DEFAULTS)
def db_status() -> None:
    """Say whether PostgreSQL accepts connections (``pg_isready`` over TCP in the db service)."""
    cfg = validated_config()
    if "db" not in cfg.roles:
        host.log(f"PostgreSQL runs on '{cfg.cluster.jobs_host}'" if cfg.cluster else "PostgreSQL is not on this host")
        return
    ready = host.get_fact(PostgresReady, project_dir=layout.BASE_DIR)
    host.log(f"PostgreSQL {'accepts connections' if ready else 'is NOT ready'}")


@deploy("Mastodon service status", data_defaults=DEFAULTS)
def status() -> None:
    """
    One line per compose service (state, health, image), then the certificate's expiry, the free
    space of the instance's and Docker's filesystems, and the last and next run of each timer.
    """
    cfg = validated_config()
    found = host.get_fact(ComposeServices, project=layout.COMPOSE_PROJECT) or {}
    # a host of an instance on several hosts: the services of its roles, and the proxy's certificate there
    extra = tuple(name for name in host_services(cfg) if name in {s.name for s in layout.CLUSTER_SERVICES})
    for service in (*layout.service_names(roles=cfg.roles), *extra):
        info = found.get(service)
        if info is None:
            host.log(f"{service:<10} missing")
            continue
        health = f" ({info['health']})" if info.get("health") else ""
        host.log(f"{service:<10} {info['state']}{health}  {info['image']}  since {info['started_at']}")
    if has_replica(cfg) and {"db", "db_replica"} & set(cfg.roles):
        _replication_status("replica" if "db_replica" in cfg.roles else "db", cfg.replica_max_slot_wal_mb)
    if "proxy" in cfg.roles:
        cert = host.get_fact(CertificateState, domain=cfg.domain)
        served = "served on 443" if cert["served"] else "NOT served on 443"
        expiry = f"expires {cert['expires']}" if cert["cert"] else "none in /etc/letsencrypt/live"
        host.log(f"{'certificate':<10} {cfg.domain}: {expiry}, {served}")
    for path, mib in host.get_fact(FreeSpace, paths=(layout.BASE_DIR,)).items():
        host.log(f"{'disk':<10} {mib} MiB free for {path.removeprefix('docker:')}")
    runs = host.get_fact(TimerRuns, units=[t.unit for t in layout.TIMERS])
    for timer in layout.TIMERS:
        run = runs.get(timer.unit)
        if run is None:
            host.log(f"{'timer':<10} {timer.name}: off")
        else:
            host.log(f"{'timer':<10} {timer.name}: last run {run['last']} ({run['result']}), next {run['next']}")


# status warns when a slot holds more than this share of max_slot_wal_keep_size
_SLOT_WARN_SHARE = 0.8


def _replication_status(service: str, max_slot_wal_mb: int) -> None:
    """
    The read replica's replication: seen from the primary on the db host, from itself on its host. A
    slot near ``max_slot_wal_keep_size``, or past it, is a warning: the replica will need a new copy.
    """
    rows = host.get_fact(Replication, service=service)
    if not rows:
        host.log(f"{'replication':<10} {service} does not answer: no replication state")
    for row in rows:
        if row["kind"] == "standby":
            what = (
                f"standby {row['name']}: {row['state']}, replay lag {row['lag']} s, {row['bytes']} bytes not replayed"
            )
        elif row["kind"] == "slot":
            state, _, wal = row["state"].partition(" ")
            what = f"slot {row['name']}: {state}, WAL {wal or 'unknown'}, holds {row['bytes']} bytes of WAL"
            held = int(row["bytes"]) if row["bytes"].isdigit() else 0
            if wal in ("unreserved", "lost") or held > _SLOT_WARN_SHARE * max_slot_wal_mb * 1048576:
                what += (
                    f"; WARNING: near or past mastodon_replica_max_slot_wal_mb ({max_slot_wal_mb} MiB): "
                    "once the primary drops that WAL the replica cannot catch up and needs a new copy "
                    "(README: read replica)"
                )
        else:
            what = (
                f"this replica is a {row['name']} ({row['state']}), replay {row['lag']} s and "
                f"{row['bytes']} bytes behind what it received"
            )
        host.log(f"{'replication':<10} {what}")
    if service == "db" and not any(row["kind"] == "standby" for row in rows):
        host.log(f"{'replication':<10} NO standby streams from this primary")


def _run_shown(command: str, what: str) -> None:
    # python.call runs this at execution time: the output is shown, line by line, on the host's prefix.
    # with the operation's connector arguments (_sudo...), as pyinfra runs an operation's commands
    arguments = {k: v for k, v in (host.current_op_global_arguments or {}).items() if k in CONNECTOR_ARGUMENT_KEYS}
    status, output = host.run_shell_command(StringCommand(command), print_output=False, **arguments)
    for line in output.stdout_lines + output.stderr_lines:
        host.log(line)
    if not status:
        raise RuntimeError(f"{what} failed on {host.name}")


def _run_tootctl(words: list[str]) -> None:
    _run_shown(commands.tootctl(words), f"tootctl {' '.join(words)}")


@deploy("Run a tootctl command", data_defaults=DEFAULTS)
def tootctl() -> None:
    """
    Run the tootctl command of ``mastodon_tootctl`` (``--data mastodon_tootctl='accounts approve alice'``)
    in a one-off web container on each host, and show its output. Its words are checked before any
    host is touched: only letters, digits and ``@._:/=,+-``, each passed as one argument, never to a shell.
    """
    cfg = _locked_config()
    if _elsewhere(cfg, "tootctl"):
        return
    if not cfg.tootctl:
        raise DeployRefused(
            f"host '{host.name}': setting 'mastodon_tootctl' is empty: say which command, "
            "e.g. --data mastodon_tootctl='media usage'"
        )
    python.call(name=f"tootctl {cfg.tootctl}", function=_run_tootctl, words=cfg.tootctl.split())


@deploy("Back up Mastodon", data_defaults=DEFAULTS)
def backup() -> None:
    """
    Take a backup into a folder of its own in /var/backups/mastodon (root only): the database
    (``pg_dump -Fc``), ``.env.production`` and ``.env.db``, the owner's password file, the media
    without the cache, and a manifest with checksums; then remove the backups beyond the retention
    (``mastodon_backup_keep_daily``/``_weekly``). Everything happens on the host: no secret comes back.
    Refused, before anything is written, when the filesystem lacks the database's size plus the
    media's plus ``mastodon_min_free_mb``.
    """
    cfg = _locked_config()
    if _elsewhere(cfg, "backup"):
        return
    python.call(
        name=f"Back up the database, the env files and the media into {layout.BACKUP_DIR}",
        function=_run_shown,
        command=commands.job_script("backup", cfg.min_free_mb, cfg.backup_keep_daily, cfg.backup_keep_weekly),
        what="the backup",
    )


@deploy("Restore Mastodon from a backup", data_defaults=DEFAULTS)
def restore() -> None:
    """
    Restore the backup ``mastodon_restore_from`` (``latest``, the default, or a folder name of
    /var/backups/mastodon): env files, database, media; services stopped, then started and healthy.
    ``--dry`` says what it would replace. On a new server: deploy, copy the backup's folder there, restore.
    On an instance on several hosts, one run over all of them restores the db host's backup
    (``_restore_instance``).
    """
    cfg = _locked_config()
    if cfg.cluster is not None:
        _restore_instance(cfg)
        return
    restore_backup(
        name=f"Restore the backup {cfg.restore_from}",
        backup=cfg.restore_from,
        version=cfg.version,
        wait_timeout=cfg.healthy_timeout,
    )


def _app_services(cfg, *more: str) -> tuple[str, ...]:
    """The application's services on this host (with PgBouncer), and ``more`` of those it runs."""
    wanted = (*layout.service_names(layout.APP), "pgbouncer", *more)
    return tuple(service for service in host_services(cfg) if service in wanted)


def _stop_for_database(cfg, what: str, *more: str) -> None:
    """On every host of the instance but the db host: its application stops, before the db host's change."""
    here = _app_services(cfg, *more)
    if not runs_jobs(cfg) and here:
        server.shell(name=f"Stop {', '.join(here)} for {what}", commands=[commands.compose("stop", *here)])


def _start_after_database(cfg, what: str) -> None:
    """On every host of the instance but the db host, once the db host's change succeeded: everything up."""
    if not runs_jobs(cfg) and _app_services(cfg, "replica"):
        server.shell(
            name=f"Start the application again after {what}",
            commands=[commands.compose(f"up --detach --wait --wait-timeout {int(cfg.healthy_timeout)}")],
            **unless_jobs_host_failed(cfg),
        )


def _restore_instance(cfg) -> None:
    """
    ``restore`` of an instance on several hosts: the backup is the db host's; it is checked there by
    every host before any change, the other hosts' application stops, every host's env files get the
    backup's Mastodon secrets (the instance keeps its own passwords: PostgreSQL's roles are not in the
    dump), the db host restores its database (streamed to the read replica like any write), then the
    application starts again. A backup of a whole server restores into an instance on several hosts.
    """
    jobs_host = cfg.cluster.jobs_host
    info = inventory.get_host(jobs_host).get_fact(BackupInfo, backup=cfg.restore_from)
    refusal = backup_refusal(info, cfg.restore_from, cfg.version)
    if refusal:
        raise DeployRefused(f"host '{jobs_host}': {refusal}; nothing restored on any host of {cfg.domain}")
    assert info is not None
    backup_secrets = cluster_secrets.from_backup(cfg, info["name"])
    what = f"the restore of {info['name']}"
    _stop_for_database(cfg, what)
    configuration.write_env_files(cfg, {**cluster_secrets.for_instance(cfg), **backup_secrets})
    if runs_jobs(cfg):
        restore_backup(
            name=f"Restore the backup {info['name']} on the db host",
            backup=info["name"],
            version=cfg.version,
            wait_timeout=cfg.healthy_timeout,
            keep_env=True,
            data_services=tuple(name for name in layout.service_names(layout.DATA) if name in host_services(cfg)),
        )
    _start_after_database(cfg, what)


@deploy("Upgrade PostgreSQL to a new major", data_defaults=DEFAULTS)
def postgres_upgrade() -> None:
    """
    Move the database to the PostgreSQL major of ``mastodon_postgres_upgrade_image`` (default
    ``postgres:17-alpine``): the application stops, the database is dumped, the new major starts in a
    folder of its own (``postgres17/pgdata``), the dump is restored and every table's row count
    compared, then everything starts again, healthy. The old folder stays for ``postgres_rollback``.
    Afterwards set ``mastodon_postgres_image`` to that image. ``--dry`` says what it would do. On an
    instance on several hosts, one run over all of them (``_change_major_on_instance``).
    """
    cfg = _locked_config()
    target = replace(cfg, postgres_image=cfg.postgres_upgrade_image)
    if cfg.cluster is not None:
        _change_major_on_instance(cfg, target, rollback=False)
        return
    change_postgres_major(
        name=f"Upgrade PostgreSQL to {cfg.postgres_upgrade_image}",
        image=cfg.postgres_upgrade_image,
        compose_file=render("docker-compose.yml.j2", target),
        wait_timeout=cfg.healthy_timeout,
    )


@deploy("Roll PostgreSQL back to an older major", data_defaults=DEFAULTS)
def postgres_rollback() -> None:
    """
    Go back to the major of ``mastodon_postgres_image`` (put the old image back in the settings
    first), in the folder ``postgres_upgrade`` left: the database as it was before the upgrade.
    """
    cfg = _locked_config()
    if cfg.cluster is not None:
        _change_major_on_instance(cfg, cfg, rollback=True)
        return
    change_postgres_major(
        name=f"Roll PostgreSQL back to {cfg.images['db']}",
        image=cfg.images["db"],
        compose_file=render("docker-compose.yml.j2", cfg),
        rollback=True,
        wait_timeout=cfg.healthy_timeout,
    )


def _change_major_on_instance(cfg, target, rollback: bool) -> None:
    """
    ``postgres_upgrade`` or ``postgres_rollback`` of an instance on several hosts. Checked on the db host
    by every host before any change; then the other hosts' application and the read replica stop, the
    db host moves its PostgreSQL (``change_postgres_major``), the replica host takes the new major's
    compose file and a copy of the new primary in that major's folder of its own (after a rollback: the
    old folder, which streams again from the old primary's slot), and the application starts again.
    """
    jobs_host = cfg.cluster.jobs_host
    image = target.images["db"]
    try:
        majors = postgres_major_change(inventory.get_host(jobs_host), image, rollback)
    except OperationError as error:
        raise DeployRefused(f"host '{jobs_host}': {error}; nothing changed on any host of {cfg.domain}") from None
    task = "postgres_rollback" if rollback else "postgres_upgrade"
    if majors is None:
        nothing_to_do(name=f"{task}: db runs {image}", reason=f"the db host '{jobs_host}' runs {image}'s major already")
        return
    replica_here = "replica" in host_services(cfg)
    pgdata = f"{layout.BASE_DIR}/{render_replica_data_dir(target)}/pgdata"
    if replica_here and not rollback and host.get_fact(PathsPresent, paths=[f"{pgdata}/PG_VERSION"]):
        raise DeployRefused(
            f"host '{cfg.host}': {pgdata} holds a copy of a database already (an earlier upgrade, rolled back?): "
            "remove that folder to upgrade again; nothing changed"
        )
    what = f"PostgreSQL {majors[0]} -> {majors[1]}"
    _stop_for_database(cfg, what, "replica")
    if runs_jobs(cfg):
        change_postgres_major(
            name=f"{'Roll PostgreSQL back' if rollback else 'Upgrade PostgreSQL'} to {image} on the db host",
            image=image,
            compose_file=render("docker-compose.yml.j2", target),
            rollback=rollback,
            wait_timeout=cfg.healthy_timeout,
            # of its roles: a web defined only for the database's one-off jobs runs nothing to stop
            apps=tuple(
                name for name in layout.service_names(layout.APP) if name in layout.service_names(roles=cfg.roles)
            ),
        )
    if replica_here:
        _replica_in_major(cfg, target, pgdata)
    _start_after_database(cfg, what)


def _replica_in_major(cfg, target, pgdata: str) -> None:
    """The read replica on its host in the db major of ``target``: its folder, compose file and copy."""
    guard = unless_jobs_host_failed(cfg)
    for folder in desired.system_folders(target):
        if folder.path == pgdata.rsplit("/", 1)[0]:
            create_folder(folder)
    put_file(desired.compose_file(target), **guard)
    services.copy_primary(cfg, pgdata, **guard)
