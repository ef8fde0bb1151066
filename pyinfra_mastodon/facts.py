"""
Custom facts of the Mastodon deploy.

Rules every fact here follows:

+ read-only: facts run in ``--dry`` too;
+ the command is POSIX sh and exits 0 in every case (pyinfra fails the host on a non-zero fact), an
  absent thing gives empty output and so ``default()``;
+ the output never contains a secret (``-vvv`` prints fact output): values stay on the host, only
  keys, digests, ids and yes/no tokens come back.

Docker is probed with ``command -v`` inside the command rather than ``requires_command``, which
logs a deprecation warning when a fact runs at execution time. Every command comes from ``commands.py``.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from pyinfra.api import FactBase

from . import commands, layout
from .commands import HAVE_DOCKER as _HAVE_DOCKER
from .commands import running_container_test, sql_literal, sql_true, yes_no

_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IMAGE_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

BASE_DIR = layout.BASE_DIR
COMPOSE_PROJECT = layout.COMPOSE_PROJECT


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


class InstalledPackages(FactBase[list]):
    """
    Which of ``packages`` dpkg has installed (status ``ii``), sorted: e.g. ``["docker.io"]``.

    + packages: package names (list or tuple)
    """

    @staticmethod
    def default() -> list:
        return []

    def command(self, packages: list[str] | tuple[str, ...]) -> str:
        return commands.installed_packages(tuple(packages))

    def process(self, output: list[str]) -> list:
        found = {parts[0] for parts in (line.split() for line in output) if len(parts) >= 2 and parts[1] == "ii"}
        return sorted(found)


class SshdPorts(FactBase[list]):
    """The TCP ports sshd listens on, sorted: ``[22]`` (none known: ``[]``)."""

    @staticmethod
    def default() -> list:
        return []

    def command(self) -> str:
        return commands.sshd_ports()

    def process(self, output: list[str]) -> list:
        ports = {int(port) for port in (line.strip().rpartition(":")[2] for line in output) if port.isdigit()}
        return sorted(ports)


class ExistingInstance(FactBase[dict]):
    """
    What an earlier install left on the host, for the checks made before any change::

        {
            "local_domain": "social1.example.org" or None,  # LOCAL_DOMAIN in .env.production
            "nginx_confs": ["/data/nginx/user_conf.d/x.conf", ...],  # server blocks this deploy wrote
            "upstream_pgdata": False,  # PostgreSQL data directly in postgres14/ (upstream's layout)
            "foreign_owned": ["/opt/mastodon/redis"],  # data folders holding files of another uid
            "database": True,  # a PostgreSQL data directory in this deploy's layout (postgres14/pgdata)
        }

    Only the ``LOCAL_DOMAIN`` line of ``.env.production`` is read (sed prints nothing else), so no
    secret comes back.

    + project_dir: the Mastodon directory (``/opt/mastodon``)
    + nginx_conf_dir: the nginx-certbot image's ``user_conf.d`` directory on the host
    + data_dirs: the data services' folders (``desired.data_folders``: the db major's); default: the
      default major's
    """

    @staticmethod
    def default() -> dict:
        return {
            "local_domain": None,
            "nginx_confs": [],
            "upstream_pgdata": False,
            "foreign_owned": [],
            "database": False,
        }

    def command(
        self,
        project_dir: str = BASE_DIR,
        nginx_conf_dir: str = layout.NGINX_CONF_DIR,
        data_dirs: list[str] | tuple[str, ...] | None = None,
    ) -> str:
        data = (
            data_dirs
            if data_dirs is not None
            else [f"{project_dir.rstrip('/')}/{d.removeprefix(BASE_DIR).lstrip('/')}" for d in layout.data_tier_dirs()]
        )
        return commands.fact_script("existing-instance", project_dir, nginx_conf_dir, layout.MANAGED_HEADER, *data)

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
            elif key == "foreign_owned" and value:
                out["foreign_owned"].append(value)
            elif key == "database":
                out["database"] = value == "yes"
        return out


class MailDomain(FactBase[dict]):
    """
    Whether an e-mail domain can receive mail, decided as Mastodon decides it when it creates an
    account (``email_mx_validator.rb``: DNS only, MX then A/AAAA, a null MX rejects), asked on the host
    with its DNS servers: ``reachable``, ``unreachable`` or ``unknown`` (no ``python3`` on the host).
    ``detail`` in the second word: ``no-records``, ``null-mx``, ``no-answer``, ``no-python3``.

    + domain: the domain part of the address
    """

    @staticmethod
    def default() -> dict:
        return {"verdict": "unknown", "detail": "no-output"}

    def command(self, domain: str) -> str:
        return commands.python_probe("mail_domain", domain)

    def process(self, output: list[str]) -> dict:
        verdict, _, detail = _first_line(output).partition(" ")
        if verdict not in ("reachable", "unreachable", "unknown"):
            return self.default()
        return {"verdict": verdict, "detail": detail.strip()}


class HostLock(FactBase[dict]):
    """
    Takes the host's lock for this run (waiting at most ``timeout`` seconds) and keeps it until the
    run's SSH connection closes: ``{"state": "acquired"}``, ``{"state": "busy", "since": "2026-..."}``
    or ``{"state": "unsupported", "reason": ...}`` (no flock, or not over SSH). Not read-only like
    the other facts: it is how a run takes the lock before any change, and it changes nothing else.

    + run_id: this run's random id (the lock is taken once per run)
    + timeout: seconds to wait for another holder
    + path: the lock file
    """

    @staticmethod
    def default() -> dict:
        return {"state": "unsupported", "reason": "no-output"}

    def command(self, run_id: str, timeout: int, path: str = layout.LOCK_FILE) -> str:
        return commands.fact_script("host-lock", run_id, int(timeout), path)

    def process(self, output: list[str]) -> dict:
        word, _, rest = _first_line(output).partition(" ")
        if word == "acquired":
            return {"state": "acquired"}
        if word == "busy":
            return {"state": "busy", "since": rest.strip() or "unknown"}
        return {"state": "unsupported", "reason": rest.strip() or "unknown"}


class CertificateState(FactBase[dict]):
    """
    The domain's certificate, as the nginx-certbot container sees it::

        {"proxy": True, "cert": True, "served": True, "nokey": False,
         "server": "https://acme-v02.api.letsencrypt.org/directory" or None, "expires": "..."}

    ``served``: port 443 hands out the very certificate of ``live/<domain>/``; ``nokey``: the image
    parked the server block after a failed request; ``server``: the ACME directory of certbot's renewal
    configuration (None: not certbot's, e.g. the local CA's). ``proxy`` False when nginx does not run.

    + domain: the instance's domain
    """

    @staticmethod
    def default() -> dict:
        return {"proxy": False, "cert": False, "served": False, "nokey": False, "server": None, "expires": ""}

    def command(self, domain: str) -> str:
        return commands.fact_script("certificate-state", domain)

    def process(self, output: list[str]) -> dict:
        out = self.default()
        out["proxy"] = True
        for line in output:
            key, _, value = line.strip().partition(" ")
            if (key, value) == ("proxy", "down"):
                return self.default()
            if key in ("cert", "served", "nokey"):
                out[key] = value == "yes"
            elif key == "server":
                out["server"] = None if value in ("", "none") else value
            elif key == "expires":
                out["expires"] = value
        return out


class PathsPresent(FactBase[list]):
    """
    Which of these paths exist, in one command: ``["/etc/systemd/system/x.timer", ...]``.

    + paths: the paths (list or tuple)
    """

    @staticmethod
    def default() -> list:
        return []

    def command(self, paths: list[str] | tuple[str, ...]) -> str:
        tests = " ".join(f"[ -e {shlex.quote(p)} ] && echo {shlex.quote(p)};" for p in paths)
        return f"{tests} true"

    def process(self, output: list[str]) -> list:
        return [line.strip() for line in output if line.strip()]


class TimerRuns(FactBase[dict]):
    """
    The maintenance timers systemd knows, with their last run and the next:
    ``{"mastodon-media-remove": {"result": "success", "last": "...", "next": "..."}}`` (absent: not installed).

    + units: ``mastodon-<name>`` of each timer
    """

    @staticmethod
    def default() -> dict:
        return {}

    def command(self, units: list[str] | tuple[str, ...]) -> str:
        shows = " ".join(
            f"if [ -e {shlex.quote(f'{layout.SYSTEMD_DIR}/{u}.timer')} ]; then "
            f'echo "unit {u} $(systemctl show {shlex.quote(u + ".service")} -p Result --value 2>/dev/null)|'
            f"$(systemctl show {shlex.quote(u + '.service')} -p ExecMainExitTimestamp --value 2>/dev/null)|"
            f'$(systemctl show {shlex.quote(u + ".timer")} -p NextElapseUSecRealtime --value 2>/dev/null)"; fi;'
            for u in units
        )
        return f"{shows} true"

    def process(self, output: list[str]) -> dict:
        out: dict[str, dict] = {}
        for line in output:
            word, _, rest = line.strip().partition(" ")
            unit, _, fields = rest.partition(" ")
            if word != "unit" or not unit:
                continue
            result, last, nxt = (fields.split("|") + ["", "", ""])[:3]
            out[unit] = {"result": result, "last": last or "never", "next": nxt}
        return out


class FreeSpace(FactBase[dict]):
    """
    MiB free on the filesystem of each path (its nearest existing parent if it does not exist yet),
    and of Docker's root as ``docker:<dir>``: ``{"/opt/mastodon": 51200, "docker:/var/lib/docker": ...}``.

    + paths: the paths (list or tuple)
    """

    @staticmethod
    def default() -> dict:
        return {}

    def command(self, paths: list[str] | tuple[str, ...]) -> str:
        return commands.fact_script("free-space", *paths)

    def process(self, output: list[str]) -> dict:
        out: dict[str, int] = {}
        for line in output:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "free" and parts[2].isdigit():
                out[parts[1]] = int(parts[2])
        return out


class BackupInfo(FactBase[dict | None]):
    """
    A backup in ``layout.BACKUP_DIR``, as its manifest describes it, and which env files restoring it
    would replace (compared on the host; no content or checksum comes back)::

        {"name": "20261202T021500Z", "created": "2026-12-02T02:15:00Z", "mastodon_version": "v4.6.5",
         "database_bytes": 9123456, "files": {"database.dump": 812345, ...},
         "same": {"env.production": True, "env.db": True}}

    ``None`` when there is no such backup (or none at all for ``latest``).

    + backup: a backup's name, or ``latest`` for the newest
    + root: the backups' folder
    """

    def command(self, backup: str, root: str = layout.BACKUP_DIR) -> str:
        return commands.fact_script("backup-info", root, backup, BASE_DIR)

    def process(self, output: list[str]) -> dict | None:
        out: dict[str, Any] = {"files": {}, "same": {}}
        for line in output:
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("name", "created", "mastodon_version"):
                out[parts[0]] = parts[1]
            elif len(parts) == 2 and parts[0] == "database_bytes" and parts[1].isdigit():
                out["database_bytes"] = int(parts[1])
            elif len(parts) == 3 and parts[0] == "file" and parts[2].isdigit():
                out["files"][parts[1]] = int(parts[2])
            elif len(parts) == 3 and parts[0] == "same":
                out["same"][parts[1]] = parts[2] == "yes"
        return out if "name" in out else None


class UidGidOwners(FactBase[dict]):
    """
    Who holds a uid and a gid: ``{"user": name or None, "group": name or None}``.

    + uid: numeric user id (default: Mastodon's 991)
    + gid: numeric group id (default: Mastodon's 991)
    """

    @staticmethod
    def default() -> dict:
        return {"user": None, "group": None}

    def command(self, uid: int = layout.MASTODON_UID, gid: int = layout.MASTODON_GID) -> str:
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


class EnvFileKeys(FactBase[dict | None]):
    """
    Which keys an env file has, and its owner and mode; never a value, nor anything derived from one.
    ``None`` if the file does not exist, else::

        {"mode": "600", "user": "mastodon", "group": "mastodon", "readable": True,
         "keys": {"LOCAL_DOMAIN": True, "SMTP_LOGIN": False, ...}}   # key -> has a value

    A key has no value when its line is ``KEY=``, ``KEY=""`` or ``KEY=''``. Needs root (or the owner)
    for a 0600 file: ``readable`` says if it was read.

    + path: the env file
    """

    def command(self, path: str) -> str:
        return commands.fact_script("env-file-keys", path)

    def process(self, output: list[str]) -> dict | None:
        result: dict[str, Any] | None = None
        for raw in output:
            parts = raw.split()
            if parts[:1] == ["meta"] and len(parts) == 4:
                result = {"mode": parts[1], "user": parts[2], "group": parts[3], "readable": True, "keys": {}}
            elif result is None:
                continue
            elif parts == ["unreadable"]:
                result["readable"] = False
            elif parts[:1] == ["key"] and len(parts) == 3 and _ENV_KEY_RE.fullmatch(parts[1]):
                # The last line of a key wins, as in Compose's env_file.
                result["keys"][parts[1]] = parts[2] == "set"
        return result


class EnvFileDiff(FactBase[dict]):
    """
    How the planned content of an env file differs from the file, compared on the host::

        {"exists": True, "readable": True, "same": False, "changed": ["LOCAL_DOMAIN", ...]}

    The planned content travels on standard input, as ``envfile.Withheld`` (never printed, not even
    with ``-vv``): ``host.get_fact(EnvFileDiff, path=..., _stdin=Withheld(payload))``. Only the names of
    the keys that would change come back, so no output holds a secret or anything derived from one.

    + path: the env file
    """

    @staticmethod
    def default() -> dict:
        # No answer at all (the compare failed): write, which is safe, rather than trust the file.
        return {"exists": True, "readable": True, "same": False, "changed": []}

    def command(self, path: str) -> str:
        return commands.fact_script("env-file-compare", path)

    def process(self, output: list[str]) -> dict:
        out = {"exists": True, "readable": True, "same": False, "changed": []}
        for raw in output:
            parts = raw.split()
            if parts == ["missing"]:
                out["exists"] = False
            elif parts == ["unreadable"]:
                out["readable"] = False
            elif parts == ["same"]:
                out["same"] = True
            elif parts[:1] == ["changed"] and len(parts) == 2 and _ENV_KEY_RE.fullmatch(parts[1]):
                out["changed"].append(parts[1])
        out["changed"].sort()
        return out


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
        return f"if {_HAVE_DOCKER}; then {commands.inspect_containers(_INSPECT_FORMAT, project)}; fi; true"

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
            item = dict(zip((name for name, _ in _INSPECT_FIELDS), values, strict=True))
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
    When every service is up to date, the host keeps a digest of what Compose compared
    (``layout.COMPOSE_MEMO``, root only): a cache, like the migrations', that lets ``Converged``
    answer the next run without a dry run; anything else removes it.

    + project_dir: the directory holding ``docker-compose.yml``
    """

    _LINE = re.compile(r"Container (\S+)\s+(\S+)\s*$")

    @staticmethod
    def default() -> dict:
        return {}

    def command(self, project_dir: str = BASE_DIR) -> str:
        compose_file = shlex.quote(f"{project_dir.rstrip('/')}/docker-compose.yml")
        plan = commands.up_dry_run_remembered(project_dir)
        return f"if [ -f {compose_file} ] && {_HAVE_DOCKER}; then {plan}; fi; true"

    def process(self, output: list[str]) -> dict:
        prefix = f"{COMPOSE_PROJECT}-"
        actions: dict[str, str] = {}
        for line in output:
            match = self._LINE.search(line)
            if not match or not match.group(1).startswith(prefix):
                continue  # e.g. the temporary "<id>_mastodon-web-1" names of a recreate
            service = match.group(1)[len(prefix) :].rsplit("-", 1)[0]
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
        return f"if {_HAVE_DOCKER}; then {commands.image_ids(refs)} fi; true" if refs else "true"

    def process(self, output: list[str]) -> dict:
        ids: dict[str, str | None] = {}
        for line in output:
            parts = line.split()
            if len(parts) in (2, 3) and parts[0] == "image":
                image_id = parts[2] if len(parts) == 3 else ""
                ids[parts[1]] = image_id if _IMAGE_ID_RE.fullmatch(image_id) else None
        return ids


# What Replication asks: on the primary, each standby streaming from it (pg_stat_replication) and the
# replica's slot; on the replica, whether it is a standby and how far its replay is behind.
PRIMARY_REPLICATION_SQL = (
    "SELECT 'standby', coalesce(host(client_addr), 'local'), state, "
    "coalesce(round(extract(epoch FROM replay_lag)::numeric, 3), 0), "
    "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0) FROM pg_stat_replication "
    "UNION ALL SELECT 'slot', slot_name, CASE WHEN active THEN 'active' ELSE 'inactive' END "
    "|| ' ' || coalesce(wal_status, 'unknown'), 0, "
    "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0) FROM pg_replication_slots"
)
REPLICA_REPLICATION_SQL = (
    "SELECT 'replica', CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END, "
    "coalesce((SELECT status FROM pg_stat_wal_receiver), 'not receiving'), "
    "CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 ELSE "
    "coalesce(round(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::numeric, 3), 0) END, "
    "coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)"
)


class Replication(FactBase[list]):
    """
    Streaming replication as PostgreSQL sees it, one dict per row: on the primary (``service`` db) each
    standby (``kind`` standby: its address, state, replay lag in seconds, bytes not replayed) and each
    slot (its state and ``wal_status``, as "active reserved"; bytes of WAL it holds); on the replica
    (``service`` replica) itself (standby or primary, the
    WAL receiver's status, seconds and bytes its replay is behind). Empty when the service does not run.

    + service: ``db`` or ``replica``
    """

    @staticmethod
    def default() -> list:
        return []

    def command(self, service: str = "db", project_dir: str = BASE_DIR) -> str:
        sql = REPLICA_REPLICATION_SQL if service == "replica" else PRIMARY_REPLICATION_SQL
        query = commands.psql(sql, project_dir, service=service).replace("-tAc", "-tA -F '|' -c")
        return f"{_HAVE_DOCKER} && {running_container_test(service)} && {query} 2>/dev/null; true"

    def process(self, output: list[str]) -> list:
        rows = []
        for line in output:
            parts = line.strip().split("|")
            if len(parts) == 5:
                kind, name, state, lag, behind = parts
                rows.append({"kind": kind, "name": name, "state": state, "lag": lag, "bytes": behind})
        return rows


class _YesNoFact(FactBase[bool]):
    abstract = True

    @staticmethod
    def default() -> bool:
        return False

    def process(self, output: list[str]) -> bool:
        return _first_line(output) == "yes"


class PostgresReady(_YesNoFact):
    """
    True when the running ``db`` service accepts connections (``pg_isready -h 127.0.0.1``: over TCP, as Rails connects).

    + project_dir: the directory holding ``docker-compose.yml``
    """

    def command(self, project_dir: str = BASE_DIR) -> str:
        test = f"{_HAVE_DOCKER} && {running_container_test('db')} && {commands.pg_isready(project_dir)} >/dev/null 2>&1"
        return yes_no(test)


class DatabaseInitialized(_YesNoFact):
    """
    True when the Mastodon schema is loaded (table ``schema_migrations`` exists).

    + project_dir: the directory holding ``docker-compose.yml``
    """

    def command(self, project_dir: str = BASE_DIR) -> str:
        return sql_true(project_dir=project_dir, sql="SELECT to_regclass('public.schema_migrations') IS NOT NULL")


# What DatabaseSeeded and OwnerAccount ask, as SQL expressions (Converged asks them too).
SEEDED_SQL = (
    "EXISTS (SELECT 1 FROM oauth_applications WHERE superapp) "
    "AND EXISTS (SELECT 1 FROM accounts WHERE id = -99) "
    "AND EXISTS (SELECT 1 FROM user_roles WHERE id = -99)"
)


def _owner_rows(username: str) -> str:
    return (
        "FROM accounts a JOIN users u ON u.account_id = a.id "
        f"WHERE a.domain IS NULL AND lower(a.username) = lower({sql_literal(username)})"
    )


def owner_exists_sql(username: str) -> str:
    return f"EXISTS (SELECT 1 {_owner_rows(username)})"


def owner_never_signed_in_sql(username: str) -> str:
    return f"EXISTS (SELECT 1 {_owner_rows(username)} AND u.sign_in_count = 0 AND u.current_sign_in_at IS NULL)"


class DatabaseSeeded(_YesNoFact):
    """
    True when ``db:seed`` has run: the web app (the Doorkeeper superapp), the instance actor
    (account -99) and the ``everyone`` role (-99) exist. Only rows an admin cannot rename or
    remove: a renamed ``Owner`` role would otherwise make every run seed again and restart.

    + project_dir: the directory holding ``docker-compose.yml``
    """

    def command(self, project_dir: str = BASE_DIR) -> str:
        return sql_true(project_dir=project_dir, sql=f"SELECT {SEEDED_SQL}")


class OwnerAccount(FactBase[str]):
    """
    The owner account's state, in one query: ``missing``, ``exists``, or ``lost``: it exists, has
    never signed in, and its password file is gone, i.e. the run that created it failed after the
    account was saved (``tootctl accounts create`` commits the account, then talks to Redis, and
    prints the password only after that). ``missing`` also when db does not run.

    + project_dir: the directory holding ``docker-compose.yml``
    + username: the account's username (compared case-insensitively, as Mastodon does)
    + password_file: where the deploy keeps the first password
    """

    @staticmethod
    def default() -> str:
        return "missing"

    def command(
        self, project_dir: str = BASE_DIR, username: str = "admin", password_file: str = layout.ADMIN_PASSWORD_FILE
    ) -> str:
        exists = commands.psql(f"SELECT {owner_exists_sql(username)}", project_dir)
        never = commands.psql(f"SELECT {owner_never_signed_in_sql(username)}", project_dir)
        return (
            f'if {_HAVE_DOCKER} && {running_container_test("db")} && [ "$({exists} 2>/dev/null)" = t ]; then '
            f'if [ ! -e {shlex.quote(password_file)} ] && [ "$({never} 2>/dev/null)" = t ]; then echo lost; '
            "else echo exists; fi; else echo missing; fi; true"
        )

    def process(self, output: list[str]) -> str:
        word = _first_line(output)
        return word if word in ("missing", "exists", "lost") else "missing"


class PendingMigrations(FactBase[bool | None]):
    """
    Whether the database has migrations the running ``web`` image has not applied, post-deployment
    ones included: True/False, ``None`` when web is not running or the check could not tell.

    Exact, and with no Rails boot: Rails counts a migration as pending when the version of one of its
    files (``db/migrate``, ``db/post_migrate``) is missing from ``schema_migrations``; the image's
    versions are listed once per image id (``docker exec ... ls``) and kept on the host
    (``layout.MIGRATIONS_CACHE_DIR``), ``schema_migrations`` is read with psql in the db container.

    + project_dir: the directory holding ``docker-compose.yml``
    + cache_dir: where the image's migration versions are kept, one file per image id
    + image: the versions of this image instead of the running web's (the jobs host of an instance on
      several hosts runs no web); None (unknown) while the image is not on the host
    """

    def command(
        self, project_dir: str = BASE_DIR, cache_dir: str = layout.MIGRATIONS_CACHE_DIR, image: str | None = None
    ) -> str:
        if image is None:
            return commands.fact_script("pending-migrations", cache_dir, project_dir=project_dir)
        return commands.fact_script("pending-migrations", cache_dir, "", image, project_dir=project_dir)

    def process(self, output: list[str]) -> bool | None:
        return {"none": False, "pending": True}.get(_first_line(output))


class Converged(FactBase[dict]):
    """
    Whether the host is exactly as a deploy would leave it, in one command (``sh/converged.sh``)::

        {"converged": True, "concern": "", "what": ""}
        {"converged": False, "concern": "file", "what": "/opt/mastodon/docker-compose.yml"}

    It compares what ``desired`` declares (folders, files with their digests, the env files byte for
    byte, the user and group, the timers) and asks what the stages would ask: every service running,
    healthy and on its reference's image, Compose's inputs unchanged since its last dry run found
    nothing to do (``sh/compose-memo.sh``), no pending migration, the seed and the owner account,
    443 serving the domain's certificate from the right CA, free space, and nothing the checks before
    a deploy would refuse. Only the first difference comes back, as a word and a path, unit or
    service; the env files' planned content travels withheld on stdin
    (``host.get_fact(Converged, args=..., _stdin=Withheld(payload))``).

    Conservative by design: anything it cannot tell is a difference, and the deploy then runs in
    full, which is always right, only slower.

    + args: the script's arguments (``desired.converged_check``); never a secret
    """

    @staticmethod
    def default() -> dict:
        return {"converged": False, "concern": "no-answer", "what": ""}

    def command(self, args: tuple[str, ...]) -> str:
        return commands.fact_script("converged", *args)

    def process(self, output: list[str]) -> dict:
        for line in output:
            words = line.split(maxsplit=2)
            if words == ["converged"]:
                return {"converged": True, "concern": "", "what": ""}
            if words[:1] == ["differs"]:
                concern = words[1] if len(words) > 1 else "unknown"
                return {"converged": False, "concern": concern, "what": words[2] if len(words) > 2 else ""}
        return self.default()
