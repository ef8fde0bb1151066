"""Every health check of templates/docker-compose.yml.j2 uses only tools the REAL image has.

The stand-in images are built from Debian and could carry anything; a check that calls a tool the real
image lacks (say `ps` in mastodon-streaming) would pass in the sandbox and fail in production. The table
below is read from the upstream Dockerfiles named in it (Mastodon v4.6.5 = 1440d55b; the revisions of
the other images are those of the project's real-images reference).
"""

from __future__ import annotations

import shlex

import pytest
import yaml

from pyinfra_mastodon import settings
from pyinfra_mastodon.render import render

# Tools of every base: Debian's essential set (dash as /bin/sh, coreutils, grep, sed) or Alpine's busybox.
DEBIAN_BASE = {"sh", "grep", "sed", "cat", "test", "[", "true", "false", "echo", "sleep", "head"}
BUSYBOX = DEBIAN_BASE | {"wget", "ps", "pgrep", "nc", "awk"}  # busybox applets of the alpine base image
SHELL_BUILTINS = {"exit", "true", "false", "test", "[", "echo", "command", ":"}

REAL_IMAGE_TOOLS = {
    "db": {
        "image": "postgres:14-alpine",
        "dockerfile": "docker-library/postgres 14/alpine3.23/Dockerfile (apk postgresql build; busybox base)",
        "tools": BUSYBOX | {"postgres", "pg_isready", "psql", "pg_dump", "pg_dumpall", "initdb", "pg_ctl", "gosu"},
    },
    "redis": {
        "image": "redis:7-alpine",
        "dockerfile": "docker-library/redis 7.2/alpine/Dockerfile (make install of redis-server, redis-cli...)",
        "tools": BUSYBOX
        | {"redis-server", "redis-cli", "redis-benchmark", "redis-check-aof", "redis-check-rdb", "redis-sentinel"},
    },
    "web": {
        "image": "ghcr.io/mastodon/mastodon",
        "dockerfile": "mastodon/mastodon Dockerfile (ruby:4.0.5-slim-trixie; apt: curl file procps tini tzdata "
        "wget...)",
        "tools": DEBIAN_BASE
        | {"curl", "wget", "file", "ps", "pgrep", "pkill", "top", "tini", "ruby", "bundle", "bin/rails", "bin/tootctl"},
    },
    "sidekiq": {
        "image": "ghcr.io/mastodon/mastodon",
        "dockerfile": "mastodon/mastodon Dockerfile (same image as web)",
        "tools": DEBIAN_BASE
        | {"curl", "wget", "file", "ps", "pgrep", "pkill", "top", "tini", "ruby", "bundle", "bin/rails", "bin/tootctl"},
    },
    "streaming": {
        "image": "ghcr.io/mastodon/mastodon-streaming",
        "dockerfile": "mastodon/mastodon streaming/Dockerfile (node:24-trixie-slim; apt: ca-certificates curl "
        "tzdata wget only; no procps, no tini)",
        "tools": DEBIAN_BASE | {"node", "npm", "npx", "curl", "wget"},
    },
    "nginx": {
        "image": "jonasal/nginx-certbot",
        "dockerfile": "JonasAlfredsson/docker-nginx-certbot src/Dockerfile (FROM nginx:1.31.2, Debian; "
        "certbot in a venv)",
        "tools": DEBIAN_BASE | {"nginx", "curl", "openssl", "certbot"},
    },
}

BASE = {"mastodon_server_id": "1", "mastodon_zone": "sandbox.test", "mastodon_admin_email": "admin@sandbox.test"}


def compose_services(**extra) -> dict:
    cfg = settings.load_config("sandbox", {**BASE, **extra})
    return yaml.safe_load(render("docker-compose.yml.j2", cfg))["services"]


def programs(test) -> list[str]:
    """The programs a compose healthcheck `test` runs: CMD's first word; for CMD-SHELL, `sh` and the
    first word of every simple command (split on | || && ;), shell builtins left out."""
    kind, *rest = test
    if kind == "CMD":
        return [rest[0]]
    assert kind == "CMD-SHELL", f"unexpected healthcheck form {kind!r}"
    lexer = shlex.shlex(rest[0], posix=True, punctuation_chars="|&;")
    words, found, start = list(lexer), ["sh"], True
    for word in words:
        if word in ("|", "||", "&&", ";", "&"):
            start = True
            continue
        if start and word not in SHELL_BUILTINS:
            found.append(word)
        start = False
    return found


def test_programs_parser():
    assert programs(["CMD", "pg_isready", "-U", "postgres"]) == ["pg_isready"]
    assert programs(["CMD-SHELL", "ps aux | grep '[s]idekiq [0-9]' || false"]) == ["sh", "ps", "grep"]
    assert programs(["CMD-SHELL", "curl -s x | grep -q 'OK' || exit 1"]) == ["sh", "curl", "grep"]


def test_every_service_with_a_healthcheck_is_in_the_table():
    services = compose_services()
    for name in services:
        assert name in REAL_IMAGE_TOOLS, f"service {name!r} has no row in REAL_IMAGE_TOOLS"


@pytest.mark.parametrize("extra", [{}, {"mastodon_certbot_local_ca": True}])
@pytest.mark.parametrize("service", sorted(REAL_IMAGE_TOOLS))
def test_healthcheck_uses_only_tools_of_the_real_image(service, extra):
    spec = compose_services(**extra).get(service)
    assert spec is not None, f"service {service} is not in the compose file"
    check = spec.get("healthcheck")
    if check is None:
        assert service == "nginx", f"{service} has no healthcheck"  # the proxy has none, as upstream's compose
        return
    row = REAL_IMAGE_TOOLS[service]
    missing = [p for p in programs(check["test"]) if p not in row["tools"]]
    assert not missing, (
        f"the {service} healthcheck {check['test']!r} runs {missing}, which {row['image']} does not have "
        f"(see {row['dockerfile']})"
    )


def test_streaming_image_has_no_process_tools():
    """The one that matters most: a `ps`/`pgrep` check would work on web but not on streaming."""
    tools = REAL_IMAGE_TOOLS["streaming"]["tools"]
    assert not {"ps", "pgrep", "tini", "python3"} & tools
    assert [p for p in programs(["CMD-SHELL", "ps aux | grep '[n]ode' || exit 1"]) if p not in tools] == ["ps"]
