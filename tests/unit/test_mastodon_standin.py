"""Pure-logic tests of the Mastodon stand-in (tests/sandbox/standins/mastodon), a test double of the images."""

import os
import sys

import pytest

STANDIN_DIR = os.path.join(os.path.dirname(__file__), "..", "sandbox", "standins", "mastodon")
sys.path.insert(0, os.path.abspath(STANDIN_DIR))

from standin import plain_version, version_tuple  # noqa: E402
from standin.boot import AR_KEYS, boot_errors, skip_post_deployment_migrations  # noqa: E402
from standin.migrations import migrations_for, pending, schema_version  # noqa: E402
from standin.streaming import accept_key  # noqa: E402
from standin.tootctl import CREATE_OPTIONS, Failure, parse  # noqa: E402
from standin.web import allowed_hosts, host_without_port  # noqa: E402

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
