"""The sandbox server itself (scripts/sandbox) and its stand-in images.

Differences from a real server worth knowing: the kernel is shared (cgroup v1, no AppArmor), there is no
CAP_SYS_RESOURCE (ulimits above 20000 nofile fail), /etc/hosts and /etc/resolv.conf are bind mounts, and
postgres/redis/nginx-certbot/mastodon are local stand-ins tagged with the upstream image names.
"""

import time
import uuid

import pytest

pytestmark = pytest.mark.e2e


def ok(sandbox, cmd: str, timeout: float = 300) -> str:
    proc = sandbox.ssh(cmd, timeout=timeout)
    assert proc.returncode == 0, f"{cmd!r} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


def wait_for(sandbox, cmd: str, seconds: float = 60, expect: str | None = None) -> str:
    deadline = time.monotonic() + seconds
    while True:
        proc = sandbox.ssh(cmd)
        if proc.returncode == 0 and (expect is None or expect in proc.stdout):
            return proc.stdout
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {cmd!r}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        time.sleep(0.5)


@pytest.fixture(scope="module", autouse=True)
def clean_server(sandbox):
    """These tests bind ports 80/443 themselves: start from a server without a deployed instance."""
    sandbox.ensure_clean()


@pytest.fixture
def scratch(sandbox):
    """A unique name and a scratch dir on the server; containers/networks named after it are removed after."""
    name = f"sbt-{uuid.uuid4().hex[:8]}"
    d = f"/root/{name}"
    ok(sandbox, f"mkdir -p {d}")
    yield name, d
    sandbox.ssh(
        f"cd {d} 2>/dev/null && [ -f compose.yml ] && docker compose -p {name} down -v -t 1 >/dev/null 2>&1; "
        f"docker ps -aq --filter name={name} | xargs -r docker rm -f >/dev/null; rm -rf {d}"
    )


def test_ssh_runs_one_command_line_with_its_exit_status(sandbox):
    proc = sandbox.run("ssh", "echo 'a b' | tr a-z A-Z && id -u")
    assert proc.returncode == 0
    assert proc.stdout.split("\n")[:2] == ["A B", "0"]
    assert sandbox.run("ssh", "exit 7").returncode == 7


def test_systemd_is_running(sandbox):
    state = sandbox.ssh("systemctl is-system-running --wait").stdout.strip()
    failed = sandbox.ssh("systemctl --failed --no-legend --plain").stdout
    assert state == "running", f"systemd state {state!r}; failed units:\n{failed}"
    for unit in ("ssh", "docker", "containerd"):
        assert ok(sandbox, f"systemctl is-active {unit}").strip() == "active"


def test_tools_the_tests_and_deploy_use(sandbox):
    ok(sandbox, "command -v sudo python3 curl openssl setfacl inotifywait ss ps useradd")
    assert ok(sandbox, "docker compose version --short").strip().lstrip("v").startswith("2.")


def test_upstream_image_names_are_loaded(sandbox):
    out = ok(sandbox, "docker images --format '{{.Repository}}:{{.Tag}}'").split()
    for image in ("postgres:14-alpine", "redis:7-alpine", "jonasal/nginx-certbot:latest"):
        assert image in out
    if "ghcr.io/mastodon/mastodon:v4.6.5" not in out:
        pytest.skip("no Mastodon stand-in built (tests/sandbox/standins/mastodon missing)")
    for image in ("ghcr.io/mastodon/mastodon:v4.6.4", "ghcr.io/mastodon/mastodon-streaming:v4.6.5",
                  "ghcr.io/mastodon/mastodon-streaming:v4.6.4"):
        assert image in out


COMPOSE = """\
name: {name}
services:
  db:
    image: postgres:14-alpine
    user: "991:991"
    shm_size: 256mb
    environment: [POSTGRES_HOST_AUTH_METHOD=trust, PGDATA=/var/lib/postgresql/data/pgdata]
    volumes: ["./postgres14:/var/lib/postgresql/data"]
    networks: [internal_network]
    healthcheck:
      test: ['CMD', 'pg_isready', '-U', 'postgres']
      interval: 1s
      retries: 60
  client:
    image: postgres:14-alpine
    entrypoint: ["pg_isready", "-h", "db", "-U", "postgres"]
    networks: [internal_network]
    profiles: [client]
networks:
  internal_network:
    internal: true
"""


def test_postgres_standin_as_991_on_internal_network(sandbox, scratch):
    name, d = scratch
    ok(sandbox, f"mkdir -p {d}/postgres14 && chown 991:991 {d}/postgres14 && chmod 0755 {d}/postgres14 && "
                f"cat > {d}/compose.yml <<'EOF'\n{COMPOSE.format(name=name)}EOF")
    ok(sandbox, f"cd {d} && docker compose up -d --wait db", timeout=120)
    # reachable by name from another container on the internal network
    assert "accepting connections" in ok(sandbox, f"cd {d} && docker compose run --rm client")
    # data in the bind mount, PGDATA created 0700 and owned by 991; the parent keeps its 0755
    assert ok(sandbox, f"stat -c '%u:%g %a' {d}/postgres14/pgdata {d}/postgres14").split("\n")[:2] == \
        ["991:991 700", "991:991 755"]
    ok(sandbox, f"test -s {d}/postgres14/pgdata/PG_VERSION")
    assert ok(sandbox, f"cd {d} && docker compose exec -T db psql -U postgres -tAc 'select 40+2'").strip() == "42"
    assert "CREATE ROLE postgres" in ok(sandbox, f"cd {d} && docker compose exec -T db pg_dumpall -U postgres")
    # a restart skips initialisation and keeps the data
    ok(sandbox, f"cd {d} && docker compose exec -T db psql -U postgres -c 'create table t(x int)'")
    ok(sandbox, f"cd {d} && docker compose restart db && docker compose up -d --wait db", timeout=120)
    ok(sandbox, f"cd {d} && docker compose exec -T db psql -U postgres -c 'select * from t'")


def test_redis_standin_as_991(sandbox, scratch):
    name, d = scratch
    ok(sandbox, f"mkdir -p {d}/redis && chown 991:991 {d}/redis && "
                f"docker run -d --name {name}-redis --user 991:991 -v {d}/redis:/data redis:7-alpine")
    wait_for(sandbox, f"docker exec {name}-redis redis-cli ping", 30, expect="PONG")
    ok(sandbox, f"docker exec {name}-redis redis-cli save")
    assert ok(sandbox, f"stat -c %u {d}/redis/dump.rdb").strip() == "991"
    t0 = time.monotonic()
    ok(sandbox, f"docker stop {name}-redis")
    assert time.monotonic() - t0 < 5


SITE = """\
server {{
    listen 443 ssl http2;
    listen [::]:443 ssl http2;
    server_name {domain} www.{domain};
    ssl_certificate /etc/letsencrypt/live/{domain}/fullchain.pem;
    ssl_certificate_key /etc/letsencrypt/live/{domain}/privkey.pem;
    ssl_trusted_certificate /etc/letsencrypt/live/{domain}/chain.pem;
    ssl_dhparam /etc/letsencrypt/dhparams/dhparam.pem;
    location / {{ return 200 "hello from {domain}\\n"; }}
}}
"""


def test_nginx_certbot_standin_issues_local_ca_certificates(sandbox, scratch):
    name, d = scratch
    domain = f"{name}.sandbox.test"
    conf = SITE.format(domain=domain)
    ok(sandbox, f"mkdir -p {d}/user_conf.d {d}/letsencrypt {d}/local_ca && "
                f"cat > {d}/user_conf.d/{domain}.conf <<'EOF'\n{conf}EOF")
    # CERTBOT_EMAIL is required, as in the real image
    proc = sandbox.ssh("docker run --rm --network host jonasal/nginx-certbot:latest")
    assert proc.returncode != 0 and "CERTBOT_EMAIL" in proc.stderr + proc.stdout

    ok(sandbox, f"docker run -d --name {name}-nginx --network host -e CERTBOT_EMAIL=admin@sandbox.test "
                f"-e USE_LOCAL_CA=1 -v {d}/user_conf.d:/etc/nginx/user_conf.d:ro "
                f"-v {d}/letsencrypt:/etc/letsencrypt -v {d}/local_ca:/etc/local_ca jonasal/nginx-certbot:latest")
    resolve = f"--resolve {domain}:443:127.0.0.1 --resolve www.{domain}:443:127.0.0.1 --resolve {domain}:80:127.0.0.1"
    curl = f"curl -sS --max-time 5 --cacert {d}/local_ca/caCert.pem {resolve}"
    body = wait_for(sandbox, f"{curl} https://{domain}/", 60, expect="hello")
    assert body.strip() == f"hello from {domain}"
    assert "hello" in ok(sandbox, f"{curl} https://www.{domain}/")
    for f in ("fullchain.pem", "privkey.pem", "chain.pem", "cert.pem"):
        ok(sandbox, f"test -s {d}/letsencrypt/live/{domain}/{f}")
    ok(sandbox, f"test -s {d}/local_ca/caPrivkey.pem")
    text = ok(sandbox, f"openssl x509 -noout -text -in {d}/letsencrypt/live/{domain}/cert.pem")
    assert f"DNS:{domain}" in text and "TLS Web Server Authentication" in text
    # port 80: redirect to https, ACME webroot served
    head = ok(sandbox, f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' {resolve} http://{domain}/x?y=1")
    assert head == f"301 https://{domain}/x?y=1"
    ok(sandbox, f"docker exec {name}-nginx sh -c 'mkdir -p /var/www/letsencrypt/.well-known/acme-challenge && "
                f"echo tok > /var/www/letsencrypt/.well-known/acme-challenge/t1'")
    assert ok(sandbox, f"curl -sS {resolve} http://{domain}/.well-known/acme-challenge/t1").strip() == "tok"
    # a config added later is picked up on SIGHUP (as with the real image)
    other = f"new-{domain}"
    ok(sandbox, f"cat > {d}/user_conf.d/{other}.conf <<'EOF'\n{SITE.format(domain=other)}EOF\n"
                f"docker kill --signal=HUP {name}-nginx")
    wait_for(sandbox, f"curl -sS --max-time 5 --cacert {d}/local_ca/caCert.pem --resolve {other}:443:127.0.0.1 "
                      f"https://{other}/", 30, expect=f"hello from {other}")
    # stops fast
    t0 = time.monotonic()
    ok(sandbox, f"docker stop {name}-nginx")
    assert time.monotonic() - t0 < 5
    # restart: same CA, certificate kept
    serial = ok(sandbox, f"openssl x509 -noout -serial -in {d}/letsencrypt/live/{domain}/cert.pem")
    ok(sandbox, f"docker start {name}-nginx")
    wait_for(sandbox, f"{curl} https://{domain}/", 30, expect="hello")
    assert ok(sandbox, f"openssl x509 -noout -serial -in {d}/letsencrypt/live/{domain}/cert.pem") == serial
    ok(sandbox, f"docker rm -f {name}-nginx")


def test_nginx_certbot_standin_without_local_ca_keeps_conf_disabled(sandbox, scratch):
    name, d = scratch
    domain = f"{name}.sandbox.test"
    ok(sandbox, f"mkdir -p {d}/user_conf.d && cat > {d}/user_conf.d/{domain}.conf <<'EOF'\n"
                f"{SITE.format(domain=domain)}EOF")
    ok(sandbox, f"docker run -d --name {name}-nginx --network host -e CERTBOT_EMAIL=admin@sandbox.test "
                f"-v {d}/user_conf.d:/etc/nginx/user_conf.d:ro jonasal/nginx-certbot:latest")
    logs = wait_for(sandbox, f"docker logs {name}-nginx 2>&1", 30, expect="Let's Encrypt")
    assert "offline" in logs
    ok(sandbox, f"docker exec {name}-nginx test -e /etc/nginx/conf.d/{domain}.conf.nokey")
    # nginx itself still runs (port-80 redirector)
    assert ok(sandbox, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/") == "301"
    ok(sandbox, f"docker rm -f {name}-nginx")


def test_second_up_resets_the_server(sandbox):
    ok(sandbox, "mkdir -p /opt/mastodon /data/nginx /etc/letsencrypt/live /var/backups/mastodon && "
                "touch /root/mastodon-admin-password && groupadd -g 991 mastodon && "
                "useradd -u 991 -g 991 -d /opt/mastodon mastodon && "
                "docker network create sbt-reset-net && docker volume create sbt-reset-vol && "
                "docker run -d --restart always --name sbt-reset-ctr redis:7-alpine")
    ids = "docker image inspect -f '{{.Id}}' postgres:14-alpine redis:7-alpine jonasal/nginx-certbot:latest"
    images_before = ok(sandbox, ids)
    sandbox.reset()
    for path in ("/opt/mastodon", "/data/nginx", "/etc/letsencrypt", "/var/backups/mastodon",
                 "/root/mastodon-admin-password"):
        assert sandbox.ssh(f"test -e {path}").returncode == 1, f"{path} survived the reset"
    assert sandbox.ssh("getent passwd mastodon").returncode == 2
    assert sandbox.ssh("getent group mastodon").returncode == 2
    assert ok(sandbox, "docker ps -aq") == ""
    assert ok(sandbox, "docker volume ls -q") == ""
    assert ok(sandbox, "docker network ls --format '{{.Name}}' | sort").split() == ["bridge", "host", "none"]
    assert ok(sandbox, ids) == images_before  # images stay (nothing reloaded when unchanged)
