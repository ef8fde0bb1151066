"""
Every command the deploy sends to a host: Compose, Docker, psql, and the shell scripts in ``sh/``.

Facts, operations and tasks build their commands here and nowhere else (pyinfra's
``operations/util/docker.py`` is the model). Multi-line shell lives in ``sh/*.sh`` (checked by ``sh -n``
and shellcheck in the unit tests) and runs as ``sh -c SCRIPT NAME ARGS...``: values travel as
positional parameters, never spliced into the script. Each script starts with a short prelude that
defines ``compose`` (Compose for the instance), ``running SERVICE`` and the fixed names it needs.
No command built here ever holds a secret: secrets travel on standard input.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from . import layout

q = shlex.quote

SCRIPTS_DIR = Path(__file__).resolve().parent / "sh"
PROBES_DIR = Path(__file__).resolve().parent / "probes"

RAILS = "bundle exec rails"
HAVE_DOCKER = "command -v docker >/dev/null 2>&1"


def installed_packages(packages: tuple[str, ...] | list[str]) -> str:
    """Read-only: one ``NAME STATUS`` line per package dpkg knows (``ii``: installed); exits 0."""
    names = " ".join(q(name) for name in packages)
    return f"dpkg-query -W -f '${{Package}} ${{db:Status-Abbrev}}\\n' {names} 2>/dev/null; true"


def sshd_ports() -> str:
    """Read-only: the local address:port of each socket sshd listens on (``ss``); exits 0."""
    return "ss -Htlnp 2>/dev/null | awk '/\"sshd\"/ { print $4 }'; true"


# Compose's own labels on every container it makes.
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"


def compose_command(project_dir: str = layout.BASE_DIR, project: str = layout.COMPOSE_PROJECT) -> str:
    """
    ``docker compose`` for our project, usable from any working directory.

    + project_dir: the directory holding ``docker-compose.yml`` (and the env files it references)
    + project: the compose project name
    """
    return " ".join(
        (
            "docker compose",
            "--project-directory",
            q(project_dir),
            "-f",
            q(f"{project_dir.rstrip('/')}/docker-compose.yml"),
            "-p",
            q(project),
        )
    )


def compose(*args: str, project_dir: str = layout.BASE_DIR) -> str:
    """A ``docker compose`` command line for the Mastodon project; ``args`` are shell words."""
    return " ".join((compose_command(project_dir), *args))


def project_filter(project: str = layout.COMPOSE_PROJECT) -> str:
    """``docker ps`` filter for the project's containers."""
    return f"--filter {q(f'label={PROJECT_LABEL}={project}')}"


def running_container_test(service: str, project: str = layout.COMPOSE_PROJECT) -> str:
    """
    A sh test that succeeds when the service has a running (non one-off) container. Uses plain
    ``docker ps`` so it works even when the compose file or its env files are missing.

    + service: the compose service name; + project: the compose project name
    """
    filters = " ".join(
        f"--filter {q(f)}"
        for f in (
            f"label={PROJECT_LABEL}={project}",
            f"label={SERVICE_LABEL}={service}",
            f"label={ONEOFF_LABEL}=False",
            "status=running",
        )
    )
    return f'[ -n "$(docker ps -q {filters} 2>/dev/null)" ]'


def inspect_containers(template: str, project: str = layout.COMPOSE_PROJECT) -> str:
    """``docker inspect`` of every container of the project (one-offs too), with a Go template."""
    return (
        f"ids=$(docker ps -aq {project_filter(project)} 2>/dev/null); "
        f'if [ -n "$ids" ]; then docker inspect --format {q(template)} $ids 2>/dev/null; fi'
    )


def image_ids(refs: list[str] | tuple[str, ...]) -> str:
    """``image REF ID`` per reference (an empty id when the image is not on the host)."""
    return " ".join(
        f"echo image {q(ref)} \"$(docker image inspect --format '{{{{.Id}}}}' {q(ref)} 2>/dev/null | head -n 1)\";"
        for ref in refs
    )


def yes_no(test: str) -> str:
    """A command that prints ``yes`` or ``no`` for a sh test, and always exits 0."""
    return f"if {test}; then echo yes; else echo no; fi"


# Compose operations


def up(services: list[str] | tuple[str, ...] = (), wait_timeout: int | None = None) -> str:
    """``up --detach [--wait] --remove-orphans [SERVICES]``."""
    wait = () if wait_timeout is None else ("--wait", f"--wait-timeout {int(wait_timeout)}")
    return compose("up --detach", *wait, "--remove-orphans", *(q(s) for s in services))


def up_dry_run(project_dir: str = layout.BASE_DIR) -> str:
    """What ``up`` would do, one ``DRY-RUN MODE`` line per action (Compose 2.19+)."""
    return f"{compose_command(project_dir)} --dry-run up --detach --no-color 2>&1 | grep 'DRY-RUN MODE'"


def up_dry_run_remembered(project_dir: str = layout.BASE_DIR) -> str:
    """``up_dry_run``; when it finds nothing to do, the host remembers what it compared (``sh/compose-memo.sh``)."""
    memo = script("compose-memo", project_dir, layout.COMPOSE_MEMO, project_dir=project_dir)
    return f"{up_dry_run(project_dir)} | {memo}"


def pull(services: list[str] | tuple[str, ...]) -> str:
    return compose("pull --quiet", *(q(s) for s in services))


def restart(services: list[str] | tuple[str, ...]) -> str:
    return compose("restart", *(q(s) for s in services))


def wait_healthy(services: list[str] | tuple[str, ...], wait_timeout: int) -> str:
    """An ``up`` of unchanged services: recreates nothing, waits until they are healthy."""
    return compose("up --detach --wait", f"--wait-timeout {int(wait_timeout)}", *(q(s) for s in services))


def signal(service: str, signal_name: str) -> str:
    return compose(f"kill -s {q(signal_name)}", q(service))


def run_rails(task: str, skip_post_deployment: bool = False) -> str:
    """``rails TASK`` in a one-off container of the web service (the image about to run)."""
    env = "-e SKIP_POST_DEPLOYMENT_MIGRATIONS=true " if skip_post_deployment else ""
    return compose(f"run --rm -T {env}web {RAILS} {task}")


def psql(sql: str, project_dir: str = layout.BASE_DIR, service: str = "db") -> str:
    """One SQL statement in the running db (or ``service``) container; bare values out (``-tA``), errors are errors."""
    # -X: ignore any psqlrc; ON_ERROR_STOP so a bad query is an error, not output.
    return (
        f"{compose_command(project_dir)} exec -T {service} "
        f"psql -X -v ON_ERROR_STOP=1 -U {layout.DB_USER} -d {layout.DB_NAME} -tAc {q(sql)}"
    )


def sql_true(sql: str, project_dir: str = layout.BASE_DIR) -> str:
    """``yes`` only when db runs and the query answers ``t``; psql errors (no table yet...) mean ``no``."""
    test = f'{HAVE_DOCKER} && {running_container_test("db")} && [ "$({psql(sql, project_dir)} 2>/dev/null)" = t ]'
    return yes_no(test)


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pg_isready(project_dir: str = layout.BASE_DIR) -> str:
    return f"{compose_command(project_dir)} exec -T db pg_isready -q -h {layout.DB_READY_HOST} -U {layout.DB_USER}"


# Scripts in sh/


def _prelude(project_dir: str) -> str:
    return "\n".join(
        (
            # One command, so that the directive (each script uses some of these) covers them all.
            "# shellcheck disable=SC2034",
            f"MASTODON_PROJECT={q(layout.COMPOSE_PROJECT)} MASTODON_DB_USER={q(layout.DB_USER)} "
            f"MASTODON_DB_READY_HOST={q(layout.DB_READY_HOST)} MASTODON_UID={layout.MASTODON_UID} "
            f"MASTODON_DB_NAME={q(layout.DB_NAME)} MASTODON_LOCK_FILE={q(layout.LOCK_FILE)} "
            f"MASTODON_DB_DATA={q(layout.SERVICES_BY_NAME['db'].data_dir or '')}",
            f'compose() {{ {compose_command(project_dir)} "$@"; }}',
            # running_container_test with the service from $1 (double quotes, so that it expands)
            'running() { [ -n "$(docker ps -q '
            f'{project_filter()} --filter "label={SERVICE_LABEL}=$1" '
            f'--filter label={ONEOFF_LABEL}=False --filter status=running 2>/dev/null)" ]; }}',
            "",
        )
    )


# Scripts that call others as shell functions (``sh/NAME.sh`` becomes ``NAME()``, ``-`` as ``_``, run
# in a subshell so that its ``exit`` ends only the function): one command does the work of several.
SCRIPT_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "compose-memo": ("compose-key",),
    "converged": ("existing-instance", "free-space", "pending-migrations", "compose-key", "certificate-state"),
}


@cache
def script_text(name: str) -> str:
    """The body of ``sh/NAME.sh`` as sent: comment lines and blank lines left out."""
    lines = (SCRIPTS_DIR / f"{name}.sh").read_text().splitlines()
    return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#")) + "\n"


def script_source(name: str, project_dir: str = layout.BASE_DIR, annotated: bool = False) -> str:
    """
    What ``sh -c`` runs for ``sh/NAME.sh``: the prelude, the functions it calls (``SCRIPT_FUNCTIONS``),
    then the script.

    + annotated: the files as written, comments included (for shellcheck, whose directives they hold)
    """

    def text(script: str) -> str:
        return (SCRIPTS_DIR / f"{script}.sh").read_text() if annotated else script_text(script)

    functions = "".join(f"{used.replace('-', '_')}() (\n{text(used)})\n" for used in SCRIPT_FUNCTIONS.get(name, ()))
    return _prelude(project_dir) + functions + text(name)


def script(name: str, *args: object, project_dir: str = layout.BASE_DIR) -> str:
    """
    ``sh -c`` of ``sh/NAME.sh`` with ``args`` as its positional parameters.

    + name: the script's file name without ``.sh``
    + args: its arguments (quoted here); never a secret
    + project_dir: where ``compose`` in the script finds the compose file
    """
    words = " ".join(q(str(arg)) for arg in args)
    return f"sh -c {q(script_source(name, project_dir))} {q(f'mastodon-{name}')} {words}".rstrip()


def env_file_write(path: str, user: str, group: str, mode: str = "600", derive_vapid_public: bool = False) -> str:
    """
    Write the content given on stdin to the env file ``path`` atomically (``sh/env-file-write.sh``).
    Holds no secret: the content travels on standard input.

    + derive_vapid_public: the content has a ``@@DERIVE@@VAPID_PUBLIC_KEY`` line to rebuild
    """
    return script("env-file-write", path, user, group, mode, "derive" if derive_vapid_public else "keep")


def fact_script(name: str, *args: object, project_dir: str = layout.BASE_DIR) -> str:
    """``script`` for a fact: exits 0 whatever the script does (pyinfra fails a host on a fact's error)."""
    return f"{script(name, *args, project_dir=project_dir)}; true"


def python_probe(name: str, *args: object) -> str:
    """
    ``probes/NAME.py`` run by the host's ``python3`` with ``args``; prints ``unknown no-python3``
    where there is none. Always exits 0 (for facts).
    """
    source = (PROBES_DIR / f"{name}.py").read_text()
    words = " ".join(q(str(arg)) for arg in args)
    return (
        f"if command -v python3 >/dev/null 2>&1; then python3 -c {q(source)} {words}; "
        "else echo unknown no-python3; fi; true"
    )


def tootctl(words: list[str] | tuple[str, ...]) -> str:
    """``tootctl WORDS`` in a one-off container of the web service; each word quoted."""
    return compose("run --rm -T web bin/tootctl", *(q(w) for w in words))


def installed_script(name: str) -> str:
    """``sh/NAME.sh`` as a file of its own on the host: a shebang, the prelude, the script."""
    return "#!/bin/sh\n" + script_source(name)


# The fixed leading arguments of each script a timer runs (``layout.Timer.script``), from the layout.
JOB_SCRIPT_ARGS: dict[str, tuple[str, ...]] = {
    "backup": (
        layout.BACKUP_DIR,
        layout.BASE_DIR,
        layout.MEDIA["data_dir"],
        layout.ADMIN_PASSWORD_FILE,
        layout.RESTIC_ENV_FILE,
    ),
}


def job_script_path(name: str) -> str:
    """Where ``sh/NAME.sh`` is installed for a timer: next to ``layout.JOB_RUNNER``."""
    return f"{layout.JOB_RUNNER.rsplit('/', 1)[0]}/{name}"


def job_script(name: str, *args: object, installed: bool = False) -> str:
    """
    ``sh/NAME.sh`` with its fixed arguments (``JOB_SCRIPT_ARGS``), then ``args``: run by ``sh -c``, or,
    ``installed``, as the file a timer runs.
    """
    words = (*JOB_SCRIPT_ARGS[name], *args)
    if installed:
        return " ".join((job_script_path(name), *(q(str(word)) for word in words)))
    return script(name, *words)


def restore(
    name: str,
    wait_timeout: int,
    keep_env: bool = False,
    data_services: Sequence[str] | None = None,
) -> str:
    """
    ``sh/restore.sh``: the backup ``name`` (or ``latest``) back into the instance; ``keep_env`` leaves
    the env files as they are; ``data_services`` are started alone for the database's restore.
    """
    owner = f"{layout.MASTODON_USER}:{layout.MASTODON_GROUP}"
    env = "keep" if keep_env else "restore"
    return script(
        "restore",
        layout.BACKUP_DIR,
        name,
        layout.BASE_DIR,
        layout.ADMIN_PASSWORD_FILE,
        owner,
        wait_timeout,
        env,
        *(layout.service_names(layout.DATA) if data_services is None else data_services),
    )
