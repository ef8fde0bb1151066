"""
Checks made while pyinfra prepares, before any change on any host: the host's prerequisites and what
an earlier install left there. A problem raises ``DeployRefused`` (one line naming the host), so the
whole run stops and nothing changes anywhere.
"""

from __future__ import annotations

import re
from secrets import token_hex

from pyinfra import host, logger
from pyinfra.facts.server import Users, Which

from . import desired, layout, versions
from .envfile import Withheld
from .errors import DeployRefused
from .facts import (
    ComposeCommand,
    ComposeServices,
    Converged,
    DockerEngine,
    EnvFileKeys,
    ExistingInstance,
    FreeSpace,
    HostLock,
    MailDomain,
    OwnerAccount,
    PostgresReady,
    SshdPorts,
    UidGidOwners,
)

INSTALL_HINT = (
    "install Docker Engine and Compose v2 (Ubuntu: apt install docker.io docker-compose-v2; "
    "Debian 13: apt install docker.io docker-cli docker-compose; or docker-ce + docker-compose-plugin "
    "from Docker's own repository) and start the docker service"
)

# `docker compose --dry-run` (how the deploy tells which services are out of date) came in 2.19.
MIN_COMPOSE_VERSION = (2, 19)


def compose_is_recent(version: str) -> bool:
    """
    Whether a ``docker compose version --short`` string is at least ``MIN_COMPOSE_VERSION``.

    + version: e.g. ``2.26.1``, ``v2.29.7``, ``2.24.6+ds1-0ubuntu1~22.04.1``; one that cannot be
      read passes (the check is for known old releases, not for guessing)
    """
    match = re.match(r"v?(\d+)\.(\d+)", version.strip())
    if not match:
        return True
    return (int(match.group(1)), int(match.group(2))) >= MIN_COMPOSE_VERSION


def check_prerequisites(installing_docker: bool = False) -> None:
    """
    Refuse a host that lacks Docker or Compose v2, or whose uid/gid 991 belongs to another name.

    + installing_docker: this run installs Docker and Compose v2 from the archive first
      (``stages/docker.py``): their absence now is no reason to refuse
    """
    if not installing_docker:
        check_docker()
    check_uid_gid()


def check_docker() -> None:
    """Refuse a host whose Docker Engine does not answer, or that lacks a recent Compose v2."""
    if not host.get_fact(DockerEngine):
        raise DeployRefused(f"host '{host.name}': no Docker Engine answers: {INSTALL_HINT}")
    compose = host.get_fact(ComposeCommand)
    if not compose or compose["command"] != "docker compose":
        found = f"only {compose['command']} {compose['version']}" if compose else "no Compose"
        raise DeployRefused(
            f"host '{host.name}': Docker Compose v2 (`docker compose`) is required, found {found}: {INSTALL_HINT}"
        )
    if not compose_is_recent(compose["version"]):
        raise DeployRefused(
            f"host '{host.name}': Docker Compose {compose['version']} is too old, the deploy needs "
            f"{'.'.join(map(str, MIN_COMPOSE_VERSION))} or newer (for `docker compose --dry-run up`): "
            f"{INSTALL_HINT}"
        )


def check_uid_gid() -> None:
    """Refuse a host whose uid/gid 991 belongs to another name than ``mastodon``."""
    uid, gid, name = layout.MASTODON_UID, layout.MASTODON_GID, layout.MASTODON_USER
    owners = host.get_fact(UidGidOwners, uid=uid, gid=gid)
    if owners["user"] not in (None, name):
        raise DeployRefused(
            f"host '{host.name}': uid {uid} belongs to user '{owners['user']}', but the Mastodon "
            f"images run as uid {uid}: free it or rename that user to '{name}'"
        )
    if owners["group"] not in (None, layout.MASTODON_GROUP):
        raise DeployRefused(
            f"host '{host.name}': gid {gid} belongs to group '{owners['group']}', "
            f"but the Mastodon images run as gid {gid}: free it"
        )
    existing = (host.get_fact(Users) or {}).get(name)
    if existing and str(existing.get("uid")) != str(uid):
        raise DeployRefused(
            f"host '{host.name}': user '{name}' exists with uid {existing.get('uid')}, "
            f"the Mastodon images need uid {uid}"
        )


def check_existing_instance(cfg) -> dict:
    """
    Refuse what would silently break an instance already on the host: a new domain for it, or a
    database in upstream's layout that this deploy would not see. Returns the ``ExistingInstance``
    fact (the configuration stage removes stale server blocks).
    """
    existing = host.get_fact(
        ExistingInstance,
        project_dir=layout.BASE_DIR,
        nginx_conf_dir=layout.NGINX_CONF_DIR,
        data_dirs=desired.data_folders(cfg),
    )
    old = existing["local_domain"]
    if old is not None and old != cfg.domain:
        raise DeployRefused(
            f"host '{host.name}': mastodon_prefix, mastodon_server_id and mastodon_zone give the domain "
            f"'{cfg.domain}', but the instance on this host is '{old}' (LOCAL_DOMAIN in "
            f"{layout.ENV_PRODUCTION_FILE}); Mastodon cannot change its domain once it exists: "
            f"put the old values back, or remove {layout.BASE_DIR} (this deletes the instance) to start over"
        )
    if existing["upstream_pgdata"] or existing["foreign_owned"]:
        found = []
        if existing["upstream_pgdata"]:
            db_dir = layout.SERVICES_BY_NAME["db"].host_data_dir
            found.append(
                f"{db_dir} holds a PostgreSQL data directory in upstream's layout (this deploy keeps it in "
                f"{db_dir}/pgdata and would start an empty database)"
            )
        if existing["foreign_owned"]:
            found.append(
                f"{' and '.join(existing['foreign_owned'])} hold files not owned by uid {layout.MASTODON_UID} "
                "(upstream runs db as 70 and redis as 999; here both run as 991 and could not read them)"
            )
        raise DeployRefused(
            f"host '{host.name}': {'; '.join(found)}: adopt the instance first with "
            "`pyinfra INVENTORY pyinfra_mastodon.tasks.adopt_upstream` (add --dry to see what it would move "
            "and chown), with the old containers stopped, then run the deploy again"
        )
    return existing


_MAIL_DOMAIN_PROBLEMS = {
    "no-records": "has no MX and no A/AAAA record in DNS",
    "null-mx": "has a null MX record (it declares that it accepts no mail)",
    "no-answer": "could not be looked up: no DNS server of the host answered",
}


def check_owner_email(cfg, existing: dict) -> None:
    """
    Refuse an owner e-mail whose domain cannot receive mail, as Mastodon decides it when it creates
    the account (``email_mx_validator.rb``: DNS, not /etc/hosts); it would fail on every run. An
    owner account that already exists is not created again, so its address is not checked again.
    """
    domain = cfg.admin_email.rpartition("@")[2].lower()
    found = host.get_fact(MailDomain, domain=domain)
    if found["verdict"] == "unknown":
        logger.warning(
            f"{host.print_prefix}cannot check in DNS that {domain} receives mail ({found['detail']}); "
            "Mastodon checks it when it creates the owner account"
        )
        return
    if found["verdict"] != "unreachable":
        return
    if host.get_fact(OwnerAccount, project_dir=layout.BASE_DIR, username=cfg.admin_username) != "missing":
        return
    if existing["database"] and not host.get_fact(PostgresReady, project_dir=layout.BASE_DIR):
        logger.warning(
            f"{host.print_prefix}{domain} cannot receive mail according to DNS, and PostgreSQL is not running "
            "to say whether the owner account exists already; if it does not, creating it will fail"
        )
        return
    problem = _MAIL_DOMAIN_PROBLEMS.get(found["detail"], "cannot receive mail")
    raise DeployRefused(
        f"host '{host.name}': setting 'mastodon_admin_email': the domain {domain} {problem}, so "
        "Mastodon refuses the owner's address as unreachable (app/validators/email_mx_validator.rb, "
        "DNS only, /etc/hosts does not count): use an address at a domain that receives mail, or give "
        f"{domain} an MX or A record"
    )


# This run's id on every host: the lock is taken once per run, by whichever step asks first.
RUN_ID = token_hex(8)
# The hosts whose lock this run holds (or that cannot have one): asked once per host.
_LOCKED: set[str] = set()


def take_lock(cfg) -> None:
    """
    Take the host's lock for the whole run (``HostLock``), waiting at most ``mastodon_lock_timeout``;
    refuse when another run or a timer's job still holds it.
    """
    if host.name in _LOCKED:
        return
    lock = host.get_fact(HostLock, run_id=RUN_ID, timeout=cfg.lock_timeout, path=layout.LOCK_FILE)
    if lock["state"] == "busy":
        raise DeployRefused(
            f"host '{host.name}': another run holds the host since {lock['since']} (lock {layout.LOCK_FILE}, "
            f"waited {cfg.lock_timeout}s: mastodon_lock_timeout); run again when it has finished"
        )
    _LOCKED.add(host.name)
    if lock["state"] == "unsupported":
        logger.warning(f"{host.print_prefix}runs are not serialised on this host ({lock['reason']})")


def check_free_space(cfg) -> None:
    """Refuse a host whose instance, backup or Docker filesystem has less than ``mastodon_min_free_mb``."""
    free = host.get_fact(FreeSpace, paths=desired.FREE_SPACE_PATHS)
    short = [(path, mib) for path, mib in free.items() if mib < cfg.min_free_mb]
    if short:
        where = ", ".join(f"{path.removeprefix('docker:')} ({mib} MiB)" for path, mib in short)
        raise DeployRefused(
            f"host '{host.name}': setting 'mastodon_min_free_mb': less than {cfg.min_free_mb} MiB free on the "
            f"filesystem of {where}; a full disk breaks writes and dumps half-way: free space (old dumps in "
            f"{layout.BACKUP_DIR}, docker image prune) or lower mastodon_min_free_mb"
        )


def check_version_change(cfg) -> None:
    """Refuse a downgrade, or an upgrade Mastodon cannot make, of the version the instance runs."""
    web = (host.get_fact(ComposeServices, project=layout.COMPOSE_PROJECT) or {}).get("web")
    tag = versions.image_tag(web["image"]) if web and web.get("image") else None
    if tag is None:
        return
    problem = versions.refusal(tag, cfg.version, cfg.allow_patch_downgrade)
    if problem:
        raise DeployRefused(f"host '{host.name}': setting 'mastodon_version' {problem}")


def firewall_ports(cfg) -> list[int]:
    """The SSH ports the firewall keeps open (``desired.ssh_ports``); none asked while it is off."""
    if not cfg.firewall:
        return []
    return desired.ssh_ports(host.data.get("ssh_port"), host.get_fact(SshdPorts))


def converged(cfg, instance_secrets: dict | None = None) -> bool:
    """
    Whether the host is exactly as this deploy would leave it (``facts.Converged``: one command),
    so that the run has nothing to do. Anything else, or anything it cannot tell, means a full run.
    Takes the host's lock first, so that another run's changes are not half seen.
    """
    take_lock(cfg)
    args, payload = desired.converged_check(cfg, firewall_ports(cfg), instance_secrets)
    found = host.get_fact(Converged, args=args, _stdin=Withheld(payload))
    if not found["converged"]:
        what = f" {found['what']}" if found["what"] else ""
        logger.info(f"{host.print_prefix}not converged ({found['concern']}{what}): running every stage")
    return found["converged"]


def check_postgres_major(cfg) -> None:
    """
    Refuse a ``mastodon_postgres_image`` of another PostgreSQL major than the db container runs: the
    new server cannot read the old data folder, and the deploy would leave the instance without a
    database. A major upgrade is a dump and a restore (README, Upgrading PostgreSQL).
    """
    db = (host.get_fact(ComposeServices, project=layout.COMPOSE_PROJECT) or {}).get("db")
    running = versions.postgres_major(db["image"]) if db and db.get("image") else None
    wanted = versions.postgres_major(cfg.images["db"])
    if running is None or wanted is None or running == wanted:
        return
    raise DeployRefused(
        f"host '{host.name}': setting 'mastodon_postgres_image': {cfg.images['db']} is PostgreSQL {wanted}, but the "
        f"database on this host runs PostgreSQL {running} ({db['image']}), whose data folder a new major cannot read; "
        f"upgrade with `pyinfra INVENTORY pyinfra_mastodon.tasks.postgres_upgrade` (--dry first; README, Upgrading "
        f"PostgreSQL), or go back with pyinfra_mastodon.tasks.postgres_rollback, or put {db['image']} back"
    )


def check_restic(cfg) -> None:
    """Refuse a restic repository on a host without restic: every backup would fail at its copy."""
    if cfg.restic_repository and not host.get_fact(Which, command="restic"):
        raise DeployRefused(
            f"host '{host.name}': setting 'mastodon_restic_repository' is set, but restic is not installed on the "
            "host: apt install restic, or leave mastodon_restic_repository empty"
        )


def check_cluster_database(cfg, existing: dict) -> None:
    """
    Refuse to open a database made for a whole server to the instance's other hosts: it was created
    with trust authentication (``.env.db``), and PostgreSQL sets the password only when it makes a new
    database, so it would accept connections without one on the private address.
    """
    if cfg.cluster is None or "db" not in cfg.roles or not existing.get("database"):
        return
    found = host.get_fact(EnvFileKeys, path=layout.ENV_DB_FILE)
    if found and not found["keys"].get("POSTGRES_PASSWORD"):
        raise DeployRefused(
            f"host '{host.name}': setting 'mastodon_roles': the database on this host was made for a whole "
            f"server, with trust authentication ({layout.ENV_DB_FILE}), and would take connections without a "
            "password from the instance's other hosts: an existing instance cannot be spread over several "
            "hosts in place yet (README: Known limits)"
        )


def check(cfg, installing_docker: bool = False) -> dict:
    """
    Every check, in order, once the lock is held (``converged`` takes it); returns what
    ``check_existing_instance`` found.

    + installing_docker: this run installs Docker first (see ``check_prerequisites``)
    """
    check_prerequisites(installing_docker)
    take_lock(cfg)
    check_free_space(cfg)
    existing = check_existing_instance(cfg)
    check_cluster_database(cfg, existing)
    check_version_change(cfg)
    check_postgres_major(cfg)
    check_restic(cfg)
    if cfg.cluster is None or cfg.host == cfg.cluster.jobs_host:  # where the owner account is made
        check_owner_email(cfg, existing)
    return existing
