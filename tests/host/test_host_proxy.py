"""nginx in front of web and streaming (SPEC §7), checked with curl ON the host via 127.0.0.1."""

from __future__ import annotations

import json
import shlex

from host_helpers import container_name, curl


def test_nginx_config_valid(host):
    result = host.run(f"docker exec {container_name('nginx')} nginx -t")
    assert result.rc == 0, f"nginx -t failed: {result.stderr.strip()[-800:]}"


def test_server_block_names_only_domain(host, domain):
    conf = host.file(f"/data/nginx/user_conf.d/{domain}.conf")
    assert conf.contains(f"server_name[[:space:]]\\+{domain}[[:space:]]*;"), f"{domain}.conf has no `server_name {domain};`"
    assert conf.contains(f"/etc/letsencrypt/live/{domain}/fullchain.pem"), "certificate path missing"
    assert conf.contains(f"/etc/letsencrypt/live/{domain}/privkey.pem"), "key path missing"


def test_health_over_https_with_verified_certificate(site, ca_file):
    r = site.https("/health")
    where = f"CA file {ca_file}" if ca_file else "the system CA store"
    assert r.rc == 0, f"https://{site.domain}/health did not verify against {where}: {r.describe()}"
    assert r.status == 200 and r.body.strip() == "OK", f"https://{site.domain}/health: {r.describe()}"


def test_instance_api_through_nginx(site, expected_version):
    """A 200 here also proves X-Forwarded-Proto: https reaches the app (it redirects to https without it)."""
    r = site.https("/api/v1/instance")
    assert r.rc == 0 and r.status == 200, (
        f"/api/v1/instance through nginx: {r.describe()} (301 = X-Forwarded-Proto not passed; "
        "403 = Host not passed)"
    )
    try:
        doc = json.loads(r.body)
    except ValueError:
        raise AssertionError(f"/api/v1/instance is not JSON: {r.describe()}") from None
    assert doc.get("uri") == site.domain, f"instance uri {doc.get('uri')!r}, expected {site.domain!r}"
    if expected_version:
        assert doc.get("version") == expected_version, (
            f"instance version {doc.get('version')!r}, expected {expected_version!r}"
        )


def test_streaming_health_through_nginx(site):
    r = site.https("/api/v1/streaming/health")
    assert r.rc == 0 and r.status == 200 and r.body.strip() == "OK", f"streaming health: {r.describe()}"


def test_streaming_websocket_upgrade(site):
    r = site.https(
        "/api/v1/streaming",
        "-N", "--http1.1",
        "-H", "Connection: Upgrade",
        "-H", "Upgrade: websocket",
        "-H", "Sec-WebSocket-Version: 13",
        "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        max_time=5,
    )
    # curl keeps the upgraded connection open until --max-time: rc 28 is expected.
    assert r.status == 101, f"websocket upgrade on /api/v1/streaming: {r.describe()}"
    assert r.headers.get("upgrade", "").lower() == "websocket", f"no `Upgrade: websocket` header: {r.describe()}"


def test_http_redirects_to_https(site):
    r = site.http("/anything?x=1")
    assert r.status == 301, f"http://{site.domain}/anything: {r.describe()}"
    assert r.redirect_url == f"https://{site.domain}/anything?x=1", (
        f"http:// redirects to {r.redirect_url!r}, expected https://{site.domain}/anything?x=1"
    )


def _is_mastodon_answer(r) -> bool:
    return r.rc == 0 and 200 <= r.status < 400


def test_unknown_server_name_refused(host):
    """SNI/Host of a name the host does not serve: refused (reset, TLS failure, 444), never served."""
    r = curl(host, "https://other.invalid/api/v1/instance", resolve="other.invalid:443:127.0.0.1", insecure=True)
    assert not _is_mastodon_answer(r), f"https://other.invalid/ was answered: {r.describe()}"
    assert '"uri"' not in r.body, f"https://other.invalid/ returned an instance document: {r.describe()}"


def test_unknown_host_header_not_served(site):
    """Right SNI, wrong Host header: must not reach Mastodon as if it were our domain."""
    r = site.https("/api/v1/instance", "-H", "Host: other.invalid")
    assert not (r.status == 200 and '"uri"' in r.body), f"Host: other.invalid was served: {r.describe()}"


def test_unknown_server_name_over_http_not_served(host, domain):
    r = curl(host, "http://other.invalid/api/v1/instance", resolve="other.invalid:80:127.0.0.1")
    assert '"uri"' not in r.body, f"http://other.invalid/ returned an instance document: {r.describe()}"


def test_certificate_presented_for_domain(host, domain, ca_file):
    """The certificate served for DOMAIN verifies with curl without -k (explicit SNI check)."""
    cmd = (
        f"curl -sS -o /dev/null --max-time 15 --resolve {domain}:443:127.0.0.1 "
        + (f"--cacert {shlex.quote(ca_file)} " if ca_file else "")
        + f"-w '%{{ssl_verify_result}}' https://{domain}/health"
    )
    result = host.run(cmd)
    assert result.rc == 0 and result.stdout.strip() == "0", (
        f"TLS verification for {domain} failed: rc={result.rc} verify={result.stdout!r} {result.stderr.strip()}"
    )
