"""
What the deploy puts on a host, declared once: the folders, the files and the env files, with their
owners and modes. The stages write them (``stages/system.py``, ``configuration.py``, ``timers.py``) and
the converged check (``facts.Converged``) compares the host with the very same list, so a file the
deploy writes cannot be missed by the check that decides "nothing to do".
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field

from . import commands, layout
from .envfile import converged_payload
from .facts import SEEDED_SQL, owner_exists_sql, owner_never_signed_in_sql
from .render import db_data_dir, has_replica, render, render_with, replica_data_dir
from .render import host_services as render_host_services

# The mastodon user's login shell: it never logs in.
USER_SHELL = "/usr/sbin/nologin"
# The filesystems whose free space the checks before a deploy look at (Docker's root as well).
FREE_SPACE_PATHS = (layout.BASE_DIR, layout.BACKUP_DIR)


@dataclass(frozen=True)
class Folder:
    """A folder with its owner and mode (``files.directory``)."""

    path: str
    user: str
    group: str
    mode: str


@dataclass(frozen=True)
class File:
    """A file whose whole content the deploy writes (``files.put``); never one that holds a secret."""

    path: str
    content: str = field(repr=False)
    user: str
    group: str
    mode: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


@dataclass(frozen=True)
class EnvFile:
    """An env file with secrets (``operations.secret_env_file``): planned here, compared on the host."""

    path: str
    rendered: str = field(repr=False)
    overrides: dict = field(repr=False, default_factory=dict)
    user: str = layout.MASTODON_USER
    group: str = layout.MASTODON_GROUP
    mode: str = "600"
    note: str = ""  # said after the path in the operation's name


def _owned(path: str) -> Folder:
    return Folder(path, layout.MASTODON_USER, layout.MASTODON_GROUP, "755")


def _root(path: str, mode: str = "755") -> Folder:
    return Folder(path, "root", "root", mode)


def runs_proxy(cfg) -> bool:
    """The host runs the instance's nginx-certbot proxy (every whole server does)."""
    return "proxy" in cfg.roles


def system_folders(cfg) -> list[Folder]:
    """
    Stage 1: the mastodon user's folders (0755: PostgreSQL keeps its own 0700 one level below) and
    nginx's; on a host of an instance on several hosts, those of the services it runs.
    """
    here = render_host_services(cfg)
    owned = [_owned(path) for path in layout.data_dirs(db_data_dir(cfg), services=here)]
    return owned + ([_root(path) for path in layout.proxy_dirs()] if runs_proxy(cfg) else [])


def runs_application(cfg) -> bool:
    """The host has a ``.env.production``: it runs web, streaming or sidekiq, or the database's jobs."""
    return bool({"web", "streaming", "sidekiq"} & set(render_host_services(cfg)))


def env_files(cfg, instance_secrets: dict | None = None) -> list[EnvFile]:
    """
    Stage 2: ``.env.db`` and ``.env.production``, whose secrets stay on the host, and restic's password
    file; on a host of an instance on several hosts, those its roles read, with ``.env.redis``.

    + instance_secrets: env key -> value, the instance's secrets (``cluster_secrets``) on several hosts
    """
    shared = instance_secrets or {}
    here = render_host_services(cfg)
    out = []
    if "db" in here:
        db_overrides = {"POSTGRES_PASSWORD": shared["DB_PASS"]} if cfg.cluster and "DB_PASS" in shared else {}
        note = " (the database's password kept, never shown)" if cfg.cluster else ""
        out.append(EnvFile(layout.ENV_DB_FILE, render("env.db.j2", cfg), db_overrides, note=note))
    if cfg.cluster and "redis" in here:
        redis_overrides = {"REDIS_PASSWORD": shared["REDIS_PASSWORD"]} if "REDIS_PASSWORD" in shared else {}
        out.append(
            EnvFile(
                layout.ENV_REDIS_FILE,
                render("env.redis.j2", cfg),
                redis_overrides,
                note=" (Redis's password kept, never shown)",
            )
        )
    # the replica and PgBouncer log in to PostgreSQL with its password, under their images' names
    db_pass = shared.get("DB_PASS")

    def password_as(key: str) -> dict:
        return {key: db_pass} if db_pass else {}

    if "replica" in here:
        out.append(
            EnvFile(
                layout.ENV_REPLICA_FILE,
                render("env.replica.j2", cfg),
                password_as("PGPASSWORD"),
                note=" (the database's password kept, never shown)",
            )
        )
    if "pgbouncer" in here:
        out.append(
            EnvFile(
                layout.ENV_PGBOUNCER_FILE,
                render("env.pgbouncer.j2", cfg),
                password_as("DB_PASSWORD"),
                note=" (the database's password kept, never shown)",
            )
        )
    if runs_application(cfg):
        replica_pass = password_as(layout.REPLICA_SECRET_KEY) if has_replica(cfg) else {}
        out.append(
            EnvFile(
                layout.ENV_PRODUCTION_FILE,
                render("env.production.j2", cfg),
                {**shared, **replica_pass, **cfg.secret_overrides},
                note=" (secrets kept, never shown)",
            )
        )
    if cfg.restic_repository:
        out.append(
            EnvFile(
                layout.RESTIC_ENV_FILE,
                render("restic.env.j2", cfg),
                {"RESTIC_PASSWORD": cfg.restic_password},
                user="root",
                group="root",
                note=" (the restic password is never shown)",
            )
        )
    return out


def config_folders(cfg) -> list[Folder]:
    """Stage 2: restic's folder (root only) when backups are copied with restic."""
    return [_root(layout.RESTIC_ENV_FILE.rsplit("/", 1)[0], "700")] if cfg.restic_repository else []


def absent_config_files(cfg) -> list[str]:
    """Stage 2: restic's password file when no restic repository is set: the deploy removes it."""
    return [] if cfg.restic_repository else [layout.RESTIC_ENV_FILE]


def compose_file(cfg) -> File:
    return File(
        layout.COMPOSE_FILE, render("docker-compose.yml.j2", cfg), layout.MASTODON_USER, layout.MASTODON_GROUP, "644"
    )


def pg_hba_file(cfg) -> File | None:
    """The primary's client authentication, on the db host of an instance with a read replica (no secret)."""
    if not (has_replica(cfg) and "db" in cfg.roles):
        return None
    return File(layout.PG_HBA_FILE, render("pg_hba.conf.j2", cfg), layout.MASTODON_USER, layout.MASTODON_GROUP, "644")


def local_ca_folder(cfg) -> Folder | None:
    """The local CA's key folder (root only), when the local CA signs the certificate."""
    return _root(layout.LOCAL_CA_DIR, "700") if cfg.certbot_local_ca else None


def nginx_file(cfg) -> File | None:
    """The domain's server block, on a host that runs the proxy."""
    if not runs_proxy(cfg):
        return None
    return File(layout.nginx_conf(cfg.domain), render("nginx-site.conf.j2", cfg), "root", "root", "644")


def wanted_timers(cfg) -> list[layout.Timer]:
    """
    The maintenance timers turned on (``mastodon_<name>_timer``); on an instance on several hosts,
    only its db host runs them (the database's jobs, the dump, its copy of the secrets).
    """
    if cfg.cluster is not None and cfg.host != cfg.cluster.jobs_host:
        return []
    return [t for t in layout.TIMERS if getattr(cfg, t.setting[len("mastodon_") :])]


def _timer_command(cfg, timer: layout.Timer) -> str:
    fields = [name for _, name, _, _ in string.Formatter().parse(timer.command) if name]
    words = timer.command.format(**{name: getattr(cfg, name) for name in fields}).split()
    if timer.script:
        return commands.job_script(timer.script, *words, installed=True)
    return commands.tootctl(words)


def timer_folders(cfg) -> list[Folder]:
    """Stage 11: the job runner's folder, when a timer is on."""
    return [_root(layout.JOB_RUNNER.rsplit("/", 1)[0])] if wanted_timers(cfg) else []


def timer_files(cfg) -> list[File]:
    """Stage 11: the job runner and each timer's two units, when it is on."""
    wanted = wanted_timers(cfg)
    if not wanted:
        return []
    out = [File(layout.JOB_RUNNER, commands.installed_script("run-job"), "root", "root", "755")]
    # Root only: a timer's own script (the backup) reads the env files and writes the backups.
    for timer in wanted:
        if timer.script:
            path = commands.job_script_path(timer.script)
            out.append(File(path, commands.installed_script(timer.script), "root", "root", "700"))
    for timer in wanted:
        schedule = getattr(cfg, timer.schedule_setting[len("mastodon_") :])
        context = {"timer": timer, "command": _timer_command(cfg, timer), "schedule": schedule}
        for kind in ("service", "timer"):
            content = render_with(f"systemd/job.{kind}.j2", cfg, **context)
            out.append(File(f"{layout.SYSTEMD_DIR}/{timer.unit}.{kind}", content, "root", "root", "644"))
    return out


def absent_timer_files(cfg) -> list[str]:
    """The unit files of the timers turned off: the deploy removes them."""
    wanted = wanted_timers(cfg)
    off = [t for t in layout.TIMERS if t not in wanted]
    return [f"{layout.SYSTEMD_DIR}/{t.unit}.{kind}" for t in off for kind in ("timer", "service")]


def ssh_ports(connected_port, listening) -> list[int]:
    """
    The SSH ports the firewall keeps open: the deploy's and sshd's, sorted.

    + connected_port: ``ssh_port`` of the host's data (None: 22)
    + listening: the ports sshd listens on (``facts.SshdPorts``)
    """
    return sorted({int(connected_port or 22), *listening})


def firewall_folders(cfg) -> list[Folder]:
    """Stage 1b: the ruleset's folder, when the firewall is on."""
    return [_root(layout.FIREWALL_RULES.rsplit("/", 1)[0])] if cfg.firewall else []


def firewall_unit() -> str:
    return f"{layout.SYSTEMD_DIR}/{layout.FIREWALL_UNIT}.service"


def firewall_files(cfg, ports: list[int] | tuple[int, ...]) -> list[File]:
    """Stage 1b: the ruleset (SSH on ``ports``) and its unit, when the firewall is on."""
    if not cfg.firewall:
        return []
    rules = render_with("firewall.nft.j2", cfg, ssh_ports=list(ports))
    unit = render_with("systemd/firewall.service.j2", cfg)
    return [
        File(layout.FIREWALL_RULES, rules, "root", "root", "644"),
        File(firewall_unit(), unit, "root", "root", "644"),
    ]


def absent_firewall_files(cfg) -> list[str]:
    """The firewall's files while it is off: the deploy removes them."""
    return [] if cfg.firewall else [firewall_unit(), layout.FIREWALL_RULES]


def folders(cfg) -> list[Folder]:
    """Every folder, in the order the stages create them."""
    ca = local_ca_folder(cfg)
    return [
        *system_folders(cfg),
        *firewall_folders(cfg),
        *config_folders(cfg),
        *([ca] if ca else []),
        *timer_folders(cfg),
    ]


def files(cfg, ports: list[int] | tuple[int, ...] = ()) -> list[File]:
    """Every file written whole, in the order the stages write them (``ports``: the firewall's SSH ports)."""
    nginx = nginx_file(cfg)
    hba = pg_hba_file(cfg)
    return [
        *firewall_files(cfg, ports),
        *([hba] if hba else []),
        compose_file(cfg),
        *([nginx] if nginx else []),
        *timer_files(cfg),
    ]


def data_folders(cfg) -> list[str]:
    """The data services' folders (the db major's, Redis's), in which only the mastodon uid may own files."""
    named = {"db": db_data_dir(cfg), "replica": replica_data_dir(cfg)}
    here = render_host_services(cfg)
    return [
        f"{layout.BASE_DIR}/{named[s.name]}" if s.name in named else s.host_data_dir
        for s in (*layout.SERVICES, *layout.CLUSTER_SERVICES)
        if s.tier == layout.DATA and s.host_data_dir and s.name in here
    ]


def acme_server(cfg) -> str | None:
    """The ACME directory the domain's certificate must come from; None for the local CA."""
    if cfg.certbot_local_ca:
        return None
    if cfg.acme_directory:
        return cfg.acme_directory
    return layout.LETS_ENCRYPT_STAGING if cfg.certbot_staging else layout.LETS_ENCRYPT


def converged_check(
    cfg, ports: list[int] | tuple[int, ...] = (), instance_secrets: dict | None = None
) -> tuple[tuple[str, ...], str]:
    """
    The arguments of ``facts.Converged`` for this host, and the env files' planned content for its
    stdin (it holds the overrides' values: send it withheld, never print it).

    + ports: the SSH ports the firewall keeps open (``ssh_ports``), when it is on
    + instance_secrets: the secrets of an instance on several hosts (``cluster_secrets``)
    """
    sql = (
        f"SELECT ({SEEDED_SQL}) AND {owner_exists_sql(cfg.admin_username)}, "
        f"{owner_never_signed_in_sql(cfg.admin_username)}"
    )
    envs = env_files(cfg, instance_secrets)
    jobs = cfg.cluster is None or cfg.host == cfg.cluster.jobs_host
    # "-": a host of an instance on several hosts without the proxy, the database's jobs, or with them but no web
    fixed = (
        layout.MANAGED_HEADER,
        layout.BASE_DIR,
        layout.NGINX_CONF_DIR,
        layout.nginx_conf(cfg.domain) if runs_proxy(cfg) else "-",
        layout.COMPOSE_MEMO,
        layout.MIGRATIONS_CACHE_DIR,
        sql if jobs else "-",
        layout.ADMIN_PASSWORD_FILE,
        cfg.domain,
        acme_server(cfg) or "none",
        " ".join((str(cfg.min_free_mb), *FREE_SPACE_PATHS)),
        str(len(envs)),
        cfg.web_image if jobs and "web" not in cfg.roles else "-",
    )
    items = [
        f"group {layout.MASTODON_GROUP} {layout.MASTODON_GID}",
        f"user {layout.MASTODON_USER} {layout.MASTODON_UID} {layout.MASTODON_GID} {layout.BASE_DIR} {USER_SHELL}",
        *(f"folder {f.path} {f.user} {f.group} {f.mode}" for f in folders(cfg)),
        *(f"envfile {e.path} {e.user} {e.group} {e.mode}" for e in envs),
        *(f"file {f.path} {f.sha256} {f.user} {f.group} {f.mode}" for f in files(cfg, ports)),
        *(
            f"absent {path}"
            for path in [*absent_firewall_files(cfg), *absent_config_files(cfg), *absent_timer_files(cfg)]
        ),
        *(f"timer {t.unit}.timer" for t in wanted_timers(cfg)),
        *([f"unit {layout.FIREWALL_UNIT}.service"] if cfg.firewall else []),
        *(f"data {path}" for path in data_folders(cfg)),
    ]
    payload = "".join(f"@@ENVFILE@@ {e.path}\n" + converged_payload(e.rendered, e.overrides) for e in envs)
    return (*fixed, *items), payload
