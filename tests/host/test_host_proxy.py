"""nginx in front of web and streaming (SPEC §7), checked with curl ON the host via 127.0.0.1."""

from __future__ import annotations

import json
import secrets
import shlex

import pytest
from contract import LETSENCRYPT_DIR, container_name, nginx_conf
from host_helpers import compose_psql, curl

pytestmark = pytest.mark.roles("proxy")


def test_nginx_config_valid(host):
    result = host.run(f"docker exec {container_name('nginx')} nginx -t")
    assert result.rc == 0, f"nginx -t failed: {result.stderr.strip()[-800:]}"


def test_server_block_names_only_domain(host, domain):
    conf = host.file(nginx_conf(domain))
    assert conf.contains(f"server_name[[:space:]]\\+{domain}[[:space:]]*;"), (
        f"{domain}.conf has no `server_name {domain};`"
    )
    assert conf.contains(f"{LETSENCRYPT_DIR}/live/{domain}/fullchain.pem"), "certificate path missing"
    assert conf.contains(f"{LETSENCRYPT_DIR}/live/{domain}/privkey.pem"), "key path missing"


def test_health_over_https_with_verified_certificate(site, ca_file):
    r = site.https("/health")
    where = f"CA file {ca_file}" if ca_file else "the system CA store"
    assert r.rc == 0, f"https://{site.domain}/health did not verify against {where}: {r.describe()}"
    assert r.status == 200 and r.body.strip() == "OK", f"https://{site.domain}/health: {r.describe()}"


def test_instance_api_through_nginx(site, expected_version):
    """A 200 here also proves X-Forwarded-Proto: https reaches the app (it redirects to https without it)."""
    r = site.https("/api/v1/instance")
    assert r.rc == 0 and r.status == 200, (
        f"/api/v1/instance through nginx: {r.describe()} (301 = X-Forwarded-Proto not passed; 403 = Host not passed)"
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


WS_HEADERS = (
    "-N",
    "--http1.1",
    "-H",
    "Connection: Upgrade",
    "-H",
    "Upgrade: websocket",
    "-H",
    "Sec-WebSocket-Version: 13",
    "-H",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
)


def test_streaming_upgrade_without_token_is_refused_by_streaming(site):
    """streaming/index.js authenticates every upgrade: no token -> 401 `X-Error-Message: Missing access token`.

    The header is written by the streaming server itself (nginx has no such header), so this also
    proves that the upgrade went through nginx to streaming."""
    r = site.https("/api/v1/streaming", *WS_HEADERS, max_time=5)
    assert r.status == 401, f"websocket upgrade without a token on /api/v1/streaming: {r.describe()}"
    assert r.headers.get("x-error-message") == "Missing access token", (
        "the 401 does not come from the streaming server (no `X-Error-Message: Missing access token`): " + r.describe()
    )


def test_streaming_upgrade_with_invalid_token_is_refused(site):
    r = site.https(
        "/api/v1/streaming", *WS_HEADERS, "-H", "Authorization: Bearer not-a-token-of-this-instance", max_time=5
    )
    assert r.status == 401 and r.headers.get("x-error-message") == "Invalid access token", (
        f"websocket upgrade with an unknown token: {r.describe()}"
    )


@pytest.fixture
def owner_token(host, admin_username):
    """An access token of the owner account, stored the way Mastodon stores one (a row of
    oauth_access_tokens, scope `read`), inserted with psql through `docker compose exec db`; removed after."""
    token = secrets.token_urlsafe(32)
    row = compose_psql(
        host,
        "INSERT INTO oauth_access_tokens (token, resource_owner_id, scopes, created_at) "
        f"SELECT '{token}', u.id, 'read', now() FROM users u JOIN accounts a ON a.id = u.account_id "
        f"WHERE lower(a.username) = lower('{admin_username}') AND a.domain IS NULL "
        "RETURNING id, (SELECT account_id FROM users WHERE users.id = resource_owner_id)",
    )
    assert row, f"no local account {admin_username!r} to make a token for"
    token_id, account_id = row.splitlines()[0].split("|")
    try:
        yield token, account_id
    finally:
        compose_psql(host, f"DELETE FROM oauth_access_tokens WHERE id = {int(token_id)}")


@pytest.mark.whole_server  # the token goes into PostgreSQL and the event into Redis on this host
def test_streaming_websocket_upgrade(host, site, owner_token):
    """With a valid token: 101, and an event published on Redis `timeline:<account id>` arrives over TLS.

    curl keeps the upgraded connection open until --max-time (rc 28 is expected) while the event is
    published with redis-cli in the redis container; the server's frames are unmasked, so the JSON
    message is readable in curl's output."""
    token, account_id = owner_token
    marker = secrets.token_hex(8)
    message = json.dumps({"event": "update", "payload": {"id": marker, "content": "host suite"}})
    curl_cmd = " ".join(
        shlex.quote(c)
        for c in [
            "curl",
            "-sS",
            "-i",
            "--max-time",
            "8",
            "--resolve",
            f"{site.domain}:443:127.0.0.1",
            *(["--cacert", site.ca_file] if site.ca_file else []),
            *WS_HEADERS,
            "-H",
            f"Authorization: Bearer {token}",
            f"https://{site.domain}/api/v1/streaming?stream=user",
        ]
    )
    redis = f"docker exec {container_name('redis')} redis-cli"
    script = (
        f'out=$(mktemp); {curl_cmd} > "$out" 2>&1 & pid=$!; '
        # upstream's subscriptionHeartbeat marks a subscribed channel with `subscribed:<channel>`
        f'for i in $(seq 25); do [ "$({redis} exists subscribed:timeline:{account_id})" = 1 ] && break; '
        "sleep 0.2; done; "
        f"for i in 1 2 3; do {redis} publish timeline:{account_id} {shlex.quote(message)} >/dev/null; sleep 0.5; done; "
        'wait $pid; cat "$out"; rm -f "$out"'
    )
    result = host.run(script)
    out = result.stdout_bytes.decode("utf-8", "replace")
    assert out.startswith("HTTP/1.1 101"), f"websocket upgrade with a valid token: {out[:600]!r}"
    assert "upgrade: websocket" in out.lower(), f"no `Upgrade: websocket` header: {out[:600]!r}"
    expected = json.dumps(
        {
            "stream": ["user"],
            "event": "update",
            "payload": json.dumps({"id": marker, "content": "host suite"}, separators=(",", ":")),
        },
        separators=(",", ":"),
    )
    assert marker in out, f"the event published on timeline:{account_id} did not arrive: {out[:800]!r}"
    assert expected in out or '"stream":["user"]' in out, f"event not in upstream's format: {out[:800]!r}"


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
