"""What the tests hold the deploy to on a host: paths, names, keys. One module for tests/e2e and tests/host.

The product's fixed facts (paths, the mastodon user, the compose services, the secret keys) are read
from ``pyinfra_mastodon.layout`` and ``pyinfra_mastodon.secrets``, never spelt again here; what only
the tests know (the sandbox's domain, the stand-in versions, the key groups the scanners look for)
is defined below. Importable as ``contract`` (``pythonpath = ["tests"]`` in pyproject's pytest config).
"""

from __future__ import annotations

from pyinfra_mastodon.layout import (
    ADMIN_PASSWORD_FILE,
    APP,
    BACKUP_DIR,
    BASE_DIR,
    CLUSTER_SERVICES,
    COMPOSE_FILE,
    COMPOSE_PROJECT,
    DATA,
    LETSENCRYPT_DIR,
    LOCAL_CA_DIR,
    LOCK_FILE,
    MASTODON_GID,
    MASTODON_UID,
    NGINX_CONF_DIR,
    NGINX_DATA_DIR,
    PROXY,
    SERVICES,
    nginx_conf,
    service_names,
)
from pyinfra_mastodon.layout import ENV_DB_FILE as ENV_DB
from pyinfra_mastodon.layout import ENV_PRODUCTION_FILE as ENV_PRODUCTION
from pyinfra_mastodon.secrets import SECRET_KEYS

__all__ = [
    "ADMIN_PASSWORD_FILE",
    "APP_SERVICES",
    "BACKUP_DIR",
    "BASE_DIR",
    "CA_CERT",
    "CLUSTER_SERVICE_NAMES",
    "COMPOSE_FILE",
    "COMPOSE_PROJECT",
    "DATA_SERVICES",
    "DEFAULT_VERSION",
    "DOMAIN",
    "ENV_DB",
    "ENV_PRODUCTION",
    "EXTERNAL_NETWORK",
    "HEALTHCHECKED",
    "INTERNAL_NETWORK",
    "LETSENCRYPT_DIR",
    "LOCAL_CA_DIR",
    "LOCK_FILE",
    "MASTODON_GID",
    "MASTODON_UID",
    "NGINX_CONF_DIR",
    "NGINX_DATA_DIR",
    "OTHER_SECRET_KEYS",
    "PGDATA",
    "PREVIOUS_VERSION",
    "PRIVATE_KEYS",
    "SECRET_FILES",
    "SECRET_KEYS",
    "SERVICE_NAMES",
    "STATEFUL_SERVICES",
    "container_name",
    "nginx_conf",
]

# ------------------------------------------------------------------------------------- services

SERVICE_NAMES: tuple[str, ...] = service_names()  # nginx, db, redis, web, streaming, sidekiq
APP_SERVICES: tuple[str, ...] = service_names(APP)  # web, streaming, sidekiq
DATA_SERVICES: tuple[str, ...] = service_names(DATA)  # db, redis
STATEFUL_SERVICES: tuple[str, ...] = tuple(s.name for s in SERVICES if s.tier != APP)
# every service but the proxy has a compose healthcheck (the nginx-certbot image has none)
HEALTHCHECKED: tuple[str, ...] = tuple(s.name for s in SERVICES if s.tier != PROXY)
# only on hosts of an instance on several hosts: the read replica, PgBouncer (both health-checked)
CLUSTER_SERVICE_NAMES: tuple[str, ...] = tuple(s.name for s in CLUSTER_SERVICES)
INTERNAL_NETWORK = f"{COMPOSE_PROJECT}_internal_network"
EXTERNAL_NETWORK = f"{COMPOSE_PROJECT}_external_network"


def container_name(service: str) -> str:
    """The container compose runs for SERVICE: ``mastodon-SERVICE-1``."""
    return f"{COMPOSE_PROJECT}-{service}-1"


# --------------------------------------------------------------------------------------- paths

PGDATA = f"{BASE_DIR}/postgres14/pgdata"  # the db service's data dir, as seen on the host
CA_CERT = f"{LOCAL_CA_DIR}/caCert.pem"  # the local CA of nginx-certbot (mastodon_certbot_local_ca)
SECRET_FILES: tuple[str, ...] = (ENV_PRODUCTION, ENV_DB, ADMIN_PASSWORD_FILE)

# --------------------------------------------------------------------------------------- secrets

# values that must never appear in any output (VAPID_PUBLIC_KEY is public)
PRIVATE_KEYS: tuple[str, ...] = tuple(k for k in SECRET_KEYS if k != "VAPID_PUBLIC_KEY")
# other secret lines of the env files (database, SMTP and Redis passwords, when set)
OTHER_SECRET_KEYS: tuple[str, ...] = ("DB_PASS", "POSTGRES_PASSWORD", "SMTP_PASSWORD", "REDIS_PASSWORD")

# ----------------------------------------------------------------------------------- the sandbox

DOMAIN = "social1.sandbox.test"  # inventories/sandbox.py: social + 1 + sandbox.test
DEFAULT_VERSION = "4.6.5"  # the default mastodon_version, v4.6.5
PREVIOUS_VERSION = "4.6.4"  # the other stand-in tag


# One instance over four hosts, as inventories/sandbox_cluster.py spreads it (the sandbox cluster's
# private addresses): the db host with Redis, two app hosts, the edge proxy. The second app host's
# Sidekiq leaves the scheduler queue to the first (exactly one may work it).
CLUSTER_QUEUES_WITHOUT_SCHEDULER = ["default,8", "push,6", "ingress,4", "mailers,2", "pull", "fasp"]
CLUSTER_ROLES = {
    "db": {"mastodon_roles": ["db", "redis"], "mastodon_private_address": "10.213.0.11", "mastodon_firewall": True},
    "app1": {
        "mastodon_roles": ["web", "streaming", "sidekiq"],
        "mastodon_private_address": "10.213.0.21",
        "mastodon_firewall": True,
    },
    "app2": {
        "mastodon_roles": ["web", "streaming", "sidekiq"],
        "mastodon_private_address": "10.213.0.22",
        "mastodon_firewall": True,
        "mastodon_sidekiq_queues": CLUSTER_QUEUES_WITHOUT_SCHEDULER,
    },
    "edge": {"mastodon_roles": ["proxy"], "mastodon_private_address": "10.213.0.31", "mastodon_firewall": True},
}
