"""
Custom operations of the Mastodon deploy.

Each reads the facts it needs inside its generator, so that it yields commands only when the host
differs from what it should be: ``--dry`` predicts the truth, and a converged host gets no command at all.
None of them puts a secret into a command line, an operation argument or a message.
"""

from __future__ import annotations

import shlex
from typing import Iterable, Mapping, Sequence

from pyinfra import host, state
from pyinfra.api import OperationError, StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.api.state import StateStage

from . import commands, layout
from .envfile import EnvFileError, Withheld, plan_env_file, planned_keys
from .facts import (
    BackupInfo,
    CertificateState,
    ComposeServices,
    ComposeUpPlan,
    DatabaseInitialized,
    DatabaseSeeded,
    EnvFileDiff,
    EnvFileKeys,
    ExistingInstance,
    ImageIds,
    OwnerAccount,
    PathsPresent,
    PendingMigrations,
    PostgresReady,
)
from .secrets import generate, generate_vapid_keypair
from .versions import postgres_major

q = shlex.quote

# A public key can only be made together with its private key: regenerate both, or neither.
SECRET_PAIRS = {"VAPID_PUBLIC_KEY": "VAPID_PRIVATE_KEY"}


def _executing() -> bool:
    return state.current_stage == StateStage.Execute


def _changed(metas: Iterable[OperationMeta]) -> bool:
    """Whether any of these operations changed (executed) or will change (while preparing)."""
    for meta in metas:
        if meta.is_complete():
            if meta.did_change():
                return True
        elif meta.will_change:
            return True
    return False


def _generate_secrets(missing: set[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    if "VAPID_PRIVATE_KEY" in missing or "VAPID_PUBLIC_KEY" in missing:
        private, public = generate_vapid_keypair()
        values.update(VAPID_PRIVATE_KEY=private, VAPID_PUBLIC_KEY=public)
    for key in missing:
        if key not in values:
            values[key] = generate(key)
    return {key: values[key] for key in missing}


@operation()
def secret_env_file(
    path: str,
    rendered: str,
    overrides: Mapping[str, str] | None = None,
    user: str = layout.MASTODON_USER,
    group: str = layout.MASTODON_GROUP,
    mode: str = "600",
):
    """
    Write an env file that holds secrets, keeping the secrets already on the host.

    + path: the file on the host
    + rendered: the rendered template; secret lines read ``KEY=@@SECRET@@``
    + overrides: secret values from host data, which replace the host's
    + user: owner of the file
    + group: group of the file
    + mode: mode of the file (written with umask 077, so it is never more open than 0600)

    The content travels on the command's standard input and never appears in a command line, a
    label, ``-vv`` output or a diff; with ``--diff`` the operation says which keys differ instead.
    """
    found = host.get_fact(EnvFileKeys, path=path)
    if found and not found["readable"]:
        # Reading it as empty would generate new secrets over the ones it holds.
        raise OperationError(
            f"{path} exists but could not be read; the deploy stops rather than replace its secrets "
            "(run it as root or with _sudo)"
        )
    try:
        plan = plan_env_file(
            rendered,
            found["keys"] if found else None,
            overrides or {},
            _generate_secrets,
            pairs=SECRET_PAIRS,
        )
    except EnvFileError as error:
        raise OperationError(f"{path}: {error}") from None

    if found is None:
        changed, changed_keys = True, planned_keys(plan.payload)
    else:
        # The host compares; the planned content (secrets included) travels withheld on stdin.
        diff = host.get_fact(EnvFileDiff, path=path, _stdin=Withheld(plan.payload))
        if not diff["exists"] or not diff["readable"]:
            raise OperationError(f"{path} changed or became unreadable while the deploy ran; run it again")
        changed, changed_keys = not diff["same"], diff["changed"]

    if changed:
        # An override equal to the host's value is no change: only report real replacements.
        overridden = [key for key in plan.overridden if key in changed_keys]
        if _executing():
            if plan.generated:
                host.log(f"{path}: new secrets generated for {', '.join(plan.generated)} (not shown)")
            if overridden:
                host.log(f"{path}: {', '.join(overridden)} replaced by the value from host data (not shown)")
        if state.config.DIFF:
            host.log(
                f"{path}: diff withheld because the file holds secrets; lines that differ: "
                f"{', '.join(changed_keys) or 'comments or order only'}",
            )
        if plan.derived and _executing():
            host.log(f"{path}: {', '.join(plan.derived)} rebuilt from its private key on the host")
        command = commands.env_file_write(path, user, group, mode, derive_vapid_public=bool(plan.derived))
        yield StringCommand(command, _stdin=plan.payload)
        return

    fixes = []
    if int(str(found["mode"]), 8) != int(mode, 8):
        fixes.append(f"chmod {q(mode)} {q(path)}")
    if (found["user"], found["group"]) != (user, group):
        fixes.append(f"chown {q(user)}:{q(group)} {q(path)}")
    if not fixes:
        host.noop(f"{path} is up to date")
    yield from fixes


@operation()
def pull_missing_images(images: Mapping[str, str]):
    """
    Pull the images that are not on the host yet, before anything needs them.

    + images: compose service -> image reference

    A mistyped image or an unreachable mirror then stops the run here, before any migration of an
    upgrade, while the old version keeps running. Images already on the host are not pulled again
    (a moving tag such as ``latest`` stays as it is until its reference changes).
    """
    present = host.get_fact(ImageIds, refs=sorted(set(images.values())))
    missing = sorted(service for service, ref in images.items() if not present.get(ref))
    if not missing:
        host.noop("every image is on the host")
        return
    yield commands.pull(missing)


class ComposePlanMemo:
    """
    The plan of a ``compose_up`` that found nothing to do, for a later ``compose_up`` of the same
    run on the same host (see ``reuse_plan``). A stage makes one and hands it to both operations;
    each takes it at most once, in the same order while preparing and while executing.
    """

    def __init__(self) -> None:
        self._plan: dict | None = None

    def keep(self, plan: dict) -> None:
        self._plan = plan

    def take(self) -> dict | None:
        plan, self._plan = self._plan, None
        return plan


@operation()
def nothing_to_do(reason: str):
    """
    Say that the host needs no change (``facts.Converged`` found it as the deploy leaves it).

    + reason: what was checked, for the run's output
    """
    host.noop(reason)
    return
    yield  # an operation is a generator: this one never yields a command


@operation()
def compose_up(
    services: Sequence[str] = (),
    wait_timeout: int | None = 300,
    memo: ComposePlanMemo | None = None,
    reuse_plan: Sequence[OperationMeta] | None = None,
    settle: int = 0,
):
    """
    Start, or recreate, the compose services whose container is missing, stopped or out of date.

    + services: services to converge (default: all in the compose file)
    + wait_timeout: seconds to wait for them to be running and healthy; None: do not wait here
    + memo: where a plan that found nothing to do is kept for the next ``compose_up`` with the same memo
    + reuse_plan: the operations since that earlier ``compose_up``: when none of these changed
      anything, the memo's plan still holds and is used again (a converged run saves one
      ``docker compose --dry-run``, about half a second)
    + settle: seconds to wait after they are healthy, when something was started (a rolling restart:
      the proxy takes the host back before the next one goes down, ``layout.PROXY_FAIL_TIMEOUT``)

    Out of date is what ``docker compose up`` itself would recreate (its ``--dry-run`` says so):
    the service's configuration, its ``env_file`` contents or its image changed. Services that are
    up to date are not named, so a converged host restarts nothing.
    """
    plan = memo.take() if memo is not None else None
    if plan is None or reuse_plan is None or _changed(reuse_plan):
        plan = host.get_fact(ComposeUpPlan, project_dir=layout.BASE_DIR)
    wanted = list(services) or sorted(plan)
    stale = [s for s in wanted if plan.get(s) != "Running"]
    if plan and not stale:
        if memo is not None:
            memo.keep(plan)
        host.noop(f"{', '.join(wanted)}: running and up to date")
        return
    yield commands.up(stale if plan else list(services), wait_timeout)
    if settle:
        yield f"sleep {int(settle)}"
    if not services:
        # Every service is now as the files say: remember it, so the next run needs no dry run.
        yield f"{commands.up_dry_run_remembered()} >/dev/null"


@operation()
def wait_for_postgres(timeout: int = 120):
    """
    Wait, at most ``timeout`` seconds, until PostgreSQL accepts connections.

    + timeout: seconds before the deploy stops with an error saying what to check
    """
    if host.get_fact(PostgresReady, project_dir=layout.BASE_DIR):
        host.noop("PostgreSQL is ready")
        return
    seconds = int(timeout)
    db_dir = layout.SERVICES_BY_NAME["db"].host_data_dir
    message = (
        f"PostgreSQL was not ready after {seconds}s. Check: docker compose -f "
        f"{layout.COMPOSE_FILE} logs db; free disk space; that "
        f"{db_dir} is owned by uid {layout.MASTODON_UID}; "
        "raise mastodon_postgres_wait_timeout for slow disks."
    )
    yield commands.script("wait-for-postgres", seconds, message)


@operation()
def clone_replica(pgdata: str | None, primary: str, port: int, timeout: int = 120):
    """
    Make the read replica a copy of the primary, streaming from it, when its data folder holds no
    database yet (``sh/clone-replica.sh``: pg_basebackup with its replication slot). Every host of an
    instance with a replica calls it after the db host's PostgreSQL is ready; only the replica copies.

    + pgdata: the replica's data directory on this host, or None on the instance's other hosts
    + primary: the private address of the db host
    + port: where its PostgreSQL listens
    + timeout: seconds to wait for the primary to answer
    """
    if pgdata is None:
        host.noop("the read replica is on another host")
        return
    version = f"{pgdata}/PG_VERSION"
    if version in host.get_fact(PathsPresent, paths=[version]):
        host.noop("the read replica holds its copy of the primary")
        return
    yield commands.script("clone-replica", pgdata, primary, port, layout.REPLICA_SLOT, int(timeout))


# A killed deploy does not stop a migration already running on the host: wait this long for it.
ONEOFF_WAIT_SECONDS = 1800


@operation()
def migrate_before_restart(web_image: str, backup: bool = True, min_free_mb: int = 0, jobs_only: bool = False):
    """
    Prepare a new database, or run the pre-deployment migrations of a new version.

    + web_image: the Mastodon image the web service should run
    + backup: dump the database to a root-only file first (an existing database only)
    + min_free_mb: MiB the dump must leave free; the dump is refused, before any migration, otherwise

    A new database gets ``db:prepare`` (schema load and seed). An existing one gets
    ``db:migrate`` with ``SKIP_POST_DEPLOYMENT_MIGRATIONS`` when the web service is about to change
    image, or when migrations are pending; post-deployment migrations wait until the new version
    runs (``migrate_after_restart``). It runs in a one-off container of the new image, while the old
    version keeps serving: if a migration fails, the old version is still running.

    + jobs_only: the host runs the database's jobs but no web (an instance on several hosts): an
      existing database is migrated when ``web_image`` has migrations it lacks
    """
    if not host.get_fact(DatabaseInitialized, project_dir=layout.BASE_DIR):
        yield commands.script("wait-for-oneoff", ONEOFF_WAIT_SECONDS)
        yield commands.run_rails("db:prepare", skip_post_deployment=True)
        return
    if jobs_only:
        if host.get_fact(PendingMigrations, project_dir=layout.BASE_DIR, image=web_image) is False:
            host.noop(f"no pending migrations for {web_image}")
            return
        yield commands.script("wait-for-oneoff", ONEOFF_WAIT_SECONDS)
        if backup:
            yield commands.script("dump-database", layout.BACKUP_DIR, min_free_mb)
        yield commands.run_rails("db:migrate", skip_post_deployment=True)
        return

    web = (host.get_fact(ComposeServices, project=layout.COMPOSE_PROJECT) or {}).get("web")
    wanted_id = host.get_fact(ImageIds, refs=[web_image]).get(web_image)
    new_image = web is None or web["state"] != "running" or wanted_id is None or web["image_id"] != wanted_id
    if not new_image and host.get_fact(PendingMigrations, project_dir=layout.BASE_DIR) is False:
        host.noop("no pending migrations")
        return
    yield commands.script("wait-for-oneoff", ONEOFF_WAIT_SECONDS)
    if backup:
        yield commands.script("dump-database", layout.BACKUP_DIR, min_free_mb)
    yield commands.run_rails("db:migrate", skip_post_deployment=True)


@operation()
def migrate_after_restart(image: str | None = None):
    """
    Run the post-deployment migrations, once the new version runs.

    + image: the image whose migrations count, on a host that runs no web (``PendingMigrations``)
    """
    found = (
        host.get_fact(PendingMigrations, project_dir=layout.BASE_DIR)
        if image is None
        else host.get_fact(PendingMigrations, project_dir=layout.BASE_DIR, image=image)
    )
    if found is False:
        host.noop("no pending migrations")
        return
    yield commands.script("wait-for-oneoff", ONEOFF_WAIT_SECONDS)
    yield commands.run_rails("db:migrate")


@operation()
def seed_database():
    """
    Run ``db:seed`` when the database lacks its seed (roles, instance actor).
    """
    if host.get_fact(DatabaseSeeded, project_dir=layout.BASE_DIR):
        host.noop("database is seeded")
        return
    yield commands.run_rails("db:seed")


@operation()
def owner_account(username: str, email: str, password_file: str = layout.ADMIN_PASSWORD_FILE):
    """
    Create the owner (admin) account once; its password goes to a root-only file on the host.

    + username: the account's username
    + email: the account's email address
    + password_file: where the generated password is written (root, 0600); never printed
    """
    state = host.get_fact(OwnerAccount, project_dir=layout.BASE_DIR, username=username, password_file=password_file)
    if state == "exists":
        host.noop(f"owner account {username} exists")
        return
    # "lost": never signed in and no password file, so nobody can know its password: a new one.
    yield commands.script("create-owner", username, email, password_file, "reset" if state == "lost" else "create")


@operation()
def restart_services(
    services: Sequence[str],
    after: Sequence[OperationMeta],
    wait_timeout: int = 300,
    decided_elsewhere: bool = False,
    settle: int = 0,
):
    """
    Restart services when, and only when, an earlier operation changed something they load at boot,
    then wait until they are running and healthy again.

    + services: compose services to restart
    + after: operations whose change calls for the restart
    + wait_timeout: seconds to wait for them to be healthy after the restart
    + decided_elsewhere: the operations are another host's, known only once they ran: the caller
      gives ``_if`` (evaluated then), and the restart is planned here
    + settle: seconds to wait once they are healthy again (see ``compose_up``)
    """
    if not services or (not _changed(after) and not decided_elsewhere):
        host.noop(f"no restart needed for {', '.join(services) or 'any service'}")
        return
    yield commands.restart(services)
    # `restart` does not wait; an `up` of unchanged services recreates nothing and waits for health.
    yield commands.wait_healthy(services, wait_timeout)
    if settle:
        yield f"sleep {int(settle)}"


@operation()
def reload_nginx(after: Sequence[OperationMeta], proxy: str = "nginx"):
    """
    Make the nginx-certbot container re-read its server blocks (and request missing certificates).

    + after: operations whose change calls for the reload
    + proxy: the compose service of the proxy
    """
    if not _changed(after):
        host.noop("nginx configuration unchanged")
        return
    nginx = (host.get_fact(ComposeServices, project=layout.COMPOSE_PROJECT) or {}).get(proxy)
    if _executing() and (nginx is None or nginx["state"] != "running"):
        host.noop("nginx is not running; it reads its configuration when it starts")
        return
    # SIGHUP is the image's documented way to re-scan user_conf.d and obtain new certificates.
    yield commands.signal(proxy, "HUP")


@operation()
def adopt_upstream_data():
    """
    Make the data of an instance laid out by upstream's compose file usable here: the PostgreSQL data
    directory moved into ``postgres14/pgdata``, and the data folders (``postgres14``, ``redis``) owned
    by uid 991, as this deploy runs db and redis (upstream's images run them as 70 and 999, and
    ``dump.rdb`` is 0600: redis as 991 could not open it and would exit). Refused while db or redis run.
    """
    existing = host.get_fact(ExistingInstance, project_dir=layout.BASE_DIR, nginx_conf_dir=layout.NGINX_CONF_DIR)
    if not existing["upstream_pgdata"] and not existing["foreign_owned"]:
        host.noop("the data folders are already in this deploy's layout and owned by the mastodon user")
        return
    found = host.get_fact(ComposeServices, project=layout.COMPOSE_PROJECT) or {}
    running = [name for name in layout.service_names(layout.DATA) if found.get(name, {}).get("state") == "running"]
    if running:
        raise OperationError(
            f"{' and '.join(running)} still run: stop the old containers first (docker compose stop), "
            "so that no server writes the files while they move"
        )
    db_dir = layout.SERVICES_BY_NAME["db"].host_data_dir
    owners = list(existing["foreign_owned"])
    steps = []
    if existing["upstream_pgdata"]:
        steps.append(
            (f"{db_dir}: the PostgreSQL data moves into {db_dir}/pgdata", commands.script("adopt-pgdata", db_dir))
        )
        if db_dir not in owners:
            owners.append(db_dir)
    for path in owners:
        uid, gid = layout.MASTODON_UID, layout.MASTODON_GID
        steps.append((f"{path}: every file goes to uid {uid}", f"chown -R {uid}:{gid} {q(path)}"))
    # Said before the first command: --dry stops reading an operation at its first command.
    for message, _ in steps:
        host.log(message)
    yield from (command for _, command in steps)


@operation()
def ensure_certificate(domain: str, acme_server: str | None, timeout: int = 180, proxy: str = "nginx"):
    """
    Make sure port 443 serves the domain's certificate, from the CA the settings name. The image tries
    again only after 8 days, on SIGHUP or on a restart, and keeps a valid certificate (``--keep``):
    so a missing certificate gets a SIGHUP and a bounded wait on every run until it is there, and one
    from another CA (staging, the local CA) is removed first.

    + domain: the instance's domain
    + acme_server: the ACME directory certificates must come from; None for the local CA
    + timeout: seconds to wait for the certificate before the run fails
    + proxy: the compose service of the proxy
    """
    found = host.get_fact(CertificateState, domain=domain)
    other_ca = found["cert"] and found["server"] != acme_server
    if found["cert"] and found["served"] and not other_ca:
        host.noop(f"443 serves the certificate of {domain}")
        return
    steps = []
    if other_ca:
        was = found["server"] or "the local CA"
        host.log(f"{domain}: the certificate comes from {was}, not {acme_server or 'the local CA'}: replaced")
        le = layout.LETSENCRYPT_DIR
        lineage = (f"{le}/live/{domain}", f"{le}/archive/{domain}", f"{le}/renewal/{domain}.conf")
        steps.append("rm -rf " + " ".join(q(path) for path in lineage))
    seconds = int(timeout)
    check = (
        f"no certificate for {domain} is served on 443 after {seconds}s. Check: that {domain} resolves in public "
        f"DNS to this host, that port 80 is reachable from the internet (the CA validates over HTTP), the CA's "
        f"rate limits, and `docker compose -f {layout.COMPOSE_FILE} logs {proxy}`. The next run tries again."
    )
    steps.append(commands.signal(proxy, "HUP"))
    steps.append(commands.script("wait-for-certificate", domain, seconds, check))
    yield from steps


@operation()
def systemd_reload(after: Sequence[OperationMeta]):
    """
    ``systemctl daemon-reload`` when, and only when, an earlier operation changed a unit file.

    + after: the operations that write or remove unit files
    """
    if not _changed(after):
        host.noop("no unit file changed")
        return
    yield "systemctl daemon-reload"


@operation()
def remove_timers(units: Sequence[str]):
    """
    Stop, disable and remove the units of maintenance timers that are turned off, if they are there.

    + units: ``mastodon-<name>`` of each, without the suffix
    """
    paths = [f"{layout.SYSTEMD_DIR}/{unit}.{kind}" for unit in units for kind in ("timer", "service")]
    present = host.get_fact(PathsPresent, paths=paths) if paths else []
    if not present:
        host.noop("no timer to remove")
        return
    for unit in units:
        if any(path.startswith(f"{layout.SYSTEMD_DIR}/{unit}.") for path in present):
            yield f"systemctl disable --now {q(unit)}.timer 2>/dev/null || true"
    yield "rm -f " + " ".join(q(path) for path in present)


@operation()
def remove_firewall():
    """
    Take the firewall of ``mastodon_firewall`` away again, if it is there: stop and disable its unit
    (which deletes its nftables table, and only that one), remove its unit and ruleset files.
    """
    unit = f"{layout.SYSTEMD_DIR}/{layout.FIREWALL_UNIT}.service"
    present = host.get_fact(PathsPresent, paths=[unit, layout.FIREWALL_RULES])
    if not present:
        host.noop("no firewall to remove")
        return
    yield f"systemctl disable --now {q(layout.FIREWALL_UNIT)}.service 2>/dev/null || true"
    yield f"{q(layout.NFT)} delete table {layout.FIREWALL_TABLE} 2>/dev/null || true"
    yield "rm -f " + " ".join(q(path) for path in present)
    yield "systemctl daemon-reload"


def backup_refusal(info: dict | None, backup: str, version: str) -> str | None:
    """
    Why the backup ``info`` (``BackupInfo``) cannot be restored into a deploy of Mastodon ``version``,
    or None when it can.
    """
    if info is None:
        return (
            f"no backup '{backup}' in {layout.BACKUP_DIR} (a folder with a manifest): take one with "
            f"pyinfra_mastodon.tasks.backup, or copy one there from another host (README, Backups and restore)"
        )
    if info.get("mastodon_version") != version:
        return (
            f"backup {info['name']} was taken on Mastodon {info.get('mastodon_version') or 'unknown'}, this "
            f"deploy runs {version} (mastodon_version): deploy that version, restore, then upgrade"
        )
    return None


@operation()
def restore_backup(
    backup: str,
    version: str,
    wait_timeout: int = 300,
    keep_env: bool = False,
    data_services: Sequence[str] | None = None,
):
    """
    Put a backup of ``layout.BACKUP_DIR`` back: the env files and the owner's password file, a new
    database from its dump, its media over ``public/system``; every service stops first and starts
    again, healthy, last (``sh/restore.sh``, which checks the manifest's checksums before any change).

    + backup: the backup's name, or ``latest`` for the newest
    + version: the Mastodon version the deploy runs; a backup of another version is refused
    + wait_timeout: seconds to wait for every service to be healthy again
    + keep_env: leave the env files as they are (the db host of an instance on several hosts: the
      deploy wrote them already, with the backup's Mastodon secrets and the instance's passwords)
    + data_services: the data services on this host, started alone while the database is restored
      (default: db and redis, a whole server's)

    What it would replace is said before the command (``--dry`` shows it); nothing of a secret is.
    """
    info = host.get_fact(BackupInfo, backup=backup)
    refusal = backup_refusal(info, backup, version)
    if refusal:
        raise OperationError(refusal)
    assert info is not None
    mib = info["files"].get("database.dump", 0) // 1048576
    env = ", ".join(
        f".{f} ({'identical' if same else 'differs: replaced'})" for f, same in sorted(info["same"].items())
    )
    if keep_env:
        env = "kept as the deploy writes them, with the backup's Mastodon secrets"
    host.log(
        f"restore {info['name']} (taken {info.get('created', '?')}, Mastodon {version}): every service stops; "
        f"the database '{layout.DB_NAME}' is replaced by the backup's dump ({mib} MiB); env files: {env}; "
        f"the media of the backup are written over {layout.BASE_DIR}/{layout.MEDIA['data_dir']}; "
        "then every service starts again"
    )
    yield commands.restore(info["name"], wait_timeout, keep_env=keep_env, data_services=data_services)


def postgres_major_change(db_host, image: str, rollback: bool = False) -> tuple[int, int] | None:
    """
    The PostgreSQL majors ``(running, target)`` of moving ``db_host``'s db service to ``image``; None
    when it runs that major already. Raises ``OperationError`` when the change cannot be made: the
    majors unknown, the wrong direction, the db not running for an upgrade, the new major's folder
    holding a database already (upgrade) or none (rollback). Every check reads ``db_host``'s facts.
    """
    db = (db_host.get_fact(ComposeServices, project=layout.COMPOSE_PROJECT) or {}).get("db")
    running = postgres_major(db["image"]) if db and db.get("image") else None
    target = postgres_major(image)
    task = "postgres_rollback" if rollback else "postgres_upgrade"
    if running is None or target is None:
        raise OperationError(
            f"cannot tell the PostgreSQL majors (db runs {db['image'] if db else 'no container'}, wanted {image}): "
            f"{task} needs the db container and image tags that name a major (postgres:17-alpine)"
        )
    if running == target:
        return None
    if rollback != (target < running):
        other = "postgres_upgrade" if rollback else "postgres_rollback"
        raise OperationError(f"{image} is PostgreSQL {target}, db runs {running}: that is {other}, not {task}")
    if not rollback and db["state"] != "running":
        raise OperationError(f"db is {db['state']}: the upgrade dumps the running database; start it first")
    new = f"{layout.BASE_DIR}/{layout.db_data_dir(target)}"
    present = db_host.get_fact(PathsPresent, paths=[f"{new}/pgdata/PG_VERSION"])
    if not rollback and present:
        raise OperationError(f"{new} holds a PostgreSQL database already: remove it to upgrade again")
    if rollback and not present:
        raise OperationError(f"{new} holds no PostgreSQL database to go back to")
    return running, target


@operation()
def change_postgres_major(
    image: str,
    compose_file: str,
    rollback: bool = False,
    wait_timeout: int = 300,
    apps: Sequence[str] | None = None,
):
    """
    Move the db service to the PostgreSQL major of ``image``, each major in a data folder of its own
    (``layout.db_data_dir``): an upgrade dumps the database, restores it into the new major's empty
    folder and compares the row count of every table before the application starts again; a rollback
    goes back to the folder an upgrade left, as it was then (``sh/postgres-major.sh``).

    + image: the db image to run, of a newer major (upgrade) or an older one (rollback)
    + compose_file: the compose file for that image (rendered), put in place at the switch
    + rollback: go back to an older major's folder instead of upgrading
    + wait_timeout: seconds to wait for the services to be healthy
    + apps: the application's services on this host, stopped while the database moves (default:
      web, streaming and sidekiq, a whole server's)
    """
    majors = postgres_major_change(host, image, rollback)
    if majors is None:
        host.noop(f"db runs PostgreSQL {postgres_major(image)} already")
        return
    running, target = majors
    old, new = (f"{layout.BASE_DIR}/{layout.db_data_dir(major)}" for major in (running, target))
    if rollback:
        host.log(f"PostgreSQL {running} -> {target}: back to {new} as the upgrade left it; {old} is kept")
    else:
        host.log(
            f"PostgreSQL {running} -> {target}: the application stops; the database is dumped to "
            f"{layout.BACKUP_DIR}; {image} starts in the new folder {new}, the dump is restored and every "
            f"table's row count compared; {old} is kept for postgres_rollback"
        )
    mode = "rollback" if rollback else "upgrade"
    owner = f"{layout.MASTODON_UID}:{layout.MASTODON_GID}"
    command = commands.script(
        "postgres-major",
        mode,
        old,
        new,
        layout.COMPOSE_FILE,
        layout.BACKUP_DIR,
        wait_timeout,
        owner,
        *(layout.service_names(layout.APP) if apps is None else apps),
    )
    yield StringCommand(command, _stdin=compose_file)
