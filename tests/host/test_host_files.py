"""User, directories, files, modes and secret formats (SPEC §3, §5)."""

from __future__ import annotations

import re
import shlex

import pytest
from contract import (
    ADMIN_PASSWORD_FILE,
    BASE_DIR,
    COMPOSE_FILE,
    ENV_DB,
    ENV_PRODUCTION,
    LETSENCRYPT_DIR,
    MASTODON_UID,
    NGINX_CONF_DIR,
    PGDATA,
)
from host_helpers import count_matching_lines

# Mastodon's own generator formats (reference mastodon.md §3). Unquoted: Compose v1 keeps quotes verbatim.
SECRET_FORMATS = {
    "SECRET_KEY_BASE": r"[0-9a-f]{128}",  # rails secret = SecureRandom.hex(64)
    "OTP_SECRET": r"[0-9a-f]{128}",  # seed: "Rails secret generator"
    "VAPID_PRIVATE_KEY": r"([A-Za-z0-9_-]{43}=|[A-Za-z0-9_-]{42}==)",  # urlsafe b64 of the P-256 scalar
    "VAPID_PUBLIC_KEY": r"B[A-Za-z0-9_-]{86}=",  # urlsafe b64 of the 65-byte uncompressed point
    "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY": r"[A-Za-z0-9]{32}",
    "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT": r"[A-Za-z0-9]{32}",
    "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY": r"[A-Za-z0-9]{32}",
}


# Which hosts have what (a whole server has all of it): .env.production where the application or the
# database's jobs run, the media folder where web or sidekiq write, PgBouncer on app hosts without the db.
APPLICATION = pytest.mark.roles("web", "streaming", "sidekiq", "db")
MEDIA = pytest.mark.roles("web", "sidekiq")
PROXY = pytest.mark.roles("proxy")
# where the application reaches PostgreSQL through PgBouncer (render.pooled): where pgbouncer runs
POOLED = pytest.mark.services("pgbouncer")
REPLICA = (pytest.mark.cluster, pytest.mark.roles("db_replica"))


def test_mastodon_group(host):
    group = host.group("mastodon")
    assert group.exists, "group mastodon is missing"
    assert group.gid == MASTODON_UID, f"group mastodon has gid {group.gid}, expected {MASTODON_UID}"


def test_mastodon_user(host):
    user = host.user("mastodon")
    assert user.exists, "user mastodon is missing"
    assert user.uid == MASTODON_UID, f"user mastodon has uid {user.uid}, expected {MASTODON_UID}"
    assert user.gid == MASTODON_UID, f"user mastodon has primary gid {user.gid}, expected {MASTODON_UID}"
    assert user.group == "mastodon", f"user mastodon's primary group is {user.group}"
    assert user.home == BASE_DIR, f"user mastodon's home is {user.home}, expected {BASE_DIR}"


def test_uid_991_is_mastodon_only(host):
    out = host.check_output("getent passwd | awk -F: '$3 == 991 {print $1}'")
    assert out.split() == ["mastodon"], f"uid 991 belongs to {out.split()}, expected only mastodon"
    out = host.check_output("getent group | awk -F: '$3 == 991 {print $1}'")
    assert out.split() == ["mastodon"], f"gid 991 belongs to {out.split()}, expected only mastodon"


@pytest.mark.parametrize(
    "path, kind, owner, mode",
    [
        (BASE_DIR, "dir", "mastodon:mastodon", "0755"),
        pytest.param(ENV_DB, "file", "mastodon:mastodon", "0600", marks=pytest.mark.roles("db")),
        pytest.param(ENV_PRODUCTION, "file", "mastodon:mastodon", "0600", marks=APPLICATION),
        (COMPOSE_FILE, "file", "mastodon:mastodon", "0644"),
        pytest.param(f"{BASE_DIR}/postgres14", "dir", "mastodon:mastodon", "0755", marks=pytest.mark.roles("db")),
        pytest.param(f"{BASE_DIR}/redis", "dir", "mastodon:mastodon", "0755", marks=pytest.mark.roles("redis")),
        pytest.param(f"{BASE_DIR}/public/system", "dir", "mastodon:mastodon", "0755", marks=MEDIA),
        pytest.param(f"{NGINX_CONF_DIR}/{{domain}}.conf", "file", "root:root", "0644", marks=PROXY),
        pytest.param(ADMIN_PASSWORD_FILE, "file", "root:root", "0600", marks=pytest.mark.roles("db")),
        pytest.param(f"{BASE_DIR}/.env.pgbouncer", "file", "mastodon:mastodon", "0600", marks=POOLED),
        pytest.param(f"{BASE_DIR}/.env.replica", "file", "mastodon:mastodon", "0600", marks=REPLICA),
        pytest.param(
            f"{BASE_DIR}/postgres14-replica", "dir", "mastodon:mastodon", "0755", marks=pytest.mark.roles("db_replica")
        ),
    ],
)
def test_path_owner_and_mode(host, domain, path, kind, owner, mode):
    path = path.format(domain=domain)
    f = host.file(path)
    assert f.exists, f"{path} is missing"
    if kind == "dir":
        assert f.is_directory and not f.is_symlink, f"{path} is not a directory"
    else:
        assert f.is_file and not f.is_symlink, f"{path} is not a regular file"
    actual_owner = f"{f.user}:{f.group}"
    assert actual_owner == owner, f"{path} is owned by {actual_owner}, expected {owner}"
    assert f"{f.mode:04o}" == mode, f"{path} has mode {f.mode:04o}, expected {mode}"


@pytest.mark.roles("db")
def test_postgres_data_dir_lives_below_postgres14(host):
    """SPEC §3: PGDATA in a subfolder so that the entrypoint's chmod 0700 does not flap postgres14."""
    pgdata = host.file(PGDATA)
    assert pgdata.is_directory, f"{PGDATA} (PGDATA) is missing"
    assert pgdata.uid == MASTODON_UID, f"PGDATA is owned by uid {pgdata.uid}, expected {MASTODON_UID}"
    assert host.file(f"{PGDATA}/PG_VERSION").is_file, "PGDATA holds no cluster"


@pytest.mark.parametrize(
    "sub",
    [
        pytest.param("postgres14", marks=pytest.mark.roles("db")),
        pytest.param("redis", marks=pytest.mark.roles("redis")),
        pytest.param("public/system", marks=MEDIA),
        pytest.param("postgres14-replica", marks=REPLICA),
    ],
)
def test_data_dirs_owned_by_991_recursively(host, sub):
    """No container re-chowned its data dir to another uid (db, redis and uploads run as 991)."""
    result = host.run(
        f"find {BASE_DIR}/{sub} \\( ! -uid {MASTODON_UID} -o ! -gid {MASTODON_UID} \\) -printf '%p\\n' | head -5"
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "", f"files below {BASE_DIR}/{sub} not owned by 991:991: {result.stdout.split()}"


@pytest.mark.roles("proxy")
def test_certificates(host, domain):
    live = f"{LETSENCRYPT_DIR}/live/{domain}"
    assert host.file(live).is_directory, f"{live}/ is missing"
    for name in ("fullchain.pem", "privkey.pem"):
        f = host.file(f"{live}/{name}")  # symlinks into ../../archive: `exists` follows them
        assert f.exists, f"{live}/{name} is missing"
        assert host.run(f"test -s {shlex.quote(f'{live}/{name}')}").rc == 0, f"{live}/{name} is empty"


@pytest.mark.roles("proxy")
def test_certificate_is_for_domain(host, domain):
    result = host.run(
        f"openssl x509 -noout -checkhost {shlex.quote(domain)} -in {LETSENCRYPT_DIR}/live/{domain}/fullchain.pem"
    )
    if result.rc == 127:
        pytest.skip("openssl is not installed on the host")
    assert result.rc == 0 and "does match" in result.stdout, (
        f"certificate does not cover {domain}: {result.stdout.strip()} {result.stderr.strip()}"
    )


@APPLICATION
def test_env_production_local_domain(host, domain):
    n = count_matching_lines(host, ENV_PRODUCTION, f"^LOCAL_DOMAIN={re.escape(domain)}$")
    assert n == 1, f"{ENV_PRODUCTION}: {n} line(s) 'LOCAL_DOMAIN={domain}', expected exactly 1"


@pytest.mark.whole_server
@pytest.mark.parametrize("key, value", [("DB_HOST", "db"), ("REDIS_HOST", "redis")])
def test_env_production_service_hosts(host, key, value):
    n = count_matching_lines(host, ENV_PRODUCTION, f"^{key}={value}$")
    assert n == 1, f"{ENV_PRODUCTION}: {n} line(s) '{key}={value}', expected exactly 1"


@APPLICATION
@pytest.mark.parametrize("key", sorted(SECRET_FORMATS))
def test_env_production_secret_present_and_well_formed(host, key):
    # Only counts leave the host: a failure message cannot contain the secret.
    defined = count_matching_lines(host, ENV_PRODUCTION, f"^{key}=")
    assert defined == 1, f"{ENV_PRODUCTION}: {key} is defined {defined} time(s), expected exactly 1"
    well_formed = count_matching_lines(host, ENV_PRODUCTION, f"^{key}={SECRET_FORMATS[key]}$")
    assert well_formed == 1, f"{ENV_PRODUCTION}: {key} is empty or not in Mastodon's format (value not shown)"


@APPLICATION
def test_env_production_secrets_distinct(host):
    """Every generated secret is its own random value (no copy-paste of one value into several keys)."""
    keys = "|".join(SECRET_FORMATS)
    out = host.check_output(f"grep -E '^({keys})=' {ENV_PRODUCTION} | cut -d= -f2- | sort | uniq -d | wc -l")
    assert out.strip() == "0", "two or more secrets in .env.production share the same value (values not shown)"


@APPLICATION
def test_env_production_does_not_skip_post_deployment_migrations(host):
    """The variable's mere presence skips post-deploy migrations (mastodon.md §4.1)."""
    n = count_matching_lines(host, ENV_PRODUCTION, "^[[:space:]]*SKIP_POST_DEPLOYMENT_MIGRATIONS")
    assert n == 0, f"{ENV_PRODUCTION} sets SKIP_POST_DEPLOYMENT_MIGRATIONS: post-deploy migrations would never run"


@pytest.mark.roles("db")
def test_env_db(host):
    assert host.file(ENV_DB).size > 0, f"{ENV_DB} is empty"


def test_compose_file(host):
    compose = host.file(COMPOSE_FILE)
    assert compose.contains("^name: *[\"']\\?mastodon[\"']\\? *$"), (
        "docker-compose.yml has no top-level `name: mastodon`"
    )
    assert not compose.contains("mastodon[a-z-]*:latest"), "docker-compose.yml runs Mastodon from a `latest` tag"
    for secret in SECRET_FORMATS:
        assert not compose.contains(f"{secret}="), f"docker-compose.yml (mode 0644) contains {secret}"


@pytest.mark.roles("db")
def test_admin_password_file(host):
    f = host.file(ADMIN_PASSWORD_FILE)
    assert f.is_file, f"{ADMIN_PASSWORD_FILE} is missing"
    assert f.size > 0, f"{ADMIN_PASSWORD_FILE} is empty"
    # mode/owner: test_path_owner_and_mode
