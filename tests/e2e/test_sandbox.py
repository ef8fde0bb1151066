"""The sandbox server itself (scripts/sandbox) and its stand-in images.

Differences from a real server worth knowing: the kernel is shared (cgroup v1, no AppArmor), there is no
CAP_SYS_RESOURCE (ulimits above 20000 nofile fail), /etc/hosts and /etc/resolv.conf are bind mounts, and
postgres/redis/nginx-certbot/mastodon are local stand-ins tagged with the upstream image names.
"""

import re
import time
import uuid

import pytest
from contract import ADMIN_PASSWORD_FILE, BACKUP_DIR, BASE_DIR, LETSENCRYPT_DIR, NGINX_DATA_DIR

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
    for unit in (
        "ssh",
        "docker",
        "containerd",
        "sandbox-dns",
        "sandbox-smtp-sink",
        "sandbox-pebble@production",
        "sandbox-pebble@staging",
        "sandbox-pebble@short",
    ):
        assert ok(sandbox, f"systemctl is-active {unit}").strip() == "active"


ACME_CA = "/etc/pebble/acme-ca.pem"
PEBBLE = {"production": (14000, 15000), "staging": (14001, 15001), "short": (14002, 15002)}
ACME_ENV = f"-e CERTBOT_EMAIL=admin@sandbox.test -e REQUESTS_CA_BUNDLE=/acme-ca.pem -v {ACME_CA}:/acme-ca.pem:ro"


def acme_url(instance: str) -> str:
    return f"https://acme.sandbox.test:{PEBBLE[instance][0]}/dir"


def test_pebble_serves_three_acme_directories_with_their_own_roots(sandbox):
    # reachable by name from a container of the server's engine, over TLS signed by the ACME API CA
    ok(sandbox, f"test -r {ACME_CA} && openssl x509 -noout -in {ACME_CA}")
    assert oct(int(ok(sandbox, f"stat -c %a {ACME_CA}").strip(), 8) & 0o444) == oct(0o444)
    roots = set()
    for instance, (api, _mgmt) in PEBBLE.items():
        doc = ok(
            sandbox,
            f"docker run --rm -v {ACME_CA}:/ca.pem:ro jonasal/nginx-certbot:latest "
            f"python3 -c 'import json,requests; print(json.dumps(requests.get("
            f'"{acme_url(instance)}", verify="/ca.pem").json()))\'',
        )
        assert f"https://acme.sandbox.test:{api}/sign-me-up" in doc and "newOrder" in doc
        root = ok(sandbox, f"pebble-root {instance}")
        assert root.startswith("-----BEGIN CERTIFICATE-----")
        assert "Pebble Root CA" in ok(sandbox, f"pebble-root {instance} | openssl x509 -noout -subject")
        roots.add(root)
    assert len(roots) == 3, "two pebble instances share an issuing root"
    # the API's certificate is not trusted without the bundle (certbot needs REQUESTS_CA_BUNDLE)
    assert sandbox.ssh(f"curl -sS --max-time 5 {acme_url('production')}").returncode == 60
    # no always-valid shortcut, no sleep before validating
    env = ok(sandbox, "systemctl show -p Environment sandbox-pebble@production")
    assert "PEBBLE_VA_NOSLEEP=1" in env and "PEBBLE_VA_ALWAYS_VALID=0" in env
    assert "-dnsserver" in ok(sandbox, "ps -o args= -C pebble")


def test_tools_the_tests_and_deploy_use(sandbox):
    ok(sandbox, "command -v sudo python3 curl openssl setfacl inotifywait ss ps useradd")
    ok(sandbox, "perl -MDigest::SHA -e 1")  # the file watcher's judge (tests/e2e/watcher/watch.pl)
    assert ok(sandbox, "docker compose version --short").strip().lstrip("v").startswith("2.")


def test_upstream_image_names_are_loaded(sandbox):
    out = ok(sandbox, "docker images --format '{{.Repository}}:{{.Tag}}'").split()
    for image in ("postgres:14-alpine", "redis:7-alpine", "jonasal/nginx-certbot:latest"):
        assert image in out
    if "ghcr.io/mastodon/mastodon:v4.6.5" not in out:
        pytest.skip("no Mastodon stand-in built (tests/sandbox/standins/mastodon missing)")
    for image in (
        "ghcr.io/mastodon/mastodon:v4.6.4",
        "ghcr.io/mastodon/mastodon-streaming:v4.6.5",
        "ghcr.io/mastodon/mastodon-streaming:v4.6.4",
    ):
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
    ok(
        sandbox,
        f"mkdir -p {d}/postgres14 && chown 991:991 {d}/postgres14 && chmod 0755 {d}/postgres14 && "
        f"cat > {d}/compose.yml <<'EOF'\n{COMPOSE.format(name=name)}EOF",
    )
    ok(sandbox, f"cd {d} && docker compose up -d --wait db", timeout=120)
    # reachable by name from another container on the internal network
    assert "accepting connections" in ok(sandbox, f"cd {d} && docker compose run --rm client")
    # data in the bind mount, PGDATA created 0700 and owned by 991; the parent keeps its 0755
    assert ok(sandbox, f"stat -c '%u:%g %a' {d}/postgres14/pgdata {d}/postgres14").split("\n")[:2] == [
        "991:991 700",
        "991:991 755",
    ]
    ok(sandbox, f"test -s {d}/postgres14/pgdata/PG_VERSION")
    assert ok(sandbox, f"cd {d} && docker compose exec -T db psql -U postgres -tAc 'select 40+2'").strip() == "42"
    assert "CREATE ROLE postgres" in ok(sandbox, f"cd {d} && docker compose exec -T db pg_dumpall -U postgres")
    # a restart skips initialisation and keeps the data
    ok(sandbox, f"cd {d} && docker compose exec -T db psql -U postgres -c 'create table t(x int)'")
    ok(sandbox, f"cd {d} && docker compose restart db && docker compose up -d --wait db", timeout=120)
    ok(sandbox, f"cd {d} && docker compose exec -T db psql -U postgres -c 'select * from t'")


def test_redis_standin_as_991(sandbox, scratch):
    name, d = scratch
    ok(
        sandbox,
        f"mkdir -p {d}/redis && chown 991:991 {d}/redis && "
        f"docker run -d --name {name}-redis --user 991:991 -v {d}/redis:/data redis:7-alpine",
    )
    wait_for(sandbox, f"docker exec {name}-redis redis-cli ping", 30, expect="PONG")
    ok(sandbox, f"docker exec {name}-redis redis-cli save")
    assert ok(sandbox, f"stat -c %u {d}/redis/dump.rdb").strip() == "991"
    t0 = time.monotonic()
    ok(sandbox, f"docker stop {name}-redis")
    assert time.monotonic() - t0 < 5


SITE = """\
server {{
    listen 443 ssl;
    listen [::]:443 ssl;
    http2 on;
    server_name {domain} www.{domain};
    ssl_certificate /etc/letsencrypt/live/{domain}/fullchain.pem;
    ssl_certificate_key /etc/letsencrypt/live/{domain}/privkey.pem;
    ssl_trusted_certificate /etc/letsencrypt/live/{domain}/chain.pem;
    ssl_dhparam /etc/letsencrypt/dhparams/dhparam.pem;
    location / {{ return 200 "hello from {domain}\\n"; }}
}}
"""


def site_without_dhparam(domain: str) -> str:
    """SITE without its ssl_dhparam line: the image would spend minutes making a 2048-bit one."""
    return SITE.format(domain=domain).replace("    ssl_dhparam /etc/letsencrypt/dhparams/dhparam.pem;\n", "")


def test_nginx_certbot_standin_issues_local_ca_certificates(sandbox, scratch):
    name, d = scratch
    domain = f"{name}.sandbox.test"
    conf = SITE.format(domain=domain)
    # the dhparam file the conf names exists already (made fast here): the image keeps a valid one
    ok(
        sandbox,
        f"mkdir -p {d}/user_conf.d {d}/letsencrypt/dhparams {d}/local_ca && "
        f"openssl genpkey -genparam -algorithm DH -pkeyopt dh_param:ffdhe2048 "
        f"-out {d}/letsencrypt/dhparams/dhparam.pem && "
        f"cat > {d}/user_conf.d/{domain}.conf <<'EOF'\n{conf}EOF",
    )
    dh = ok(sandbox, f"sha256sum < {d}/letsencrypt/dhparams/dhparam.pem")
    # CERTBOT_EMAIL is required, as in the real image
    proc = sandbox.ssh("docker run --rm --network host jonasal/nginx-certbot:latest")
    assert proc.returncode != 0 and "CERTBOT_EMAIL" in proc.stderr + proc.stdout

    ok(
        sandbox,
        f"docker run -d --name {name}-nginx --network host -e CERTBOT_EMAIL=admin@sandbox.test "
        f"-e USE_LOCAL_CA=1 -v {d}/user_conf.d:/etc/nginx/user_conf.d:ro "
        f"-v {d}/letsencrypt:/etc/letsencrypt -v {d}/local_ca:/etc/local_ca jonasal/nginx-certbot:latest",
    )
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
    assert "rsaEncryption" in text and "Public-Key: (2048 bit)" in text  # RSA leaf (run_local_ca.sh: genrsa)
    # the root is valid LOCAL_CA_ROOT_CERT_VALIDITY days, 30 by default (run_local_ca.sh)
    assert ok(sandbox, f"openssl x509 -noout -checkend $((29*86400)) -in {d}/local_ca/caCert.pem")
    assert sandbox.ssh(f"openssl x509 -noout -checkend $((31*86400)) -in {d}/local_ca/caCert.pem").returncode == 1
    assert ok(sandbox, f"sha256sum < {d}/letsencrypt/dhparams/dhparam.pem") == dh
    # port 80: redirect to https, ACME webroot served
    head = ok(sandbox, f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' {resolve} http://{domain}/x?y=1")
    assert head == f"301 https://{domain}/x?y=1"
    ok(
        sandbox,
        f"docker exec {name}-nginx sh -c 'mkdir -p /var/www/letsencrypt/.well-known/acme-challenge && "
        f"echo tok > /var/www/letsencrypt/.well-known/acme-challenge/t1'",
    )
    assert ok(sandbox, f"curl -sS {resolve} http://{domain}/.well-known/acme-challenge/t1").strip() == "tok"
    # a config added later is picked up on SIGHUP (as with the real image)
    other = f"new-{domain}"
    ok(
        sandbox,
        f"cat > {d}/user_conf.d/{other}.conf <<'EOF'\n{SITE.format(domain=other)}EOF\n"
        f"docker kill --signal=HUP {name}-nginx",
    )
    wait_for(
        sandbox,
        f"curl -sS --max-time 5 --cacert {d}/local_ca/caCert.pem --resolve {other}:443:127.0.0.1 https://{other}/",
        30,
        expect=f"hello from {other}",
    )
    # stops fast
    t0 = time.monotonic()
    ok(sandbox, f"docker stop {name}-nginx")
    assert time.monotonic() - t0 < 5
    # restart: same CA, but a new key and certificate (run_local_ca.sh re-signs on every run)
    serial = ok(sandbox, f"openssl x509 -noout -serial -in {d}/letsencrypt/live/{domain}/cert.pem")
    ca = ok(sandbox, f"sha256sum < {d}/local_ca/caCert.pem")
    ok(sandbox, f"docker start {name}-nginx")
    cert = f"{d}/letsencrypt/live/{domain}/cert.pem"
    wait_for(sandbox, f"openssl x509 -noout -serial -in {cert} | grep -vxF {serial.strip()}", 30)
    wait_for(sandbox, f"{curl} https://{domain}/", 30, expect="hello")
    assert ok(sandbox, f"sha256sum < {d}/local_ca/caCert.pem") == ca
    ok(sandbox, f"docker rm -f {name}-nginx")


def test_dns_leaves_out_listed_names_and_pebble_keeps_its_roots(sandbox):
    """/etc/sandbox-dns/unresolved (one name a line) takes instance domains out of the zone, as
    before DNS propagation; restarting sandbox-dns does not restart pebble (same roots)."""
    root = ok(sandbox, "pebble-root production")
    ok(sandbox, "getent hosts social7.sandbox.test")
    try:
        ok(
            sandbox,
            "mkdir -p /etc/sandbox-dns && echo social7.sandbox.test > /etc/sandbox-dns/unresolved && "
            "systemctl restart sandbox-dns",
        )
        assert sandbox.ssh("getent hosts social7.sandbox.test").returncode == 2
        ok(sandbox, "getent hosts social8.sandbox.test && getent hosts acme.sandbox.test")
    finally:
        ok(sandbox, "rm -f /etc/sandbox-dns/unresolved && systemctl restart sandbox-dns")
    ok(sandbox, "getent hosts social7.sandbox.test")
    assert ok(sandbox, "pebble-root production") == root


def test_nginx_certbot_standin_failed_certbot_keeps_conf_disabled(sandbox, scratch):
    name, d = scratch
    # {name}.sandbox.test is NXDOMAIN in the sandbox's DNS: pebble's HTTP-01 validation fails
    domain = f"{name}.sandbox.test"
    ok(
        sandbox,
        f"mkdir -p {d}/user_conf.d && cat > {d}/user_conf.d/{domain}.conf <<'EOF'\n{site_without_dhparam(domain)}EOF",
    )
    ok(
        sandbox,
        f"docker run -d --name {name}-nginx --network host {ACME_ENV} "
        f"-e CERTBOT_PRODUCTION_URL={acme_url('production')} "
        f"-v {d}/user_conf.d:/etc/nginx/user_conf.d:ro jonasal/nginx-certbot:latest",
    )
    logs = wait_for(sandbox, f"docker logs {name}-nginx 2>&1", 90, expect="will now sleep 8d")
    assert f"Requesting an ECDSA certificate for '{domain}' (http-01 through webroot)" in logs
    assert f"Certbot failed for '{domain}'. Check the logs for details." in logs
    # pebble asked the sandbox's dnsmasq (its -dnsserver), which has no such name
    assert f'could not resolve URL "http://{domain}:80/.well-known/acme-challenge/' in logs, logs[-3000:]
    assert domain in ok(sandbox, "cat /var/log/sandbox-dns/queries.log")
    # .nokey rule: the conf is parked, no dummy certificate is made, nginx runs without it
    ok(sandbox, f"docker exec {name}-nginx test -e /etc/nginx/conf.d/{domain}.conf.nokey")
    ok(sandbox, f"docker exec {name}-nginx test ! -e /etc/nginx/conf.d/{domain}.conf")
    ok(sandbox, f"docker exec {name}-nginx test ! -e /etc/letsencrypt/live/{domain}")
    # nginx itself still runs (port-80 redirector)
    assert ok(sandbox, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/") == "301"
    # no retry before RENEWAL_INTERVAL (8d) but on SIGHUP
    time.sleep(2)
    assert ok(sandbox, f"docker logs {name}-nginx 2>&1").count("Certbot failed for") == 1
    ok(sandbox, f"docker kill --signal=HUP {name}-nginx")
    wait_for(sandbox, f"docker logs {name}-nginx 2>&1 | grep -c 'Certbot failed for'", 60, expect="2")
    ok(sandbox, f"docker rm -f {name}-nginx")


def pebble_site(domain: str) -> str:
    """SITE for a name the sandbox's DNS resolves (pebble validates it), without www. (NXDOMAIN)."""
    return site_without_dhparam(domain).replace(f" www.{domain}", "")


def test_nginx_certbot_standin_gets_a_certificate_from_pebble(sandbox, scratch):
    name, d = scratch
    domain = "social19.sandbox.test"
    ok(
        sandbox,
        f"mkdir -p {d}/user_conf.d {d}/letsencrypt && cat > {d}/user_conf.d/{domain}.conf <<'EOF'\n"
        f"{pebble_site(domain)}EOF",
    )
    run = (
        f"docker run -d --name {name}-nginx --network host {ACME_ENV} "
        f"-e CERTBOT_PRODUCTION_URL={acme_url('production')} -e CERTBOT_STAGING_URL={acme_url('staging')} "
        f"-v {d}/user_conf.d:/etc/nginx/user_conf.d:ro -v {d}/letsencrypt:/etc/letsencrypt"
    )
    ok(sandbox, f"{run} jonasal/nginx-certbot:latest")
    ok(
        sandbox,
        "pebble-root production > /root/sbt-root-production.pem && "
        "pebble-root staging > /root/sbt-root-staging.pem && pebble-root short > /root/sbt-root-short.pem",
    )
    curl = f"curl -sS --max-time 5 --resolve {domain}:443:127.0.0.1"
    body = wait_for(sandbox, f"{curl} --cacert /root/sbt-root-production.pem https://{domain}/", 90, expect="hello")
    assert body.strip() == f"hello from {domain}"
    live = f"{d}/letsencrypt/live/{domain}"
    assert (
        ok(sandbox, f"openssl verify -CAfile /root/sbt-root-production.pem -untrusted {live}/chain.pem {live}/cert.pem")
        .strip()
        .endswith(": OK")
    )
    assert "id-ecPublicKey" in ok(sandbox, f"openssl x509 -noout -text -in {live}/cert.pem")  # USE_ECDSA default
    logs = ok(sandbox, f"docker logs {name}-nginx 2>&1")
    assert re.search(r'"GET /\.well-known/acme-challenge/[A-Za-z0-9_-]+ HTTP/1\.1" 200', logs), logs[-3000:]
    renewal = ok(sandbox, f"cat {d}/letsencrypt/renewal/{domain}.conf")
    assert f"server = {acme_url('production')}" in renewal and "key_type = ecdsa" in renewal
    # --keep: a valid certificate is kept on the next run (SIGHUP)
    serial = ok(sandbox, f"openssl x509 -noout -serial -in {live}/cert.pem")
    ok(sandbox, f"docker kill --signal=HUP {name}-nginx")
    wait_for(sandbox, f"docker logs {name}-nginx 2>&1 | grep -c 'will now sleep 8d'", 90, expect="2")
    assert "not yet due for renewal" in ok(sandbox, f"docker logs {name}-nginx 2>&1")
    assert ok(sandbox, f"openssl x509 -noout -serial -in {live}/cert.pem") == serial
    # STAGING=1 with a valid production lineage: --keep keeps it too (upstream docs/good_to_know.md)
    ok(sandbox, f"docker rm -f {name}-nginx && {run} -e STAGING=1 jonasal/nginx-certbot:latest")
    wait_for(sandbox, f"docker logs {name}-nginx 2>&1 | grep -c 'will now sleep 8d'", 90, expect="1")
    assert ok(sandbox, f"openssl x509 -noout -serial -in {live}/cert.pem") == serial
    ok(sandbox, f"docker rm -f {name}-nginx")
    # a short-lived certificate is renewed at every RENEWAL_INTERVAL
    ok(
        sandbox,
        f"rm -rf {d}/letsencrypt/* && {run.replace(acme_url('production'), acme_url('short'))} "
        "-e RENEWAL_INTERVAL=5s jonasal/nginx-certbot:latest",
    )
    wait_for(sandbox, f"ls {d}/letsencrypt/archive/{domain}/ | grep -c '^cert' | grep -qx '[3-9]'", 120)
    assert sandbox.ssh(f"openssl x509 -noout -checkend 600 -in {live}/cert.pem").returncode == 1
    wait_for(sandbox, f"{curl} --cacert /root/sbt-root-short.pem https://{domain}/", 30, expect="hello")
    assert sandbox.ssh(f"{curl} --cacert /root/sbt-root-production.pem https://{domain}/").returncode != 0
    ok(sandbox, f"docker rm -f {name}-nginx")


def test_nginx_certbot_standin_renews_every_renewal_interval(sandbox, scratch):
    name, d = scratch
    domain = f"{name}.sandbox.test"
    site = site_without_dhparam(domain)
    ok(sandbox, f"mkdir -p {d}/user_conf.d {d}/local_ca && cat > {d}/user_conf.d/{domain}.conf <<'EOF'\n{site}EOF")
    ok(
        sandbox,
        f"docker run -d --name {name}-nginx --network host -e CERTBOT_EMAIL=admin@sandbox.test "
        f"-e USE_LOCAL_CA=1 -e RENEWAL_INTERVAL=3s -v {d}/user_conf.d:/etc/nginx/user_conf.d:ro "
        f"-v {d}/local_ca:/etc/local_ca jonasal/nginx-certbot:latest",
    )
    logs = f"docker logs {name}-nginx 2>&1"
    wait_for(sandbox, f"{logs} | grep -c 'will now sleep 3s' | grep -qx '[3-9]'", 40)
    assert ok(sandbox, f"{logs}").count(f"Using local CA to sign certificate for '{domain}'") >= 3
    # no ssl_dhparam in the conf: no dhparams made (create_dhparams.sh makes only the named ones)
    ok(sandbox, f"docker exec {name}-nginx test ! -e /etc/letsencrypt/dhparams")
    ok(sandbox, f"docker rm -f {name}-nginx")


def test_second_up_resets_the_server(sandbox):
    ok(
        sandbox,
        f"mkdir -p {BASE_DIR} {NGINX_DATA_DIR} {LETSENCRYPT_DIR}/live {BACKUP_DIR} && "
        f"touch {ADMIN_PASSWORD_FILE} && groupadd -g 991 mastodon && "
        f"useradd -u 991 -g 991 -d {BASE_DIR} mastodon && "
        "docker network create sbt-reset-net && docker volume create sbt-reset-vol && "
        "docker run -d --restart always --name sbt-reset-ctr redis:7-alpine",
    )
    ids = "docker image inspect -f '{{.Id}}' postgres:14-alpine redis:7-alpine jonasal/nginx-certbot:latest"
    images_before = ok(sandbox, ids)
    sandbox.reset()
    for path in (BASE_DIR, NGINX_DATA_DIR, LETSENCRYPT_DIR, BACKUP_DIR, ADMIN_PASSWORD_FILE):
        assert sandbox.ssh(f"test -e {path}").returncode == 1, f"{path} survived the reset"
    assert sandbox.ssh("getent passwd mastodon").returncode == 2
    assert sandbox.ssh("getent group mastodon").returncode == 2
    assert ok(sandbox, "docker ps -aq") == ""
    assert ok(sandbox, "docker volume ls -q") == ""
    assert ok(sandbox, "docker network ls --format '{{.Name}}' | sort").split() == ["bridge", "host", "none"]
    assert ok(sandbox, ids) == images_before  # images stay (nothing reloaded when unchanged)
