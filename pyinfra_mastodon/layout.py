"""
Where everything lives on a host, and which services make an instance: the one place that knows.

Paths, the ``mastodon`` user and the compose project are fixed facts (not settings): upstream's images
run as uid 991, and one instance per server keeps every path predictable for operators and backups.

Each compose service is a ``Service`` record. The templates, the stages, the facts, the operator
tasks and the tests read ``SERVICES`` instead of spelling service names, so adding a service means
a record here, its block in ``templates/docker-compose.yml.j2`` and its image setting.
"""

from __future__ import annotations

from dataclasses import dataclass

# The mastodon user: the uid and gid the Mastodon images run as (upstream's Dockerfile, UID/GID 991).
MASTODON_USER = "mastodon"
MASTODON_GROUP = "mastodon"
MASTODON_UID = 991
MASTODON_GID = 991

# The instance: /opt/mastodon is the compose project directory and the user's home.
BASE_DIR = "/opt/mastodon"
COMPOSE_PROJECT = "mastodon"
COMPOSE_FILE = f"{BASE_DIR}/docker-compose.yml"
ENV_DB_FILE = f"{BASE_DIR}/.env.db"
ENV_PRODUCTION_FILE = f"{BASE_DIR}/.env.production"

# The database, inside the compose project (internal network, trust auth as upstream's compose file).
DB_NAME = "postgres"
DB_USER = "postgres"
# Readiness is asked over TCP, as Rails connects: on a first start the image's entrypoint runs a
# temporary server on the Unix socket only, which a socket probe would take for the real one.
DB_READY_HOST = "127.0.0.1"
# The real data dir lives below the bind mount, so PostgreSQL's 0700 never fights postgres14's 0755.
PGDATA_CONTAINER = "/var/lib/postgresql/data/pgdata"

# The proxy: the jonasal/nginx-certbot image reads server blocks from user_conf.d.
NGINX_DATA_DIR = "/data/nginx"
NGINX_CONF_DIR = f"{NGINX_DATA_DIR}/user_conf.d"
LETSENCRYPT_DIR = "/etc/letsencrypt"
LOCAL_CA_DIR = f"{NGINX_DATA_DIR}/local_ca"
# Where the nginx container finds the CA of a private ACME server (mastodon_acme_ca_bundle).
ACME_CA_CONTAINER = "/etc/pyinfra-mastodon/acme-ca.pem"
# The ACME directories the image uses by default (run_certbot.sh), for telling who issued a certificate.
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"

# The migration versions each Mastodon image carries, read once per image id (no Rails boot after).
MIGRATIONS_CACHE_DIR = "/var/cache/pyinfra-mastodon/migrations"
# What Compose compared when its dry run last found every service up to date (sh/compose-memo.sh):
# a digest made from the env files too, so root only. No dry run while it still holds.
COMPOSE_MEMO = "/var/cache/pyinfra-mastodon/compose-up-to-date"

# Root-only files the deploy leaves for the operator.
ADMIN_PASSWORD_FILE = "/root/mastodon-admin-password"
# The backups (tasks.backup, the backup timer) and the dumps taken before upgrades, root only (0700).
BACKUP_DIR = "/var/backups/mastodon"
# A backup is a folder of BACKUP_DIR named by its time, UTC (sh/backup.sh).
BACKUP_NAME_RE = r"^[0-9]{8}T[0-9]{6}Z$"
# Where each backup is also copied to, when mastodon_restic_repository is set: the repository and its
# password, root only, read by sh/backup.sh.
RESTIC_ENV_FILE = "/etc/pyinfra-mastodon/restic.env"

# One lock per host for every run that changes it: deploys, operator tasks, the timers' jobs (flock).
# Its ".owner" file says which run holds it and since when (no secret in either).
LOCK_FILE = "/run/lock/mastodon-deploy.lock"

# First line of every file the deploy writes: how it tells its own nginx server blocks from others.
MANAGED_HEADER = "# Managed by pyinfra-mastodon"

# Tiers: when a service is started or restarted in a deploy.
DATA = "data"  # started first, alone: the application waits for its migrations
APP = "app"  # the Mastodon code: recreated on a new version, restarted after migrations or the seed
PROXY = "proxy"  # nginx + certbot: reloaded when its server block changes


@dataclass(frozen=True)
class Service:
    """
    One compose service of the instance.

    + name: the compose service name (container ``mastodon-<name>-1``)
    + image_setting: the setting that holds its image reference
    + role: the part of Mastodon it plays (what a host runs, by role)
    + tier: ``DATA``, ``APP`` or ``PROXY``: when the deploy starts or restarts it
    + data_dir: its host folder below ``BASE_DIR`` (owned by the mastodon user), or None
    + mount: where ``data_dir`` is mounted in the container
    """

    name: str
    image_setting: str
    role: str
    tier: str
    data_dir: str | None = None
    mount: str | None = None

    @property
    def host_data_dir(self) -> str | None:
        """The absolute host path of ``data_dir``."""
        return f"{BASE_DIR}/{self.data_dir}" if self.data_dir else None


# The uploaded media: web writes them, sidekiq processes them, both see the same folder.
MEDIA = {"data_dir": "public/system", "mount": "/mastodon/public/system"}

# In the order `status` lists them.
SERVICES: tuple[Service, ...] = (
    Service("nginx", "mastodon_nginx_image", role="proxy", tier=PROXY),
    Service(
        "db",
        "mastodon_postgres_image",
        role="db",
        tier=DATA,
        data_dir="postgres14",
        mount="/var/lib/postgresql/data",
    ),
    Service("redis", "mastodon_redis_image", role="redis", tier=DATA, data_dir="redis", mount="/data"),
    Service("web", "mastodon_web_image", role="web", tier=APP, **MEDIA),
    Service("streaming", "mastodon_streaming_image", role="streaming", tier=APP),
    Service("sidekiq", "mastodon_web_image", role="sidekiq", tier=APP, **MEDIA),
)
# Only on hosts of an instance on several hosts, never on a whole server (render.host_services says
# where): the streaming read replica of the db host's PostgreSQL, and PgBouncer in front of PostgreSQL
# on the hosts that run the application without the database (upstream's scaling guide).
CLUSTER_SERVICES: tuple[Service, ...] = (
    Service(
        "replica",
        "mastodon_postgres_image",
        role="db_replica",
        tier=DATA,
        data_dir="postgres14-replica",
        mount="/var/lib/postgresql/data",
    ),
    Service("pgbouncer", "mastodon_pgbouncer_image", role="pgbouncer", tier=DATA),
)
SERVICES_BY_NAME: dict[str, Service] = {service.name: service for service in (*SERVICES, *CLUSTER_SERVICES)}

# What a host of an instance runs (mastodon_roles). A single server runs SINGLE_SERVER_ROLES, the
# default; hosts with one domain are one instance, whose roles are spread over them (instance.py).
# db_replica: a streaming read replica of the db host's PostgreSQL (upstream's REPLICA_DB_*).
ROLES: tuple[str, ...] = ("db", "db_replica", "redis", "web", "streaming", "sidekiq", "proxy")
SINGLE_SERVER_ROLES: tuple[str, ...] = tuple(role for role in ROLES if role in {s.role for s in SERVICES})
# A host of an instance on several hosts runs PgBouncer when it runs these without the database.
POOLED_ROLES: tuple[str, ...] = ("web", "streaming", "sidekiq")
# Roles whose service another host of the instance connects to: such a host needs a private address.
SERVED_ROLES: tuple[str, ...] = ("db", "db_replica", "redis", "web", "streaming")

# Upstream's Sidekiq queues and weights (config/sidekiq.yml at v4.6.5), the queues that
# `bundle exec sidekiq` listens to when no list is given. The scheduler queue runs the periodic
# jobs (`listened_queues_only: true`): exactly one Sidekiq of an instance may listen to it, and a
# queue no process listens to stops that part of the instance (mastodon#20710: ingress, federation).
SIDEKIQ_QUEUES: tuple[tuple[str, int | None], ...] = (
    ("default", 8),
    ("push", 6),
    ("ingress", 4),
    ("mailers", 2),
    ("pull", None),
    ("scheduler", None),
    ("fasp", None),
)
SIDEKIQ_SCHEDULER_QUEUE = "scheduler"


@dataclass(frozen=True)
class Timer:
    """
    One maintenance job, run on the host by a systemd timer under the host's lock, so that it never
    overlaps a deploy (nor a deploy it). Turned on by ``mastodon_<name>_timer``, scheduled by
    ``mastodon_<name>_schedule`` (systemd ``OnCalendar``); both settings are made from this record.

    + name: units ``mastodon-<name>.service`` and ``.timer``, with ``_`` for ``-`` in setting names
    + command: the ``tootctl`` words; ``{name}`` is replaced by that setting's value (short name)
    + schedule: the default schedule
    + doc: what it does, for the settings' docs and the unit's Description
    + script: instead of tootctl, the script ``sh/<script>.sh``, installed next to ``JOB_RUNNER``;
      ``command`` then holds its arguments after the fixed ones (``commands.job_script``)
    """

    name: str
    command: str
    schedule: str
    doc: str
    script: str | None = None

    @property
    def unit(self) -> str:
        return f"mastodon-{self.name}"

    @property
    def setting(self) -> str:
        return f"mastodon_{self.name.replace('-', '_')}_timer"

    @property
    def schedule_setting(self) -> str:
        return f"mastodon_{self.name.replace('-', '_')}_schedule"


# Upstream's cleanups (tootctl media / preview_cards remove), and the backup; off unless turned on.
TIMERS: tuple[Timer, ...] = (
    Timer(
        "media-remove",
        "media remove --days {media_remove_days}",
        "*-*-* 03:30:00",
        "remove cached remote media older than mastodon_media_remove_days",
    ),
    Timer(
        "preview-cards-remove",
        "preview_cards remove --days {preview_cards_remove_days}",
        "Sun *-*-* 04:30:00",
        "remove preview cards older than mastodon_preview_cards_remove_days",
    ),
    Timer(
        "backup",
        "{min_free_mb} {backup_keep_daily} {backup_keep_weekly}",
        "*-*-* 02:30:00",
        "back up the database, env files and media into /var/backups/mastodon, then apply the retention",
        script="backup",
    ),
)
# Docker Engine and Compose v2 from the distribution's own archive (mastodon_install_docker), per
# (distribution, release): the engine's packages (Debian 13 ships the CLI apart, as a recommendation
# the deploy does not install) and the Compose v2 package. Debian 12's archive has no Compose v2: its
# package comes from Debian 13 (trixie), pinned so that nothing else does (DOCKER_COMPOSE_PIN).
DOCKER_SERVICE = "docker"
DOCKER_FROM_ARCHIVE: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("Ubuntu", "22.04"): (("docker.io",), "docker-compose-v2"),
    ("Ubuntu", "24.04"): (("docker.io",), "docker-compose-v2"),
    ("Debian", "12"): (("docker.io",), "docker-compose"),
    ("Debian", "13"): (("docker.io", "docker-cli"), "docker-compose"),
}
# Any of these installed means a Docker the deploy did not install from the archive: left alone.
DOCKER_FOREIGN_PACKAGES = ("docker-ce", "docker-ce-cli", "docker-compose-plugin", "moby-engine", "moby-cli")
DOCKER_COMPOSE_PIN = {
    "release": ("Debian", "12"),
    "suite": "trixie",
    "package": "docker-compose",
    "sources_file": "/etc/apt/sources.list.d/pyinfra-mastodon-compose.sources",
    "preferences_file": "/etc/apt/preferences.d/pyinfra-mastodon-compose",
    "keyring": "/usr/share/keyrings/debian-archive-keyring.gpg",
}
# The opt-in firewall (mastodon_firewall): one nftables table of its own, never `flush ruleset`,
# so Docker's tables and chains stay as Docker made them. Loaded by its own unit (Debian's
# nftables.service would load /etc/nftables.conf, whose default flushes every table).
FIREWALL_TABLE = "inet mastodon_firewall"
FIREWALL_RULES = "/etc/pyinfra-mastodon/firewall.nft"
FIREWALL_UNIT = "mastodon-firewall"
FIREWALL_PACKAGE = "nftables"
NFT = "/usr/sbin/nft"
# besides SSH: Let's Encrypt's HTTP-01 on 80, the instance on 443
FIREWALL_OPEN_PORTS = (80, 443)
SYSTEMD_DIR = "/etc/systemd/system"
# What the timers run: takes the host's lock, then the job (sh/run-job.sh).
JOB_RUNNER = "/usr/local/lib/pyinfra-mastodon/run-job"


def service_names(tier: str | None = None, roles: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """
    The names of the services, of one tier or all, in ``SERVICES`` order.

    + roles: only those a host with these roles runs (``mastodon_roles``); None: every service
    """
    return tuple(s.name for s in SERVICES if (tier is None or s.tier == tier) and (roles is None or s.role in roles))


# An instance on several hosts: the one-off jobs that need the database (migrations, seed, owner
# account, tootctl) run on its db host, in a container of the web service defined there under this
# compose profile, so `up` never starts it (`docker compose run` does).
JOBS_PROFILE = "jobs"
# The instance's secrets when it spreads over several hosts: the ones in .env.production on the db
# host are the authoritative copy (the other hosts get the same values from it); the passwords of
# PostgreSQL and Redis are among them.
CLUSTER_SECRET_KEYS: tuple[str, ...] = ("DB_PASS", "REDIS_PASSWORD")
# The application's read replica (upstream's config/database.yml, REPLICA_DB_*): its password is the
# primary's (a physical copy has the primary's roles), written from DB_PASS.
REPLICA_SECRET_KEY = "REPLICA_DB_PASS"
ENV_REDIS_FILE = f"{BASE_DIR}/.env.redis"
# The replica's settings (PGDATA, and the password it clones and streams with, as libpq's PGPASSWORD).
ENV_REPLICA_FILE = f"{BASE_DIR}/.env.replica"
# PgBouncer's (the image's variables: where PostgreSQL is, its user and password, the pool).
ENV_PGBOUNCER_FILE = f"{BASE_DIR}/.env.pgbouncer"
# The primary's client authentication when the instance has a read replica: the lines the image's
# entrypoint writes, and replication connections with the password (`all` does not match them).
PG_HBA_FILE = f"{BASE_DIR}/pg_hba.conf"
PG_HBA_CONTAINER = "/etc/pyinfra-mastodon/pg_hba.conf"
# The replica's physical replication slot on the primary: the primary keeps the WAL the replica
# has not received yet, so a replica that was away catches up instead of needing a new copy.
REPLICA_SLOT = "mastodon_replica"
# PostgreSQL's max_connections in the db image (its default), and what of it no PgBouncer pool may
# take: superuser_reserved_connections (3) and room for the db host's application, the one-off jobs
# (migrations, tootctl), backups and status (instance._pools_fit).
POSTGRES_MAX_CONNECTIONS = 100
POSTGRES_CONNECTIONS_KEPT = 20
# The proxy of an instance on several hosts leaves a web or streaming host that failed once out for
# this long (nginx's fail_timeout). A rolling restart waits as long after each host is healthy
# again, so that the proxy has taken it back before the next host goes down: with both out at once,
# nginx would answer 502 ("no live upstreams").
PROXY_FAIL_TIMEOUT = 5
# Where PostgreSQL and Redis, web and streaming listen for the instance's other hosts.
SERVICE_PORTS: dict[str, int] = {"db": 5432, "replica": 5432, "redis": 6379, "web": 3000, "streaming": 4000}
# Where PgBouncer listens inside its compose network (the image's LISTEN_PORT default).
PGBOUNCER_PORT = 5432


# PostgreSQL's data folder is named by its major (a new major cannot read an old one's data, so an
# upgrade restores into a folder of its own and leaves the old one for a rollback): postgres14 for
# the default image, and for an image whose tag names no major.
DEFAULT_POSTGRES_MAJOR = 14


def db_data_dir(major: int | None) -> str:
    """The db service's data folder below ``BASE_DIR`` for a PostgreSQL major: ``postgres17``."""
    return f"postgres{major or DEFAULT_POSTGRES_MAJOR}"


def replica_data_dir(major: int | None) -> str:
    """The replica service's data folder below ``BASE_DIR`` for a PostgreSQL major: ``postgres14-replica``."""
    return f"{db_data_dir(major)}-replica"


def data_dirs(db_dir: str | None = None, services: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """
    Every folder the mastodon user owns, parents first: ``BASE_DIR`` and each service's data dir
    with its parents (``public`` before ``public/system``), each once.

    + db_dir: the db service's data folder, when not the default (``db_data_dir``)
    + services: only these services' folders (the services a host runs); None: every service's
    """
    out: list[str] = [BASE_DIR]
    for service in (*SERVICES, *(CLUSTER_SERVICES if services is not None else ())):
        if not service.data_dir or (services is not None and service.name not in services):
            continue
        data_dir = service.data_dir
        if db_dir and service.name == "db":
            data_dir = db_dir
        elif db_dir and service.name == "replica":
            data_dir = f"{db_dir}-replica"
        parts = data_dir.split("/")
        for depth in range(1, len(parts) + 1):
            path = f"{BASE_DIR}/{'/'.join(parts[:depth])}"
            if path not in out:
                out.append(path)
    return tuple(out)


def data_tier_dirs() -> tuple[str, ...]:
    """The host folders of the data services (PostgreSQL's and Redis's), which only the mastodon uid may own."""
    return tuple(s.host_data_dir for s in SERVICES if s.tier == DATA and s.host_data_dir)


def proxy_dirs() -> tuple[str, ...]:
    """The folders of the nginx-certbot proxy on the host, owned by root."""
    return (NGINX_DATA_DIR, NGINX_CONF_DIR, LETSENCRYPT_DIR)


def nginx_conf(domain: str) -> str:
    """The server block of one domain."""
    return f"{NGINX_CONF_DIR}/{domain}.conf"
