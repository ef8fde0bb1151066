"""
Custom facts of the Mastodon deploy.

Rules every fact here follows:

+ read-only: facts run in ``--dry`` too;
+ the command is POSIX sh and exits 0 in every case (pyinfra fails the host on a non-zero fact), an
  absent thing gives empty output and so ``default()``;
+ the output never contains a secret (``-vvv`` prints fact output): values stay on the host, only
  keys, digests, ids and yes/no tokens come back.

Docker is probed with ``command -v`` inside the command rather than ``requires_command``, which
logs a deprecation warning when a fact runs at execution time.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from pyinfra.api import FactBase

from .settings import (
    BASE_DIR,
    COMPOSE_PROJECT,
    DB_NAME,
    DB_USER,
    MANAGED_HEADER,
    MASTODON_GID,
    MASTODON_UID,
    NGINX_CONF_DIR,
)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IMAGE_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

_HAVE_DOCKER = "command -v docker >/dev/null 2>&1"


def compose_command(project_dir: str = BASE_DIR, project: str = COMPOSE_PROJECT) -> str:
    """
    ``docker compose`` for our project, usable from any working directory.

    + project_dir: the directory holding ``docker-compose.yml`` (and the env files it references)
    + project: the compose project name
    """
    return " ".join(
        (
            "docker compose",
            "--project-directory",
            shlex.quote(project_dir),
            "-f",
            shlex.quote(f"{project_dir.rstrip('/')}/docker-compose.yml"),
            "-p",
            shlex.quote(project),
        )
    )


def running_container_test(service: str, project: str = COMPOSE_PROJECT) -> str:
    """
    A sh test that succeeds when the service has a running (non one-off) container. Uses plain
    ``docker ps`` so it works even when the compose file or its env files are missing.

    + service: the compose service name; + project: the compose project name
    """
    filters = " ".join(
        f"--filter {shlex.quote(f)}"
        for f in (
            f"label=com.docker.compose.project={project}",
            f"label=com.docker.compose.service={service}",
            "label=com.docker.compose.oneoff=False",
            "status=running",
        )
    )
    return f'[ -n "$(docker ps -q {filters} 2>/dev/null)" ]'


def _yes_no(test: str) -> str:
    # Always one token and exit 0, whatever the test does.
    return f"if {test}; then echo yes; else echo no; fi"


def _first_line(output: list[str]) -> str:
    return output[0].strip() if output else ""


class DockerEngine(FactBase[str | None]):
    """
    The Docker server (daemon) version, or ``None`` if docker is missing or the daemon is down.
    """

    def command(self) -> str:
        return f"if {_HAVE_DOCKER}; then docker info --format '{{{{.ServerVersion}}}}' 2>/dev/null; fi; true"

    def process(self, output: list[str]) -> str | None:
        version = _first_line(output)
        # With the daemon down, docker info may print a partial template: keep only real versions.
        return version if re.fullmatch(r"[0-9][0-9A-Za-z.+~-]*", version) else None


class ComposeCommand(FactBase[dict | None]):
    """
    How to run Compose on the host: ``{"command": "docker compose", "version": "2.26.1"}`` for the v2
    plugin (preferred), ``{"command": "docker-compose", "version": "1.29.2"}`` when only the standalone
    binary exists, ``None`` when neither.
    """

    def command(self) -> str:
        return (
            "if docker compose version --short >/dev/null 2>&1; then "
            'echo "plugin $(docker compose version --short 2>/dev/null)"; '
            "elif command -v docker-compose >/dev/null 2>&1; then "
            'echo "standalone $(docker-compose version --short 2>/dev/null)"; '
            "fi; true"
        )

    def process(self, output: list[str]) -> dict | None:
        kind, _, version = _first_line(output).partition(" ")
        command = {"plugin": "docker compose", "standalone": "docker-compose"}.get(kind)
        if command is None:
            return None
        return {"command": command, "version": version.strip().lstrip("v")}


class ExistingInstance(FactBase[dict]):
    """
    What an earlier install left on the host, for the checks made before any change::

        {
            "local_domain": "social1.example.org" or None,  # LOCAL_DOMAIN in .env.production
            "nginx_confs": ["/data/nginx/user_conf.d/x.conf", ...],  # server blocks this deploy wrote
            "upstream_pgdata": False,  # PostgreSQL data directly in postgres14/ (upstream's layout)
        }

    Only the ``LOCAL_DOMAIN`` line of ``.env.production`` is read (sed prints nothing else), so no
    secret comes back.

    + project_dir: the Mastodon directory (``/opt/mastodon``)
    + nginx_conf_dir: the nginx-certbot image's ``user_conf.d`` directory on the host
    """

    @staticmethod
    def default() -> dict:
        return {"local_domain": None, "nginx_confs": [], "upstream_pgdata": False}

    def command(self, project_dir: str = BASE_DIR, nginx_conf_dir: str = NGINX_CONF_DIR) -> str:
        env = shlex.quote(f"{project_dir.rstrip('/')}/.env.production")
        pg_version = shlex.quote(f"{project_dir.rstrip('/')}/postgres14/PG_VERSION")
        confs = f"{shlex.quote(nginx_conf_dir.rstrip('/'))}/*.conf"
        return (
            f"if [ -f {env} ]; then sed -n 's/^LOCAL_DOMAIN=/local_domain=/p' {env} 2>/dev/null | head -n 1; fi; "
            f'for c in {confs}; do if [ -f "$c" ] && head -n 1 "$c" 2>/dev/null | grep -qF {shlex.quote(MANAGED_HEADER)}; '
            'then echo "nginx_conf=$c"; fi; done; '
            f"if [ -f {pg_version} ]; then echo upstream_pgdata=yes; fi; true"
        )

    def process(self, output: list[str]) -> dict:
        out = self.default()
        for line in output:
            key, _, value = line.strip().partition("=")
            if key == "local_domain" and out["local_domain"] is None:
                out["local_domain"] = value.strip("'\"")
            elif key == "nginx_conf" and value:
                out["nginx_confs"].append(value)
            elif key == "upstream_pgdata":
                out["upstream_pgdata"] = value == "yes"
        return out


class UidGidOwners(FactBase[dict]):
    """
    Who holds a uid and a gid: ``{"user": name or None, "group": name or None}``.

    + uid: numeric user id (default: Mastodon's 991)
    + gid: numeric group id (default: Mastodon's 991)
    """

    @staticmethod
    def default() -> dict:
        return {"user": None, "group": None}

    def command(self, uid: int = MASTODON_UID, gid: int = MASTODON_GID) -> str:
        uid, gid = int(uid), int(gid)
        return (
            f"getent passwd {uid} | head -n 1 | cut -d: -f1 | sed 's/^/user=/'; "
            f"getent group {gid} | head -n 1 | cut -d: -f1 | sed 's/^/group=/'; true"
        )

    def process(self, output: list[str]) -> dict:
        out = self.default()
        for line in output:
            key, _, value = line.strip().partition("=")
            if key in out and value:
                out[key] = value
        return out


class EnvFileDigests(FactBase[dict | None]):
    """
    A per-line digest of an env file, so the deploy can tell which keys are set and whether a line
    would change, without the values ever leaving the host. ``None`` if the file does not exist, else::

        {
            "mode": "600", "user": "mastodon", "group": "mastodon",
            "readable": True,
            "trailing_newline": True,     # the last byte is "\\n"
            "lines": [[key_or_None, sha256hex], ...],
        }

    One entry per line in file order; ``key`` is the part before ``=`` for ``KEY=...`` lines
    (``None`` for comments, blank lines, anything else), the digest is sha256 of a key followed by
    the line's bytes without the newline. Needs root (or the owner) for a 0600 file: ``readable``
    says if it was read.

    The key is the first line of the command's standard input (``host.get_fact(..., _stdin=key)``):
    the deploy draws a random one per run and never prints it, so the digests that ``-vvv`` shows
    cannot be used to guess a weak operator password (an SMTP password) offline. Without stdin the
    key is empty and the digests are plain sha256 of the lines.

    + path: the env file
    """

    def command(self, path: str) -> str:
        # IFS= and -r keep leading spaces and backslashes; the `|| [ -n "$l" ]` picks up a last line
        # without newline. printf '%s' writes the line as is (no %-expansion of its contents).
        # Keys are printed only when they are plain identifiers; everything else prints "-".
        return (
            # The key is read first, whatever follows: the command must not exit before its stdin
            # is written, or the SSH channel closes under the writer.
            'IFS= read -r key || key=""; '
            f"f={shlex.quote(path)}; "
            'if [ -f "$f" ]; then '
            'echo "meta $(stat -L -c \'%a %U %G\' "$f") $(tail -c 1 "$f" | wc -l | tr -d \' \')"; '
            'if [ -r "$f" ]; then '
            'while IFS= read -r l || [ -n "$l" ]; do '
            'h=$(printf \'%s%s\' "$key" "$l" | sha256sum); k=-; '
            'case "$l" in [A-Za-z_]*=*) k=${l%%=*}; '
            'case "$k" in *[!A-Za-z0-9_]*) k=- ;; esac ;; esac; '
            'echo "line ${h%% *} $k"; '
            'done < "$f"; '
            "else echo unreadable; fi; "
            "fi; true"
        )

    def process(self, output: list[str]) -> dict | None:
        result: dict[str, Any] | None = None
        for raw in output:
            parts = raw.split()
            if not parts:
                continue
            if parts[0] == "meta" and len(parts) == 5:
                result = {
                    "mode": parts[1],
                    "user": parts[2],
                    "group": parts[3],
                    "readable": True,
                    "trailing_newline": parts[4] == "1",
                    "lines": [],
                }
            elif result is None:
                continue
            elif parts[0] == "unreadable":
                result["readable"] = False
            elif parts[0] == "line" and len(parts) == 3 and _SHA256_RE.fullmatch(parts[1]):
                key = parts[2] if parts[2] != "-" and _ENV_KEY_RE.fullmatch(parts[2]) else None
                result["lines"].append([key, parts[1]])
        return result


# The values docker inspect prints per container, as one JSON array per line. The template names
# each field explicitly: a generic {{json .}} would print .Config.Env, i.e. every secret.
_INSPECT_FIELDS = (
    ("service", '{{json (index .Config.Labels "com.docker.compose.service")}}'),
    ("oneoff", '{{json (index .Config.Labels "com.docker.compose.oneoff")}}'),
    ("number", '{{json (index .Config.Labels "com.docker.compose.container-number")}}'),
    ("state", "{{json .State.Status}}"),
    ("health", '{{if .State.Health}}{{json .State.Health.Status}}{{else}}""{{end}}'),
    ("image", "{{json .Config.Image}}"),
    ("image_id", "{{json .Image}}"),
    ("config_hash", '{{json (index .Config.Labels "com.docker.compose.config-hash")}}'),
    ("started_at", "{{json .State.StartedAt}}"),
    ("container", "{{json .Name}}"),
)
_INSPECT_FORMAT = "[" + ",".join(template for _, template in _INSPECT_FIELDS) + "]"


class ComposeServices(FactBase[dict]):
    """
    The containers of a compose project, by service::

        {"web": {"state": "running", "health": "healthy", "image": "ghcr.io/...:v4.6.5",
                 "image_id": "sha256:...", "config_hash": "...", "started_at": "2026-...",
                 "container": "mastodon-web-1"}, ...}

    ``health`` is ``""`` without a healthcheck, else ``starting``/``healthy``/``unhealthy``. One-off
    containers (``compose run``) are left out; with several replicas the lowest number wins.

    + project: the compose project name
    """

    @staticmethod
    def default() -> dict:
        return {}

    def command(self, project: str = COMPOSE_PROJECT) -> str:
        label = shlex.quote(f"label=com.docker.compose.project={project}")
        return (
            f"if {_HAVE_DOCKER}; then "
            f"ids=$(docker ps -aq --filter {label} 2>/dev/null); "
            'if [ -n "$ids" ]; then '
            f"docker inspect --format {shlex.quote(_INSPECT_FORMAT)} $ids 2>/dev/null; "
            "fi; fi; true"
        )

    def process(self, output: list[str]) -> dict:
        services: dict[str, dict] = {}
        numbers: dict[str, int] = {}
        for line in output:
            try:
                values = json.loads(line)
            except ValueError:
                continue
            if not isinstance(values, list) or len(values) != len(_INSPECT_FIELDS):
                continue
            item = dict(zip((name for name, _ in _INSPECT_FIELDS), values))
            service = item.pop("service")
            if not service or str(item.pop("oneoff")).lower() == "true":
                continue
            try:
                number = int(item.pop("number") or 0)
            except ValueError:
                number = 0
            item["container"] = (item["container"] or "").lstrip("/")
            if service in services and numbers[service] <= number:
                continue
            numbers[service] = number
            services[service] = {key: (value or "") for key, value in item.items()}
        return services


class ComposeUpPlan(FactBase[dict]):
    """
    What ``docker compose up`` would do to each service now: ``{service: action}``, where the action
    is ``Running`` for a container that is up to date and anything else (``Recreate``, ``Create``,
    ``Start``...) for one that the next ``up`` would touch. Empty if the compose file is missing.

    Compose's own ``--dry-run`` is the oracle: it compares the configuration (including the
    ``env_file`` contents) and the image of every container exactly as ``up`` does, which
    ``config --hash`` does not (its hash differs from the container label for services with an
    ``env_file`` in Compose 2.26). Only container names and actions are printed, never a value.

    + project_dir: the directory holding ``docker-compose.yml``
    """

    _LINE = re.compile(r"Container (\S+)\s+(\S+)\s*$")

    @staticmethod
    def default() -> dict:
        return {}

    def command(self, project_dir: str = BASE_DIR) -> str:
        compose_file = shlex.quote(f"{project_dir.rstrip('/')}/docker-compose.yml")
        return (
            f"if [ -f {compose_file} ] && {_HAVE_DOCKER}; then "
            f"{compose_command(project_dir)} --dry-run up --detach --no-color 2>&1 | grep 'DRY-RUN MODE'; "
            "fi; true"
        )

    def process(self, output: list[str]) -> dict:
        prefix = f"{COMPOSE_PROJECT}-"
        actions: dict[str, str] = {}
        for line in output:
            match = self._LINE.search(line)
            if not match or not match.group(1).startswith(prefix):
                continue  # e.g. the temporary "<id>_mastodon-web-1" names of a recreate
            service = match.group(1)[len(prefix):].rsplit("-", 1)[0]
            actions.setdefault(service, match.group(2))  # the first action is the decision
        return actions


class ImageIds(FactBase[dict]):
    """
    The local image id of each reference: ``{ref: "sha256:..." or None}``.

    + refs: image references (list or tuple)
    """

    @staticmethod
    def default() -> dict:
        return {}

    def command(self, refs: list[str] | tuple[str, ...]) -> str:
        lines = " ".join(
            f"echo image {shlex.quote(ref)} "
            f"\"$(docker image inspect --format '{{{{.Id}}}}' {shlex.quote(ref)} 2>/dev/null | head -n 1)\";"
            for ref in refs
        )
        return f"if {_HAVE_DOCKER}; then {lines} fi; true" if refs else "true"

    def process(self, output: list[str]) -> dict:
        ids: dict[str, str | None] = {}
        for line in output:
            parts = line.split()
            if len(parts) in (2, 3) and parts[0] == "image":
                image_id = parts[2] if len(parts) == 3 else ""
                ids[parts[1]] = image_id if _IMAGE_ID_RE.fullmatch(image_id) else None
        return ids


def _psql(project_dir: str, sql: str) -> str:
    # -tA: bare values; -X: ignore any psqlrc; ON_ERROR_STOP so a bad query is an error, not output.
    return (
        f"{compose_command(project_dir)} exec -T db "
        f"psql -X -v ON_ERROR_STOP=1 -U {DB_USER} -d {DB_NAME} -tAc {shlex.quote(sql)}"
    )


def _sql_true(project_dir: str, sql: str) -> str:
    # "yes" only when db runs and the query answers t; psql errors (no table yet...) mean "no".
    test = (
        f"{_HAVE_DOCKER} && {running_container_test('db')} && "
        f'[ "$({_psql(project_dir, sql)} 2>/dev/null)" = t ]'
    )
    return _yes_no(test)


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _YesNoFact(FactBase[bool]):
    abstract = True

    @staticmethod
    def default() -> bool:
        return False

    def process(self, output: list[str]) -> bool:
        return _first_line(output) == "yes"


class PostgresReady(_YesNoFact):
    """
    True when the running ``db`` service accepts connections (``pg_isready -U postgres``).

    + project_dir: the directory holding ``docker-compose.yml``
    """

    def command(self, project_dir: str = BASE_DIR) -> str:
        test = (
            f"{_HAVE_DOCKER} && {running_container_test('db')} && "
            f"{compose_command(project_dir)} exec -T db pg_isready -q -U {DB_USER} >/dev/null 2>&1"
        )
        return _yes_no(test)


class DatabaseInitialized(_YesNoFact):
    """
    True when the Mastodon schema is loaded (table ``schema_migrations`` exists).

    + project_dir: the directory holding ``docker-compose.yml``
    """

    def command(self, project_dir: str = BASE_DIR) -> str:
        return _sql_true(project_dir, "SELECT to_regclass('public.schema_migrations') IS NOT NULL")


class DatabaseSeeded(_YesNoFact):
    """
    True when ``db:seed`` has run: the web app (the Doorkeeper superapp), the instance actor
    (account -99) and the ``everyone`` role (-99) exist. Only rows an admin cannot rename or
    remove: a renamed ``Owner`` role would otherwise make every run seed again and restart.

    + project_dir: the directory holding ``docker-compose.yml``
    """

    def command(self, project_dir: str = BASE_DIR) -> str:
        sql = (
            "SELECT EXISTS (SELECT 1 FROM oauth_applications WHERE superapp) "
            "AND EXISTS (SELECT 1 FROM accounts WHERE id = -99) "
            "AND EXISTS (SELECT 1 FROM user_roles WHERE id = -99)"
        )
        return _sql_true(project_dir, sql)


class OwnerAccountExists(_YesNoFact):
    """
    True when a local account with this username exists and has a user (login) row.

    + project_dir: the directory holding ``docker-compose.yml``
    + username: the account's username (compared case-insensitively, as Mastodon does)
    """

    def command(self, project_dir: str = BASE_DIR, username: str = "admin") -> str:
        sql = (
            "SELECT EXISTS (SELECT 1 FROM accounts a JOIN users u ON u.account_id = a.id "
            f"WHERE a.domain IS NULL AND lower(a.username) = lower({_sql_literal(username)}))"
        )
        return _sql_true(project_dir, sql)


class PendingMigrations(FactBase[bool | None]):
    """
    Whether the database has migrations the running ``web`` image has not applied
    (``rails db:abort_if_pending_migrations`` in the running web container, post-deployment ones
    included): True/False, ``None`` when web is not running or the check could not tell.

    + project_dir: the directory holding ``docker-compose.yml``
    """

    def command(self, project_dir: str = BASE_DIR) -> str:
        # Rails' output stays in a shell variable: only a token comes back.
        return (
            f"if {_HAVE_DOCKER} && {running_container_test('web')}; then "
            f"out=$({compose_command(project_dir)} exec -T web "
            "bundle exec rails db:abort_if_pending_migrations 2>&1); rc=$?; "
            'if [ "$rc" -eq 0 ]; then echo none; '
            'elif printf \'%s\' "$out" | grep -q "pending migration"; then echo pending; '
            "else echo unknown; fi; "
            "fi; true"
        )

    def process(self, output: list[str]) -> bool | None:
        return {"none": False, "pending": True}.get(_first_line(output))
