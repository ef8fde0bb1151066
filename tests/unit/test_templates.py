"""The rendered files: compose structure, env files, and the nginx server block through a real `nginx -t`."""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyinfra_mastodon import layout, settings
from pyinfra_mastodon.render import render

BASE = {
    "mastodon_server_id": "42",
    "mastodon_zone": "example.org",
    "mastodon_admin_email": "admin@example.org",
}


def config(**extra):
    return settings.load_config("web42", {**BASE, **extra})


def compose(**extra) -> dict:
    return yaml.safe_load(render("docker-compose.yml.j2", config(**extra)))


def test_compose_has_the_six_services_with_the_configured_images():
    doc = compose(mastodon_version="v4.6.4", mastodon_postgres_image="mirror.example.org/postgres:14-alpine")
    assert doc["name"] == "mastodon"
    assert set(doc["services"]) == {"nginx", "db", "redis", "web", "streaming", "sidekiq"}
    services = doc["services"]
    assert services["web"]["image"] == "ghcr.io/mastodon/mastodon:v4.6.4"
    assert services["sidekiq"]["image"] == "ghcr.io/mastodon/mastodon:v4.6.4"
    assert services["streaming"]["image"] == "ghcr.io/mastodon/mastodon-streaming:v4.6.4"
    assert services["db"]["image"] == "mirror.example.org/postgres:14-alpine"
    assert services["web"]["command"] == "bundle exec puma -C config/puma.rb"
    assert services["streaming"]["command"] == "node ./streaming/index.js"
    assert services["sidekiq"]["command"] == "bundle exec sidekiq"


@pytest.mark.parametrize(
    "image, folder",
    [("postgres:14-alpine", "postgres14"), ("postgres:17-alpine", "postgres17"), ("postgres:latest", "postgres14")],
)
def test_compose_db_data_folder_is_named_by_the_postgres_major(image, folder):
    doc = compose(mastodon_postgres_image=image)
    assert doc["services"]["db"]["volumes"] == [f"./{folder}:/var/lib/postgresql/data"]
    assert f"/opt/mastodon/{folder}" in layout.data_dirs(folder)
    assert "/opt/mastodon/postgres14" not in layout.data_dirs("postgres17")


def test_compose_keeps_data_services_internal_and_owned_by_991():
    doc = compose()
    assert doc["networks"]["internal_network"]["internal"] is True
    for name in ("db", "redis"):
        service = doc["services"][name]
        assert service["networks"] == ["internal_network"]
        assert "ports" not in service
        assert service["user"] == "991:991"
    assert doc["services"]["db"]["healthcheck"]["test"] == ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "postgres"]
    assert doc["services"]["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert doc["services"]["web"]["ports"] == ["127.0.0.1:3000:3000"]
    assert doc["services"]["streaming"]["ports"] == ["127.0.0.1:4000:4000"]
    for name in ("web", "streaming", "sidekiq"):
        assert set(doc["services"][name]["networks"]) == {"external_network", "internal_network"}
        assert doc["services"][name]["env_file"] == ".env.production"


def test_compose_nginx_uses_host_network_and_local_ca_only_when_asked():
    nginx = compose()["services"]["nginx"]
    assert nginx["network_mode"] == "host"
    assert nginx["environment"]["CERTBOT_EMAIL"] == "admin@example.org"
    assert "USE_LOCAL_CA" not in nginx["environment"]
    assert "/data/nginx/user_conf.d:/etc/nginx/user_conf.d:ro" in nginx["volumes"]
    local = compose(mastodon_certbot_local_ca=True)["services"]["nginx"]
    assert local["environment"]["USE_LOCAL_CA"] == "1"
    assert "/data/nginx/local_ca:/etc/local_ca" in local["volumes"]


def test_env_production_names_every_secret_as_a_placeholder_only():
    text = render("env.production.j2", config(mastodon_smtp_password="pa ss$word"))
    assert "LOCAL_DOMAIN=social42.example.org" in text.splitlines()
    for key in settings.SECRET_ENV_KEYS:
        assert f"{key}=@@SECRET@@" in text.splitlines()
    assert "SMTP_PASSWORD='pa ss$word'" in text.splitlines()
    assert "SKIP_POST_DEPLOYMENT_MIGRATIONS" not in text


def test_env_production_extra_env_turns_s3_on_without_a_second_line():
    lines = render("env.production.j2", config(mastodon_extra_env={"S3_ENABLED": True})).splitlines()
    assert [line for line in lines if line.startswith("S3_ENABLED=")] == ["S3_ENABLED=true"]
    assert [line for line in lines if line.startswith("ES_ENABLED=")] == ["ES_ENABLED=false"]


@pytest.mark.parametrize("template", ["env.production.j2", "env.db.j2", "docker-compose.yml.j2", "nginx-site.conf.j2"])
def test_every_file_starts_with_the_managed_header(template):
    # The deploy recognises its own nginx server blocks (and only those) by this first line.
    assert render(template, config()).startswith(layout.MANAGED_HEADER)


def test_env_db_trusts_the_internal_network_and_moves_pgdata_below_the_mount():
    lines = render("env.db.j2", config()).splitlines()
    assert "POSTGRES_HOST_AUTH_METHOD=trust" in lines
    assert "PGDATA=/var/lib/postgresql/data/pgdata" in lines


def _self_signed(directory: Path, domain: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    for name in ("fullchain.pem", "chain.pem", "cert.pem"):
        (directory / name).write_bytes(pem)
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        pytest.fail("nginx is not installed: run scripts/bootstrap (it installs nginx-light)")
    return found


HTTP2_DIRECTIVE = (1, 25, 1)  # nginx added `http2 on;` and deprecated `listen ... http2` in 1.25.1


def nginx_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    assert match, f"cannot read the version of {binary}: {out!r}"
    return tuple(int(part) for part in match.groups())


def as_pre_1_25_1(conf: str) -> str:
    """The same server block in the syntax nginx < 1.25.1 knows: `http2 on;` becomes the `http2`
    parameter of that block's `listen` lines (the only directive that differs)."""
    blocks = conf.split("server {")
    for i, block in enumerate(blocks):
        if re.search(r"^\s*http2 on;\n", block, flags=re.M):
            block = re.sub(r"^\s*http2 on;\n", "", block, flags=re.M)
            blocks[i] = re.sub(r"^(\s*listen [^;]* ssl);", r"\1 http2;", block, flags=re.M)
    return "server {".join(blocks)


def test_nginx_server_block_uses_the_http2_directive():
    # nginx >= 1.25.1 (the real image runs 1.31) warns at every start and reload on `listen ... http2`
    conf = render("nginx-site.conf.j2", config())
    assert not re.search(r"^\s*listen [^;]*\bhttp2\b", conf, flags=re.M), "deprecated `listen ... http2`"
    site = conf.split(f"server_name {config().domain};")[0].rsplit("server {", 1)[1]
    assert "http2 on;" in conf.split("server {")[-1] and "listen 443 ssl;" in site


def test_nginx_server_block_passes_a_real_nginx_t_without_warnings(tmp_path):
    """`nginx -t` with the machine's nginx: no error, no [warn]/[emerg]. Before 1.25.1 nginx does
    not know `http2 on;`: the block is then checked in that version's syntax (as_pre_1_25_1), and
    the e2e test (test_nginx_warnings) checks the block as written on the stand-in's nginx 1.26."""
    binary = nginx_binary()
    version = nginx_version(binary)
    cfg = config()
    conf = render("nginx-site.conf.j2", cfg)
    assert f"ssl_certificate_key {layout.LETSENCRYPT_DIR}/live/{cfg.domain}/privkey.pem;" in conf
    if version < HTTP2_DIRECTIVE:
        conf = as_pre_1_25_1(conf)
        assert "http2 on;" not in conf and conf.count(" ssl http2;") == 2
    letsencrypt = tmp_path / "letsencrypt"
    _self_signed(letsencrypt / "live" / cfg.domain, cfg.domain)
    site = tmp_path / f"{cfg.domain}.conf"
    site.write_text(conf.replace(layout.LETSENCRYPT_DIR, str(letsencrypt)))
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {site};\n}}\n"
    )
    result = subprocess.run(
        [binary, "-t", "-c", str(main), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
    )
    where = f"nginx {'.'.join(map(str, version))}"
    assert result.returncode == 0, f"{where}: {result.stderr}"
    assert "test is successful" in result.stderr, f"{where}: {result.stderr}"
    problems = [line for line in result.stderr.splitlines() if "[warn]" in line or "[emerg]" in line]
    assert not problems, f"{where} warns about the server block: {problems}"


def test_nginx_server_block_routes_and_headers():
    conf = render("nginx-site.conf.j2", config())
    assert "server_name social42.example.org;" in conf
    assert "ssl_reject_handshake on;" in conf  # unknown names refused
    assert conf.count("listen [::]:443 ssl") == 2  # IPv6 too, like IPv4
    assert "listen 80" not in conf  # the image's redirector owns port 80 and the ACME challenge
    for header in (
        "Host $host",
        "X-Real-IP $remote_addr",
        "X-Forwarded-For $proxy_add_x_forwarded_for",
        "X-Forwarded-Proto $scheme",
        "X-Forwarded-Ssl on",
    ):
        assert conf.count(f"proxy_set_header {header};") == 2, header
    streaming = conf.split("location ^~ /api/v1/streaming")[1]
    assert "proxy_pass http://mastodon_streaming;" in streaming
    assert "proxy_buffering off;" in streaming and "proxy_http_version 1.1;" in streaming
    assert "proxy_set_header Upgrade $http_upgrade;" in streaming
    assert "server 127.0.0.1:3000" in conf and "server 127.0.0.1:4000" in conf


def test_no_empty_smtp_login_or_password_lines():
    # config/email.yml: user_name is ENV.fetch('SMTP_LOGIN', nil), so an empty line means AUTH with "".
    lines = render("env.production.j2", config()).splitlines()
    assert not any(line.startswith(("SMTP_LOGIN=", "SMTP_PASSWORD=")) for line in lines)
    lines = render("env.production.j2", config(mastodon_smtp_login="mailer", mastodon_smtp_password="pw")).splitlines()
    assert "SMTP_LOGIN=mailer" in lines and "SMTP_PASSWORD=pw" in lines


def test_database_health_check_is_over_tcp():
    # The entrypoint's first-start server listens on the Unix socket only (docker-entrypoint.sh).
    doc = yaml.safe_load(render("docker-compose.yml.j2", config()))
    test = doc["services"]["db"]["healthcheck"]["test"]
    assert test[test.index("-h") + 1] == "127.0.0.1"


S3 = {
    "mastodon_s3_bucket": "media-social42",
    "mastodon_s3_access_key_id": "AKIAEXAMPLE",
    "mastodon_s3_secret_access_key": "s3cr3t+key/with=signs",
}


def _env_lines(**extra) -> list[str]:
    return render("env.production.j2", config(**extra)).splitlines()


def test_env_production_object_storage_on_aws_by_the_typed_settings():
    lines = _env_lines(**S3)
    s3 = [line for line in lines if line.startswith(("S3_", "AWS_"))]
    # upstream's defaults stand for what is not set: AWS's hostname, https, no endpoint
    assert s3 == [
        "S3_ENABLED=true",
        "S3_BUCKET=media-social42",
        "S3_REGION=us-east-1",
        "S3_PROTOCOL=https",
        "AWS_ACCESS_KEY_ID=AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY=s3cr3t+key/with=signs",
    ]
    assert "ES_ENABLED=false" in lines


def test_env_production_object_storage_on_another_endpoint_names_its_host_for_the_urls():
    lines = _env_lines(**S3, mastodon_s3_endpoint="https://s3.example.org:9000", mastodon_s3_region="garage")
    assert "S3_ENDPOINT=https://s3.example.org:9000" in lines
    # upstream's URLs are S3_PROTOCOL://S3_HOSTNAME/bucket/path without an alias host
    assert "S3_HOSTNAME=s3.example.org:9000" in lines and "S3_PROTOCOL=https" in lines
    assert "S3_REGION=garage" in lines
    # a plain-http endpoint on a private network, served to browsers over https by an alias host
    inside = {**S3, "mastodon_s3_endpoint": "http://10.213.0.31:9000"}
    with_alias = _env_lines(**inside, mastodon_s3_alias_host="files.example.org")
    assert "S3_ALIAS_HOST=files.example.org" in with_alias and "S3_PROTOCOL=https" in with_alias
    own_host = _env_lines(**S3, mastodon_s3_endpoint="https://s3.example.org", mastodon_s3_hostname="cdn.example.org")
    assert "S3_HOSTNAME=cdn.example.org" in own_host
    # a test setup that serves media over http says so
    plain = _env_lines(**inside, mastodon_s3_protocol="http")
    assert "S3_PROTOCOL=http" in plain and "S3_HOSTNAME=10.213.0.31:9000" in plain


def test_env_production_without_a_bucket_keeps_object_storage_off():
    lines = _env_lines()
    assert "S3_ENABLED=false" in lines
    assert not [line for line in lines if line.startswith(("S3_BUCKET", "AWS_"))]


def test_compose_sidekiq_is_upstreams_unless_queues_or_threads_are_set():
    sidekiq = compose()["services"]["sidekiq"]
    assert sidekiq["command"] == "bundle exec sidekiq" and "environment" not in sidekiq
    tuned = compose(mastodon_sidekiq_concurrency=25, mastodon_sidekiq_queues=["default,8", "push", "scheduler"])
    sidekiq = tuned["services"]["sidekiq"]
    assert sidekiq["command"] == "bundle exec sidekiq -c 25 -q default,8 -q push -q scheduler"
    # one database connection per thread (config/database.yml reads DB_POOL)
    assert sidekiq["environment"] == {"DB_POOL": "25"}
    assert "environment" not in tuned["services"]["web"]
