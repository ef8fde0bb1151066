"""
Custom operations of the Mastodon deploy.

Each reads the facts it needs inside its generator, so that it yields commands only when the host
differs from what it should be: ``--dry`` predicts the truth, and a converged host gets no command at all.
None of them puts a secret into a command line, an operation argument or a message.
"""

from __future__ import annotations

import shlex
from secrets import token_hex
from typing import Iterable, Mapping, Sequence

from pyinfra import host, state
from pyinfra.api import OperationError, StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.api.state import StateStage

from . import settings
from .envfile import EnvFileError, plan_env_file, write_command
from .facts import (
    ComposeServices,
    ComposeUpPlan,
    DatabaseInitialized,
    DatabaseSeeded,
    EnvFileDigests,
    ImageIds,
    OwnerAccountExists,
    PendingMigrations,
    PostgresReady,
    compose_command,
)
from .secrets import generate, generate_vapid_keypair

q = shlex.quote

# The key of the env files' line digests for this run: drawn at random, sent to the host on stdin,
# never printed, so digests shown by -vvv reveal nothing (see facts.EnvFileDigests).
DIGEST_KEY = token_hex(32)

# A public key can only be made together with its private key: regenerate both, or neither.
SECRET_PAIRS = {"VAPID_PUBLIC_KEY": "VAPID_PRIVATE_KEY"}


def compose(*args: str) -> str:
    """A ``docker compose`` command line for the Mastodon project."""
    return " ".join((compose_command(), *args))


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
    user: str = settings.MASTODON_USER,
    group: str = settings.MASTODON_USER,
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
    digests = host.get_fact(EnvFileDigests, path=path, _stdin=DIGEST_KEY + "\n")
    if digests and not digests["readable"]:
        # Reading it as empty would generate new secrets over the ones it holds.
        raise OperationError(
            f"{path} exists but could not be read; the deploy stops rather than replace its secrets "
            "(run it as root or with _sudo)"
        )
    host_lines = digests["lines"] if digests else None
    try:
        plan = plan_env_file(
            rendered,
            host_lines,
            overrides or {},
            _generate_secrets,
            pairs=SECRET_PAIRS,
            digest_key=DIGEST_KEY,
        )
    except EnvFileError as error:
        raise OperationError(f"{path}: {error}") from None

    if plan.changed:
        if _executing():
            if plan.generated:
                host.log(f"{path}: new secrets generated for {', '.join(plan.generated)} (not shown)")
            if plan.overridden:
                host.log(
                    f"{path}: {', '.join(plan.overridden)} replaced by the value from host data (not shown)",
                )
        if state.config.DIFF:
            host.log(
                f"{path}: diff withheld because the file holds secrets; lines that differ: "
                f"{', '.join(plan.changed_keys) or 'comments or order only'}",
            )
        if plan.derived and _executing():
            host.log(f"{path}: {', '.join(plan.derived)} rebuilt from its private key on the host")
        command = write_command(path, user, group, mode, derive_vapid_public=bool(plan.derived))
        yield StringCommand(command, _stdin=plan.payload)
        return

    fixes = []
    if int(str(digests["mode"]), 8) != int(mode, 8):
        fixes.append(f"chmod {q(mode)} {q(path)}")
    if (digests["user"], digests["group"]) != (user, group):
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
    yield compose("pull --quiet", *(q(s) for s in missing))


# Per host, the plan of the last compose_up that found nothing to do (see ``reuse_plan``).
_UNCHANGED_PLANS: dict[str, dict] = {}


@operation()
def compose_up(
    services: Sequence[str] = (),
    wait_timeout: int | None = 300,
    reuse_plan: Sequence[OperationMeta] | None = None,
):
    """
    Start, or recreate, the compose services whose container is missing, stopped or out of date.

    + services: services to converge (default: all in the compose file)
    + wait_timeout: seconds to wait for them to be running and healthy; None: do not wait here
    + reuse_plan: the earlier ``compose_up`` and the operations after it: when that one found
      nothing to do and none of these changed anything, its plan still holds and is used again
      (a converged run saves one ``docker compose --dry-run``, about half a second)

    Out of date is what ``docker compose up`` itself would recreate (its ``--dry-run`` says so):
    the service's configuration, its ``env_file`` contents or its image changed. Services that are
    up to date are not named, so a converged host restarts nothing.
    """
    plan = _UNCHANGED_PLANS.pop(host.name, None)
    if plan is None or reuse_plan is None or _changed(reuse_plan):
        plan = host.get_fact(ComposeUpPlan, project_dir=settings.BASE_DIR)
    wanted = list(services) or sorted(plan)
    stale = [s for s in wanted if plan.get(s) != "Running"]
    if plan and not stale:
        _UNCHANGED_PLANS[host.name] = plan
        host.noop(f"{', '.join(wanted)}: running and up to date")
        return
    wait = () if wait_timeout is None else ("--wait", f"--wait-timeout {int(wait_timeout)}")
    yield compose(
        "up --detach", *wait, "--remove-orphans", *(q(s) for s in (stale if plan else services))
    )


@operation()
def wait_for_postgres(timeout: int = 120):
    """
    Wait, at most ``timeout`` seconds, until PostgreSQL accepts connections.

    + timeout: seconds before the deploy stops with an error saying what to check
    """
    if host.get_fact(PostgresReady, project_dir=settings.BASE_DIR):
        host.noop("PostgreSQL is ready")
        return
    seconds = int(timeout)
    check = compose("exec -T db pg_isready -U postgres -q")
    message = (
        f"PostgreSQL was not ready after {seconds}s. Check: docker compose -f "
        f"{settings.BASE_DIR}/docker-compose.yml logs db; free disk space; that "
        f"{settings.BASE_DIR}/postgres14 is owned by uid {settings.MASTODON_UID}; "
        "raise mastodon_postgres_wait_timeout for slow disks."
    )
    script = (
        f"end=$(( $(date +%s) + {seconds} )); "
        f"until {check} >/dev/null 2>&1; do "
        f'if [ "$(date +%s)" -ge "$end" ]; then echo {q(message)} >&2; exit 1; fi; sleep 1; done'
    )
    yield f"sh -c {q(script)}"


def _dump_command() -> str:
    backup_dir = settings.BACKUP_DIR
    script = (
        "set -e; umask 077; "
        f"mkdir -p {q(backup_dir)}; chmod 700 {q(backup_dir)}; "
        f'f={q(backup_dir)}/pre-migration-$(date -u +%Y%m%dT%H%M%SZ).sql; '
        f'{compose("exec -T db pg_dumpall -U postgres")} > "$f.tmp"; '
        'mv "$f.tmp" "$f"; echo "database dump written to $f"'
    )
    return f"sh -c {q(script)}"


RAILS = "bundle exec rails"


def _wait_for_interrupted_runs(timeout: int = 1800) -> str:
    """
    Wait (bounded) for one-off containers (``compose run``) an interrupted deploy left behind: a
    killed deploy does not stop a ``db:migrate`` already running on the host, and a second one
    started meanwhile would fail with ``ConcurrentMigrationError``.
    """
    label = f"label=com.docker.compose.project={settings.COMPOSE_PROJECT}"
    script = (
        f"ids=$(docker ps -q --filter {label} --filter label=com.docker.compose.oneoff=True); "
        'if [ -n "$ids" ]; then '
        "echo 'waiting for a one-off container left running by an interrupted deploy'; "
        f"timeout {int(timeout)} docker wait $ids >/dev/null || {{ echo 'a one-off container "
        f"(docker ps --filter {label}) is still running after {int(timeout)}s' >&2; exit 1; }}; fi"
    )
    return f"sh -c {q(script)}"


@operation()
def migrate_before_restart(web_image: str, backup: bool = True):
    """
    Prepare a new database, or run the pre-deployment migrations of a new version.

    + web_image: the Mastodon image the web service should run
    + backup: dump the database to a root-only file first (an existing database only)

    A new database gets ``db:prepare`` (schema load and seed). An existing one gets
    ``db:migrate`` with ``SKIP_POST_DEPLOYMENT_MIGRATIONS`` when the web service is about to change
    image, or when migrations are pending; post-deployment migrations wait until the new version
    runs (``migrate_after_restart``). It runs in a one-off container of the new image, while the old
    version keeps serving: if a migration fails, the old version is still running.
    """
    if not host.get_fact(DatabaseInitialized, project_dir=settings.BASE_DIR):
        yield _wait_for_interrupted_runs()
        yield compose(f"run --rm -T -e SKIP_POST_DEPLOYMENT_MIGRATIONS=true web {RAILS} db:prepare")
        return

    web = (host.get_fact(ComposeServices, project=settings.COMPOSE_PROJECT) or {}).get("web")
    wanted_id = host.get_fact(ImageIds, refs=[web_image]).get(web_image)
    new_image = (
        web is None or web["state"] != "running" or wanted_id is None or web["image_id"] != wanted_id
    )
    if not new_image and host.get_fact(PendingMigrations, project_dir=settings.BASE_DIR) is False:
        host.noop("no pending migrations")
        return
    yield _wait_for_interrupted_runs()
    if backup:
        yield _dump_command()
    yield compose(f"run --rm -T -e SKIP_POST_DEPLOYMENT_MIGRATIONS=true web {RAILS} db:migrate")


@operation()
def migrate_after_restart():
    """
    Run the post-deployment migrations, once the new version runs.
    """
    if host.get_fact(PendingMigrations, project_dir=settings.BASE_DIR) is False:
        host.noop("no pending migrations")
        return
    yield _wait_for_interrupted_runs()
    yield compose(f"run --rm -T web {RAILS} db:migrate")


@operation()
def seed_database():
    """
    Run ``db:seed`` when the database lacks its seed (roles, instance actor).
    """
    if host.get_fact(DatabaseSeeded, project_dir=settings.BASE_DIR):
        host.noop("database is seeded")
        return
    yield compose(f"run --rm -T web {RAILS} db:seed")


@operation()
def owner_account(username: str, email: str, password_file: str = settings.ADMIN_PASSWORD_FILE):
    """
    Create the owner (admin) account once; its password goes to a root-only file on the host.

    + username: the account's username
    + email: the account's email address
    + password_file: where the generated password is written (root, 0600); never printed
    """
    if host.get_fact(OwnerAccountExists, project_dir=settings.BASE_DIR, username=username):
        host.noop(f"owner account {username} exists")
        return
    create = compose(
        f"run --rm -T web bin/tootctl accounts create {q(username)} --email {q(email)} "
        "--confirmed --role Owner --approve"
    )
    tmp = f"{password_file}.tmp"
    # tootctl prints the password on stdout: capture it into the file, never into the deploy's output.
    script = (
        "set -e; umask 077; "
        f"out=$({create}); "
        "pw=$(printf '%s\\n' \"$out\" | sed -n 's/^New password: //p'); "
        'if [ -z "$pw" ]; then echo "tootctl did not report a password" >&2; exit 1; fi; '
        f"printf '%s\\n' \"$pw\" > {q(tmp)}; chmod 600 {q(tmp)}; mv -f {q(tmp)} {q(password_file)}; "
        f"echo {q(f'owner account {username} created; password in {password_file}')}"
    )
    yield f"sh -c {q(script)}"


@operation()
def restart_services(services: Sequence[str], after: Sequence[OperationMeta], wait_timeout: int = 300):
    """
    Restart services when, and only when, an earlier operation changed something they load at boot,
    then wait until they are running and healthy again.

    + services: compose services to restart
    + after: operations whose change calls for the restart
    + wait_timeout: seconds to wait for them to be healthy after the restart
    """
    if not _changed(after):
        host.noop(f"no restart needed for {', '.join(services)}")
        return
    names = " ".join(q(s) for s in services)
    yield compose("restart", names)
    # `restart` does not wait; an `up` of unchanged services recreates nothing and waits for health.
    yield compose("up --detach --wait", f"--wait-timeout {int(wait_timeout)}", names)


@operation()
def reload_nginx(after: Sequence[OperationMeta]):
    """
    Make the nginx-certbot container re-read its server blocks (and request missing certificates).

    + after: operations whose change calls for the reload
    """
    if not _changed(after):
        host.noop("nginx configuration unchanged")
        return
    nginx = (host.get_fact(ComposeServices, project=settings.COMPOSE_PROJECT) or {}).get("nginx")
    if _executing() and (nginx is None or nginx["state"] != "running"):
        host.noop("nginx is not running; it reads its configuration when it starts")
        return
    # SIGHUP is the image's documented way to re-scan user_conf.d and obtain new certificates.
    yield compose("kill -s HUP nginx")
