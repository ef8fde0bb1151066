"""Compose services: state, health, users, networks, ports (SPEC §3, §4)."""

from __future__ import annotations

import pytest
from contract import (
    APP_SERVICES,
    BASE_DIR,
    CLUSTER_SERVICE_NAMES,
    COMPOSE_FILE,
    COMPOSE_PROJECT,
    DATA_SERVICES,
    EXTERNAL_NETWORK,
    HEALTHCHECKED,
    INTERNAL_NETWORK,
    SERVICE_NAMES,
    container_name,
)
from host_helpers import health_status, inspect, inspect_json


def listening(host) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket on the host."""
    out = host.check_output("ss -Hltn")
    sockets = []
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        addr, _, port = cols[3].rpartition(":")
        sockets.append((addr.strip("[]").split("%")[0], int(port)))
    return sockets


def test_docker_running(host):
    assert host.run("docker info --format '{{.ServerVersion}}'").rc == 0, "docker engine is not reachable"


def test_compose_v2_available(host):
    assert host.run("docker compose version").rc == 0, "`docker compose` (v2) is not available"


def test_compose_accepts_the_deployed_files(host):
    # `config --quiet` validates without printing: the resolved configuration holds the env files' secrets.
    result = host.run(f"docker compose --project-directory {BASE_DIR} -f {COMPOSE_FILE} config --quiet")
    assert result.rc == 0, (
        f"`docker compose config` rejects {COMPOSE_FILE} or its env files "
        "(the same command on the host says why; keep --quiet, without it compose prints the secrets)"
    )


def test_only_expected_containers_in_project(host, services):
    out = host.check_output(
        f"docker ps -a --filter label=com.docker.compose.project={COMPOSE_PROJECT} --format '{{{{.Names}}}}'"
    )
    assert sorted(out.split()) == sorted(container_name(s) for s in services), (
        f"containers of compose project {COMPOSE_PROJECT}: {sorted(out.split())}"
    )


# each parametrized with every service; a host runs the checks of its own (conftest)
@pytest.mark.parametrize("service", (*SERVICE_NAMES, *CLUSTER_SERVICE_NAMES))
def test_container_running(host, service):
    status = inspect(host, service, "{{.State.Status}} {{.State.Restarting}}")
    assert status == "running false", f"{container_name(service)}: state {status!r}, expected running"
    project = inspect(host, service, '{{index .Config.Labels "com.docker.compose.project"}}')
    assert project == COMPOSE_PROJECT, f"{container_name(service)} belongs to compose project {project!r}"


@pytest.mark.parametrize("service", (*HEALTHCHECKED, *CLUSTER_SERVICE_NAMES))
def test_container_healthy(host, service):
    status = health_status(host, service)
    assert status == "healthy", f"{container_name(service)}: health {status!r}, expected healthy"


@pytest.mark.parametrize("service", (*DATA_SERVICES, "replica"))
def test_datastore_runs_as_991(host, service):
    user = inspect(host, service, "{{.Config.User}}")
    assert user == "991:991", f"{container_name(service)} runs as {user!r}, expected '991:991'"


@pytest.mark.whole_server  # on several hosts they serve the others, on the private address
@pytest.mark.parametrize("service", DATA_SERVICES)
def test_datastore_only_on_internal_network(host, service):
    networks = sorted(inspect_json(host, service, ".NetworkSettings.Networks") or {})
    assert networks == [INTERNAL_NETWORK], f"{container_name(service)} is on networks {networks}"


@pytest.mark.whole_server
@pytest.mark.parametrize("service", DATA_SERVICES)
def test_datastore_publishes_no_port(host, service):
    bindings = inspect_json(host, service, ".HostConfig.PortBindings") or {}
    assert not bindings, f"{container_name(service)} publishes host ports: {bindings}"
    ports = inspect_json(host, service, ".NetworkSettings.Ports") or {}
    published = {p: b for p, b in ports.items() if b}
    assert not published, f"{container_name(service)} has host port bindings: {published}"


@pytest.mark.roles("db", "db_replica", "redis", "web", "streaming", "sidekiq")  # nginx alone is on the host's network
def test_internal_network_is_internal(host):
    internal = host.check_output(f"docker network inspect --format '{{{{.Internal}}}}' {INTERNAL_NETWORK}")
    assert internal.strip() == "true", f"{INTERNAL_NETWORK} is not `internal: true`"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_networks(host, service):
    networks = set(inspect_json(host, service, ".NetworkSettings.Networks") or {})
    assert {INTERNAL_NETWORK, EXTERNAL_NETWORK} <= networks, (
        f"{container_name(service)} is on {sorted(networks)}, expected {INTERNAL_NETWORK} and {EXTERNAL_NETWORK}"
    )


@pytest.mark.roles("web")
@pytest.mark.roles("sidekiq")
def test_web_and_sidekiq_share_the_image(host):
    assert inspect(host, "web", "{{.Image}}") == inspect(host, "sidekiq", "{{.Image}}"), (
        "web and sidekiq run different images"
    )


@pytest.mark.roles("proxy")
def test_nginx_uses_host_network(host):
    mode = inspect(host, "nginx", "{{.HostConfig.NetworkMode}}")
    assert mode == "host", f"nginx network_mode is {mode!r}, expected host"


@pytest.mark.whole_server
@pytest.mark.parametrize("port", [5432, 6379])
def test_datastore_port_not_on_host(host, port):
    hits = [s for s in listening(host) if s[1] == port]
    assert not hits, f"something listens on the host on port {port}: {hits}"


@pytest.mark.whole_server  # on several hosts: the private address, for the proxy
@pytest.mark.parametrize("service, port", [("web", 3000), ("streaming", 4000)])
def test_app_port_loopback_only(host, service, port):
    sockets = [addr for addr, p in listening(host) if p == port]
    assert "127.0.0.1" in sockets, f"nothing listens on 127.0.0.1:{port} ({service}); listeners: {sockets}"
    others = [a for a in sockets if a != "127.0.0.1"]
    assert not others, f"{service} port {port} is also bound on {others} (must be 127.0.0.1 only)"
    bindings = inspect_json(host, service, ".HostConfig.PortBindings") or {}
    hosts = {(b.get("HostIp"), b.get("HostPort")) for lst in bindings.values() for b in (lst or [])}
    assert hosts == {("127.0.0.1", str(port))}, f"{container_name(service)} port bindings: {sorted(hosts)}"


@pytest.mark.roles("proxy")
@pytest.mark.parametrize("port", [80, 443])
def test_nginx_listens(host, port):
    sockets = [addr for addr, p in listening(host) if p == port]
    assert sockets, f"nothing listens on port {port}"


@pytest.mark.whole_server
@pytest.mark.parametrize(
    "service, url",
    [("web", "http://127.0.0.1:3000/health"), ("streaming", "http://127.0.0.1:4000/api/v1/streaming/health")],
)
def test_app_health_on_loopback(host, service, url):
    result = host.run(f"curl -sS --max-time 10 {url}")
    assert result.rc == 0 and result.stdout.strip() == "OK", (
        f"{service} {url}: rc={result.rc} body={result.stdout[:200]!r} {result.stderr.strip()}"
    )


@pytest.mark.roles("sidekiq")
def test_sidekiq_process(host):
    result = host.run(f"docker exec {container_name('sidekiq')} sh -c \"ps aux | grep '[s]idekiq 8'\"")
    assert result.rc == 0, "no `sidekiq 8` process in the sidekiq container"


# ------------------------------------------------------------------ a host of an instance on several hosts

# What the instance's other hosts connect to, and where: the private address only, never 0.0.0.0.
PUBLISHED = {"db": 5432, "redis": 6379, "replica": 5432, "web": 3000, "streaming": 4000}


@pytest.mark.cluster
@pytest.mark.parametrize("service", sorted(PUBLISHED))
def test_published_on_the_private_address_only(host, service, private_address):
    port = PUBLISHED[service]
    bindings = inspect_json(host, service, ".HostConfig.PortBindings") or {}
    hosts = {(b.get("HostIp"), b.get("HostPort")) for lst in bindings.values() for b in (lst or [])}
    assert hosts == {(private_address, str(port))}, f"{container_name(service)} port bindings: {sorted(hosts)}"


@pytest.mark.cluster
@pytest.mark.parametrize(
    "service, url", [("web", "http://{}:3000/health"), ("streaming", "http://{}:4000/api/v1/streaming/health")]
)
def test_app_health_on_the_private_address(host, service, url, private_address):
    result = host.run(f"curl -sS --max-time 10 {url.format(private_address)}")
    assert result.rc == 0 and result.stdout.strip() == "OK", (
        f"{service} on {private_address}: rc={result.rc} body={result.stdout[:200]!r} {result.stderr.strip()}"
    )


@pytest.mark.cluster
@pytest.mark.parametrize("service", ["pgbouncer"])
def test_pgbouncer_pools_transactions(host, service):
    # the config PgBouncer wrote from its env file at start (it holds no password: that is in userlist.txt)
    out = host.check_output(f"docker exec {container_name(service)} cat /etc/pgbouncer/pgbouncer.ini")
    settings = dict(
        (key.strip(), value.strip()) for key, _, value in (line.partition("=") for line in out.splitlines()) if _
    )
    assert settings.get("pool_mode") == "transaction", f"pgbouncer pool_mode: {settings.get('pool_mode')}"
    assert settings.get("auth_type") == "scram-sha-256", f"pgbouncer auth_type: {settings.get('auth_type')}"


@pytest.mark.cluster
@pytest.mark.parametrize("service", ["replica"])
def test_replica_is_a_standby_streaming_from_the_primary(host, service):
    out = host.check_output(
        f"docker exec {container_name(service)} psql -X -U postgres -d postgres -tAc "
        "\"select pg_is_in_recovery(), coalesce((select status from pg_stat_wal_receiver), 'none')\""
    )
    assert out.strip() == "t|streaming", f"the replica: in recovery | WAL receiver = {out.strip()}"
