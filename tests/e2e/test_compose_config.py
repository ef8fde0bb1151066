"""The rendered compose file, for several settings, through the real `docker compose config`.

The unit tests check the file's structure with a YAML parser; only Compose itself can say that it
accepts the file (schema, interpolation, env_file, networks). The sandbox has Compose v2, the
machine running the tests may not, so each variant is rendered here and checked on the sandbox, in
a scratch project directory with empty env files (nothing is deployed, nothing is started).
"""

from __future__ import annotations

import base64
import shlex

import pytest

from pyinfra_mastodon import settings
from pyinfra_mastodon.render import render

pytestmark = pytest.mark.e2e

BASE = {
    "mastodon_server_id": "7",
    "mastodon_zone": "example.org",
    "mastodon_admin_email": "admin@example.org",
}

VARIANTS = {
    "defaults": {},
    "local-ca": {"mastodon_certbot_local_ca": True},
    "staging": {"mastodon_certbot_staging": True},
    "acme-directory": {
        "mastodon_acme_directory": "https://acme.sandbox.test:14000/dir",
        "mastodon_acme_ca_bundle": "/etc/pebble/acme-ca.pem",
    },
    "pinned-version": {"mastodon_version": "v4.5.3"},
    "mirror-images": {
        "mastodon_postgres_image": "registry.example.org:5000/mirror/postgres:14-alpine",
        "mastodon_redis_image": "registry.example.org:5000/mirror/redis:7-alpine",
    },
    "extra-env": {"mastodon_extra_env": {"S3_ENABLED": True, "S3_BUCKET": "media", "DEFAULT_LOCALE": "de"}},
    "sidekiq-tuned": {
        "mastodon_sidekiq_concurrency": 25,
        "mastodon_sidekiq_queues": ["default,8", "push", "ingress", "mailers", "pull", "scheduler", "fasp"],
    },
}

SCRATCH = "/tmp/pyinfra-mastodon-compose-check"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_compose_accepts_the_rendered_file(sandbox, variant):
    cfg = settings.load_config("web7", {**BASE, **VARIANTS[variant]})
    compose_file = base64.b64encode(render("docker-compose.yml.j2", cfg).encode()).decode()
    project = f"{SCRATCH}/{variant}"
    script = (
        f"rm -rf {project} && mkdir -p {project} && cd {project} && "
        ": > .env.production && : > .env.db && "
        f"echo {compose_file} | base64 -d > docker-compose.yml && "
        "docker compose --project-directory . -f docker-compose.yml config --quiet; rc=$?; "
        f"rm -rf {project}; exit $rc"
    )
    result = sandbox.ssh(f"sh -c {shlex.quote(script)}")
    assert result.returncode == 0, f"docker compose config rejects the '{variant}' file:\n{result.stderr[-2000:]}"


def test_compose_rejects_a_broken_file(sandbox):
    """The check above can fail: a service without image or build is refused by the same command."""
    broken = base64.b64encode(b"services:\n  web:\n    command: x\n").decode()
    script = (
        f"rm -rf {SCRATCH}/broken && mkdir -p {SCRATCH}/broken && cd {SCRATCH}/broken && "
        f"echo {broken} | base64 -d > docker-compose.yml && "
        "docker compose --project-directory . -f docker-compose.yml config --quiet; rc=$?; "
        f"rm -rf {SCRATCH}/broken; exit $rc"
    )
    assert sandbox.ssh(f"sh -c {shlex.quote(script)}").returncode != 0
