"""Pure-logic tests of the Mastodon stand-in (tests/sandbox/standins/mastodon), a test double of the images."""

import os
import sys

import pytest

STANDIN_DIR = os.path.join(os.path.dirname(__file__), "..", "sandbox", "standins", "mastodon")
sys.path.insert(0, os.path.abspath(STANDIN_DIR))

from standin import plain_version, version_tuple  # noqa: E402
from standin.boot import AR_KEYS, boot_errors, skip_post_deployment_migrations  # noqa: E402
from standin.migrations import migrations_for, pending, schema_version  # noqa: E402
from standin.sidekiq import DEFAULT_QUEUES, UsageError, parse_options, process_title  # noqa: E402
from standin.storage import S3Settings, StorageError, id_partition, media_filename, ruby_to_i, s3_enabled, s3_put  # noqa: E402
from standin.streaming import accept_key  # noqa: E402
from standin.tootctl import CREATE_OPTIONS, Failure, parse  # noqa: E402
from standin.web import allowed_hosts, host_without_port, media_type, uploaded_file  # noqa: E402

GOOD_ENV = {
    "RAILS_ENV": "production",
    "LOCAL_DOMAIN": "social1.sandbox.test",
    "SECRET_KEY_BASE": "x" * 128,
    **{key: "value" for key in AR_KEYS},
}


def test_versions():
    assert plain_version("v4.6.5") == "4.6.5"
    assert version_tuple("v4.6.5") == (4, 6, 5)
    assert version_tuple("v4.7.0-beta.1") == (4, 7, 0)


def test_boot_accepts_complete_env():
    assert boot_errors(GOOD_ENV) is None


@pytest.mark.parametrize("key", AR_KEYS)
@pytest.mark.parametrize("value", [None, "", "  "])
def test_boot_aborts_without_each_ar_key(key, value):
    env = dict(GOOD_ENV)
    if value is None:
        del env[key]
    else:
        env[key] = value
    assert "Mastodon now requires that these variables are set:" in boot_errors(env)


def test_boot_rejects_test_values_and_missing_secrets():
    env = dict(GOOD_ENV, ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY="abcDO_NOT_USE_IN_PRODUCTION")
    assert "from the test environment" in boot_errors(env)
    assert "secret_key_base" in boot_errors(dict(GOOD_ENV, SECRET_KEY_BASE=""))
    assert "LOCAL_DOMAIN" in boot_errors({k: v for k, v in GOOD_ENV.items() if k != "LOCAL_DOMAIN"})


@pytest.mark.parametrize("value", ["true", "false", "0", ""])
def test_skip_post_deployment_is_presence_only(value):
    assert skip_post_deployment_migrations({"SKIP_POST_DEPLOYMENT_MIGRATIONS": value})
    assert not skip_post_deployment_migrations({})


def test_migrations_per_version():
    old, new = migrations_for("v4.6.4"), migrations_for("v4.6.5")
    assert [m.kind for m in old] == ["pre", "pre", "post"]
    assert set(old) < set(new)
    added = [m for m in new if m not in old]
    assert sorted(m.kind for m in added) == ["post", "pre"]
    assert all(len(m.version) == 14 and m.version.isdigit() for m in new)
    assert list(new) == sorted(new, key=lambda m: m.version)
    assert schema_version(new) == max(m.version for m in new)


def test_pending_respects_skip():
    old, new = migrations_for("v4.6.4"), migrations_for("v4.6.5")
    applied = {m.version for m in old}
    assert [m.kind for m in pending(new, applied, skip_post=True)] == ["pre"]
    assert sorted(m.kind for m in pending(new, applied, skip_post=False)) == ["post", "pre"]
    assert pending(new, {m.version for m in new}, skip_post=False) == ()


def test_humanized_names():
    assert migrations_for("v4.6.5")[0].humanized == "Create accounts and users"


def test_websocket_accept_key_rfc6455_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_tootctl_option_parsing():
    pos, opts = parse(["admin", "--email", "a@b.c", "--confirmed", "--role=Owner", "--approve"], CREATE_OPTIONS)
    assert pos == ["admin"]
    assert opts == {"--email": "a@b.c", "--confirmed": True, "--role": "Owner", "--approve": True}
    with pytest.raises(Failure):
        parse(["admin", "--bogus"], CREATE_OPTIONS)


def test_host_authorization_helpers():
    env = {"LOCAL_DOMAIN": "Social1.sandbox.test", "ALTERNATE_DOMAINS": "a.test, b.test"}
    assert allowed_hosts(env) == {"social1.sandbox.test", "a.test", "b.test"}
    assert host_without_port("social1.sandbox.test:443") == "social1.sandbox.test"
    assert host_without_port("[::1]:3000") == "[::1]"


# ------------------------------------------ strictness rules (tests/sandbox/standins/mastodon/README.md)

import json  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from standin import boot as boot_module  # noqa: E402
from standin.mail_validation import email_errors, format_errors, resolve_mx  # noqa: E402
from standin.redis import Redis, RedisError, encode  # noqa: E402
from standin.redis import config as redis_config  # noqa: E402
from standin.sidekiq import redis_version  # noqa: E402
from standin.streaming import (  # noqa: E402
    AuthenticationError,
    Session,
    channels_for,
    scopes_allow,
    token_from_request,
)
from standin.tootctl import after_commit_jobs  # noqa: E402


class FakeResolver:
    """dnspython's Resolver.resolve() shape; zone: {(name, type): [records]}; missing = NXDOMAIN."""

    def __init__(self, zone):
        self.zone = zone
        self.asked = []

    def resolve(self, name, rdtype, **kw):
        self.asked.append((name, rdtype))
        if (name, rdtype) not in self.zone:
            raise LookupError("NXDOMAIN")
        records = self.zone[(name, rdtype)]
        return SimpleNamespace(rrset=records)


def mx(host):
    return SimpleNamespace(exchange=SimpleNamespace(to_text=lambda omit_final_dot=True: host))


def a(ip):
    return SimpleNamespace(address=ip)


SANDBOX_ZONE = {
    ("sandbox.test", "MX"): [mx("mail.sandbox.test")],
    ("mail.sandbox.test", "A"): [a("10.0.0.2")],
    ("nullmx.sandbox.test", "MX"): [mx(".")],
    ("nullmx.sandbox.test", "A"): [a("10.0.0.2")],
    ("nomx.sandbox.test", "A"): [a("10.0.0.2")],
}


@pytest.mark.parametrize(
    "address",
    [
        "a%b@sandbox.test",
        "a,b@sandbox.test",
        '"a"@sandbox.test',
        "a b@sandbox.test",
        "admin@",
        "Admin <admin@sandbox.test>",
    ],
)
def test_email_address_validator_rejects(address):
    assert "invalid" in format_errors(address)


def test_email_address_validator_accepts_plain_addresses():
    assert format_errors("admin@sandbox.test") == []
    assert format_errors("first.last+tag@social1.sandbox.test") == []


@pytest.mark.parametrize(
    "address,expected",
    [
        ("admin@sandbox.test", []),  # MX with an A record
        ("admin@nomx.sandbox.test", []),  # no MX, the domain's own A record
        ("admin@nowhere.sandbox.test", ["unreachable"]),  # NXDOMAIN
        ("admin@nullmx.sandbox.test", ["unreachable"]),  # RFC 7505 null MX, even with an A record
        ("a%b@sandbox.test", ["invalid"]),
    ],
)
def test_email_mx_validator(address, expected):
    assert email_errors(address, FakeResolver(SANDBOX_ZONE)) == expected


def test_double_dot_domain_is_invalid_without_a_lookup():
    resolver = FakeResolver(SANDBOX_ZONE)
    assert set(email_errors("admin@sandbox..test", resolver)) == {"invalid"}
    assert resolver.asked == []


def test_null_mx_skips_the_address_lookups():
    resolver = FakeResolver(SANDBOX_ZONE)
    ips, records = resolve_mx("nullmx.sandbox.test", resolver)
    assert (ips, records) == ([], [""])
    assert resolver.asked == [("nullmx.sandbox.test", "MX")]


def test_mx_hosts_addresses_are_looked_up():
    resolver = FakeResolver(SANDBOX_ZONE)
    ips, _ = resolve_mx("sandbox.test", resolver)
    assert ips == ["10.0.0.2"]
    assert ("mail.sandbox.test", "A") in resolver.asked and ("mail.sandbox.test", "AAAA") in resolver.asked


@pytest.mark.parametrize("value", ["", "mastodon", "x"])
def test_redis_namespace_aborts_every_rails_boot(value):
    message = boot_errors(dict(GOOD_ENV, REDIS_NAMESPACE=value))
    assert message.startswith("ERROR: the REDIS_NAMESPACE environment variable is no longer supported")
    assert "redis_namespace_migration" in message
    assert "ES_PREFIX" not in message


def test_redis_namespace_message_mentions_es_prefix_when_es_is_on():
    message = boot_errors(dict(GOOD_ENV, REDIS_NAMESPACE="m", ES_ENABLED="true"))
    assert 'set ES_PREFIX to "m"' in message


def test_redis_configuration_like_upstream():
    assert redis_config({}) == ("localhost", 6379, 0, None, None)
    assert redis_config({"REDIS_HOST": "redis", "REDIS_PORT": "6380", "REDIS_PASSWORD": "pw"}) == (
        "redis",
        6380,
        0,
        None,
        "pw",
    )
    assert redis_config({"REDIS_URL": "redis://u:p%40@r:7000/2", "REDIS_HOST": "ignored"}) == ("r", 7000, 2, "u", "p@")
    assert redis_config({}, default_host="127.0.0.1")[0] == "127.0.0.1"  # streaming/redis.js


def test_resp_encoding():
    assert encode("SET", "k", 1) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_redis_down_is_a_connection_error():
    with pytest.raises(RedisError, match="ECONNREFUSED"):
        Redis({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(closed_port())}).connect()


def fake_redis(replies):
    """A one-connection RESP server that answers each command with the next canned reply."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    seen = []

    def serve():
        conn, _ = srv.accept()
        data = b""
        for reply in replies:
            while data.count(b"\r\n") < 1 or not _complete(data):
                data += conn.recv(4096)
            seen.append(data)
            data = b""
            conn.sendall(reply)
        conn.close()
        srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1], seen


def _complete(data):
    lines = data.split(b"\r\n")
    return len(lines) >= 1 + 2 * int(lines[0][1:] or 0)


def test_redis_client_round_trip_and_error_reply():
    port, seen = fake_redis([b"+PONG\r\n", b"$5\r\nhello\r\n", b"-NOAUTH Authentication required.\r\n"])
    with Redis({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port)}) as r:
        assert r.call("PING") == "PONG"
        assert r.call("GET", "k") == b"hello"
        with pytest.raises(RedisError, match="NOAUTH"):
            r.call("GET", "k")
    assert seen[0] == b"*1\r\n$4\r\nPING\r\n"


def test_sidekiq_reads_the_redis_version():
    assert redis_version("# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n") == (7, 0, 15)
    assert redis_version("redis_version:6.2.1\r\n") < (7, 0, 0)


def test_tootctl_contacts_redis_when_upstream_does():
    # --confirmed --approve: approve! -> prepare_new_user! (the deploy's call)
    assert {j[1] for j in after_commit_jobs(7, 3, confirmed=True, approve=True)} >= {"BootstrapTimelineWorker"}
    # not confirmed: Devise's confirmation mail, deliver_later
    assert [j[2][1] for j in after_commit_jobs(7, 3, confirmed=False, approve=False)] == ["confirmation_instructions"]
    assert after_commit_jobs(7, 3, confirmed=True, approve=False) == []


def test_boot_counter_and_boot_seconds(monkeypatch):
    recorded, slept = [], []
    monkeypatch.setattr(boot_module, "record_boot", lambda env: recorded.append(boot_module.boot_command(env)))
    monkeypatch.setattr(boot_module.time, "sleep", slept.append)
    env = dict(GOOD_ENV, STANDIN_BOOT_COMMAND="bundle exec rails db:prepare", STANDIN_BOOT_SECONDS="2.5")
    boot_module.boot_rails(env)
    boot_module.boot_rails(env, count=False)
    assert recorded == ["bundle exec rails db:prepare"] and slept == [2.5]
    with pytest.raises(SystemExit):  # an aborted boot is still a boot
        boot_module.boot_rails(dict(env, REDIS_NAMESPACE="x"))
    assert len(recorded) == 2
    assert boot_module.boot_seconds({}) == 0.0


class Headers(dict):
    def get(self, key, default=None):
        return super().get(key, default)


def test_streaming_token_sources_like_accountFromRequest():
    with pytest.raises(AuthenticationError, match="Missing access token"):
        token_from_request(Headers(), {})
    assert token_from_request(Headers({"Authorization": "Bearer abc"}), {"access_token": ["q"]}) == "abc"
    assert token_from_request(Headers(), {"access_token": ["q"]}) == "q"
    assert token_from_request(Headers({"Sec-WebSocket-Protocol": "p"}), {}) == "p"


def test_streaming_scopes_and_channels():
    account = {"account_id": 42, "access_token_id": 9, "scopes": ["read"]}
    assert channels_for("user", account) == ["timeline:42", "timeline:42:notifications"]
    assert channels_for("user", dict(account, scopes=["read:statuses"])) == ["timeline:42"]
    assert scopes_allow("user", dict(account, scopes=["read:statuses"]))
    assert not scopes_allow("user", dict(account, scopes=["write"]))


def test_streaming_delivers_in_upstream_format():
    sent = []
    session = Session(None, {"account_id": 42, "access_token_id": 9, "scopes": ["read"]}, {})
    session.send_json = sent.append
    session.streams["timeline:42"] = ["user"]
    session.deliver("timeline:42", json.dumps({"event": "update", "payload": {"id": "1"}}))
    session.deliver("timeline:42", json.dumps({"event": "delete", "payload": "1"}))
    session.deliver("timeline:42", "not json")
    session.deliver("timeline:other", json.dumps({"event": "update", "payload": "x"}))
    assert sent == [
        {"stream": ["user"], "event": "update", "payload": '{"id":"1"}'},
        {"stream": ["user"], "event": "delete", "payload": "1"},
    ]


def test_sidekiq_command_line():
    assert parse_options([]) == (5, DEFAULT_QUEUES)
    assert parse_options(["-c", "25", "-q", "default,8", "--queue=push"]) == (25, ("default,8", "push"))
    assert parse_options(["--concurrency", "3"]) == (3, DEFAULT_QUEUES)
    assert process_title(25) == "sidekiq 8.1.6 mastodon [0 of 25 busy]"
    for bad in (["-x"], ["-c"], ["-c", "many"], ["--queues", "push"]):
        with pytest.raises(UsageError):
            parse_options(bad)


# ------------------------------------------------------------------ media storage (storage.py, paperclip.rb)


def test_s3_only_when_s3_enabled_is_exactly_true():
    assert s3_enabled({"S3_ENABLED": "true"})
    for value in ("True", "1", "yes", "", "false"):
        assert not s3_enabled({"S3_ENABLED": value}), value
    assert not s3_enabled({})


def test_s3_defaults_are_upstreams():
    cfg = S3Settings.from_env({"S3_BUCKET": "media"})
    assert (cfg.region, cfg.protocol, cfg.hostname) == ("us-east-1", "https", "s3-us-east-1.amazonaws.com")
    assert (cfg.permission, cfg.signature_version, cfg.open_timeout, cfg.read_timeout) == ("public-read", "v4", 5, 5)
    assert cfg.endpoint is None and cfg.force_path_style is False and cfg.alias_host is None
    assert S3Settings.from_env({"S3_REGION": "eu-west-3"}).hostname == "s3-eu-west-3.amazonaws.com"
    # ENV.fetch: a default only when the variable is absent, an empty one stays empty
    assert S3Settings.from_env({"S3_PROTOCOL": ""}).protocol == ""


def test_s3_endpoint_makes_path_style_unless_overridden():
    cfg = S3Settings.from_env({"S3_ENDPOINT": "http://s3.sandbox.test:9000"})
    assert cfg.force_path_style is True
    cfg = S3Settings.from_env({"S3_ENDPOINT": "http://s3.sandbox.test:9000", "S3_OVERRIDE_PATH_STYLE": "true"})
    assert cfg.force_path_style is False
    # ENV.has_key?: an empty S3_ENDPOINT is still an endpoint (and fails when used)
    assert S3Settings.from_env({"S3_ENDPOINT": ""}).endpoint == ""


def test_s3_url_shapes():
    env = {"S3_BUCKET": "media", "S3_ENDPOINT": "http://s3.sandbox.test:9000", "S3_HOSTNAME": "s3.sandbox.test:9000"}
    path = "media_attachments/files/110/000/000/000/000/001/original/abc.png"
    assert S3Settings.from_env({**env, "S3_PROTOCOL": "http"}).url(path) == f"http://s3.sandbox.test:9000/media/{path}"
    assert S3Settings.from_env(env).url(path) == f"https://s3.sandbox.test:9000/media/{path}"
    assert S3Settings.from_env({**env, "S3_PROTOCOL": ""}).url(path) == f"//s3.sandbox.test:9000/media/{path}"
    assert S3Settings.from_env({**env, "S3_ALIAS_HOST": "files.example"}).url(path) == f"https://files.example/{path}"
    assert S3Settings.from_env({**env, "S3_CLOUDFRONT_HOST": "cdn.example"}).url(path) == f"https://cdn.example/{path}"


def test_id_partition_is_paperclips():
    assert id_partition(1) == "000/000/001"
    assert id_partition(113_000_123_456_789_012) == "113/000/123/456/789/012"
    # a length that is not a multiple of 3 loses its last digits, as scan(/\d{3}/) does
    assert id_partition(1234567890) == "123/456/789"


def test_media_filename_is_obfuscated_with_a_fitting_extension():
    name = media_filename("holiday photo.PNG", "image/png")
    assert name.endswith(".png") and len(name) == 16 + 4 and name[:16] != "holiday photo"
    assert media_filename("clip.bin", "video/mp4").endswith(".mp4")
    assert "." not in media_filename("", "application/x-unknown-type")


def test_ruby_to_i():
    assert (ruby_to_i("5"), ruby_to_i(" 12abc"), ruby_to_i("abc"), ruby_to_i("")) == (5, 12, 0, 0)


def test_s3_upload_without_bucket_fails_before_any_request():
    with pytest.raises(StorageError) as err:
        s3_put(S3Settings.from_env({"S3_ENDPOINT": "http://s3.sandbox.test:9000"}), "k", b"x", "text/plain")
    assert (err.value.kind, err.value.ruby_class) == ("unhandled", "ArgumentError")
    assert "missing required :bucket option" in str(err.value)


def test_multipart_file_param_and_media_type():
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="description"\r\n\r\nhi\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\ncontent\r\n--XX--\r\n"
    )
    assert uploaded_file("multipart/form-data; boundary=XX", body) == (b"content", "a.txt", "text/plain")
    assert uploaded_file("video/mp4", b"raw") == (b"raw", "", "video/mp4")
    assert [media_type(t) for t in ("image/gif", "image/png", "video/mp4", "audio/ogg", "text/plain")] == [
        "gifv",
        "image",
        "video",
        "audio",
        "unknown",
    ]
