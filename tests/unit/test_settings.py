"""
Settings: types, validation, messages (one line, host + key, never a secret), derived values, the
README table and group_data/all.py.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from pyinfra_mastodon import docs, secrets, settings
from pyinfra_mastodon.settings import (
    DEFAULTS,
    SECRET_ENV_KEYS,
    SETTINGS,
    SETTINGS_BY_NAME,
    SettingsError,
    load_config,
    load_inventory_configs,
)

REPO = Path(__file__).resolve().parents[2]
BASE = {
    "mastodon_server_id": "42",
    "mastodon_zone": "example.org",
    "mastodon_admin_email": "admin@example.org",
}


def cfg(**data):
    return load_config("web1", {**BASE, **data})


def error(**data) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        load_config("web1", {**BASE, **data})
    return info.value


# Resolution
#


def test_minimal_host_resolves_with_defaults():
    config = cfg()
    assert config.domain == "social42.example.org"
    assert config.host == "web1"
    assert config.web_image == "ghcr.io/mastodon/mastodon:v4.6.5"
    assert config.streaming_image == "ghcr.io/mastodon/mastodon-streaming:v4.6.5"
    assert config.postgres_image == "postgres:14-alpine"
    assert config.redis_image == "redis:7-alpine"
    assert config.nginx_image == "jonasal/nginx-certbot:latest"
    assert config.certbot_email == "admin@example.org"
    assert config.smtp_from_address == "notifications@social42.example.org"
    assert config.admin_username == "admin"
    assert config.secret_overrides == {}
    assert config.images["sidekiq"] == config.web_image


def test_works_with_defaults_merged_like_deploy_data():
    # Inside @deploy(data_defaults=DEFAULTS), host.data.dict() has every default too.
    assert load_config("web1", {**DEFAULTS, **BASE}) == cfg()


def test_int_server_id_and_sandbox_domain():
    config = load_config(
        "sandbox",
        {"mastodon_server_id": 1, "mastodon_zone": "sandbox.test", "mastodon_admin_email": "admin@sandbox.test"},
    )
    assert config.server_id == "1" and config.domain == "social1.sandbox.test"


def test_version_substitution_and_pinned_digest():
    digest = "@sha256:" + "a" * 64
    config = cfg(
        mastodon_version="v4.6.4", mastodon_web_image="registry.example:5000/mirror/mastodon:{version}" + digest
    )
    assert config.web_image == "registry.example:5000/mirror/mastodon:v4.6.4" + digest
    assert config.streaming_image.endswith(":v4.6.4")


def test_other_keys_are_ignored():
    assert cfg(ssh_port=2222, _sudo=True, my_own_thing="x", mastodon_extra_env={"S3_ENABLED": False}).domain


def test_explicit_values():
    config = cfg(
        mastodon_certbot_email="tls@example.org",
        mastodon_smtp_from_address="Mastodon <noreply@example.org>",
        mastodon_smtp_port=465,
        mastodon_certbot_local_ca=True,
    )
    assert config.certbot_email == "tls@example.org"
    assert config.smtp_from_address == "Mastodon <noreply@example.org>"
    assert config.smtp_port == 465 and config.certbot_local_ca is True


def test_secret_overrides_and_repr():
    private, public = secrets.generate_vapid_keypair()
    values = {
        "mastodon_secret_key_base": secrets.generate_secret_key_base(),
        "mastodon_active_record_encryption_primary_key": secrets.generate_active_record_key(),
        "mastodon_vapid_private_key": private,
        "mastodon_vapid_public_key": public,
        "mastodon_smtp_password": "hunter2-smtp",
        "mastodon_extra_env": {"AWS_SECRET_ACCESS_KEY": "s3-secret-value"},
    }
    config = cfg(**values)
    assert config.secret_overrides == {
        "SECRET_KEY_BASE": values["mastodon_secret_key_base"],
        "VAPID_PRIVATE_KEY": private,
        "VAPID_PUBLIC_KEY": public,
        "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY": values["mastodon_active_record_encryption_primary_key"],
    }
    text = repr(config)
    for value in (*values.values(), "s3-secret-value"):
        if isinstance(value, str):
            assert value not in text


# Errors
#


def test_error_message_shape():
    e = error(mastodon_server_id="4 2")
    assert (e.host, e.key) == ("web1", "mastodon_server_id")
    assert str(e).startswith("host 'web1': setting 'mastodon_server_id': '4 2' ")
    assert "\n" not in str(e)


@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"mastodon_server_id": "4 2"}, "mastodon_server_id", "may only contain"),
        ({"mastodon_server_id": "a/b"}, "mastodon_server_id", "may only contain"),
        ({"mastodon_server_id": "A1"}, "mastodon_server_id", "may only contain"),
        ({"mastodon_server_id": True}, "mastodon_server_id", "must be str or int"),
        ({"mastodon_server_id": -1}, "mastodon_server_id", "negative"),
        ({"mastodon_server_id": "-"}, "mastodon_server_id", "domain"),
        ({"mastodon_server_id": "x" * 60}, "mastodon_server_id", "longer than 63"),
        ({"mastodon_prefix": "so cial"}, "mastodon_prefix", "may only contain"),
        ({"mastodon_zone": "example"}, "mastodon_zone", "at least 2 labels"),
        ({"mastodon_zone": "example.org."}, "mastodon_zone", "dot"),
        ({"mastodon_zone": "Example.org"}, "mastodon_zone", "lower-case"),
        ({"mastodon_zone": "ex_ample.org"}, "mastodon_zone", "DNS name"),
        ({"mastodon_zone": "-x.org"}, "mastodon_zone", "DNS name"),
        ({"mastodon_zone": ("a" * 60 + ".") * 4 + "org"}, "mastodon_zone", "253"),
        ({"mastodon_zone": ""}, "mastodon_zone", "empty"),
        ({"mastodon_admin_email": "admin.example.org"}, "mastodon_admin_email", "local@domain"),
        ({"mastodon_admin_email": "a b@example.org"}, "mastodon_admin_email", "local@domain"),
        ({"mastodon_admin_email": "admin@localhost"}, "mastodon_admin_email", "local@domain"),
        ({"mastodon_admin_username": "Admin"}, "mastodon_admin_username", "a-z0-9_"),
        ({"mastodon_admin_username": "a" * 31}, "mastodon_admin_username", "a-z0-9_"),
        ({"mastodon_version": "v4.6.5;rm -rf /"}, "mastodon_version", "image tag"),
        ({"mastodon_version": "$(id)"}, "mastodon_version", "image tag"),
        ({"mastodon_version": "`id`"}, "mastodon_version", "image tag"),
        ({"mastodon_version": "v4\n"}, "mastodon_version", "newline"),
        ({"mastodon_version": ""}, "mastodon_version", "image tag"),
        ({"mastodon_web_image": "ghcr.io/mastodon/mastodon:{version} "}, "mastodon_web_image", "image reference"),
        ({"mastodon_web_image": "Ghcr.io/Mastodon:x"}, "mastodon_web_image", "image reference"),
        ({"mastodon_nginx_image": "Jonasal/nginx-certbot:latest"}, "mastodon_nginx_image", "image reference"),
        ({"mastodon_redis_image": "redis:7'"}, "mastodon_redis_image", "image reference"),
        ({"mastodon_nginx_image": "nginx@sha256:abc"}, "mastodon_nginx_image", "image reference"),
        ({"mastodon_nginx_image": "nginx:{tag}"}, "mastodon_nginx_image", "image reference"),
        ({"mastodon_certbot_staging": "yes"}, "mastodon_certbot_staging", "must be bool"),
        ({"mastodon_certbot_local_ca": 1}, "mastodon_certbot_local_ca", "must be bool"),
        ({"mastodon_smtp_port": "587"}, "mastodon_smtp_port", "must be int"),
        ({"mastodon_smtp_port": True}, "mastodon_smtp_port", "must be int"),
        ({"mastodon_smtp_port": 0}, "mastodon_smtp_port", "1-65535"),
        ({"mastodon_smtp_server": "smtp.example.org; id"}, "mastodon_smtp_server", "host name"),
        ({"mastodon_smtp_login": "user\x00"}, "mastodon_smtp_login", "NUL"),
        ({"mastodon_smtp_from_address": "nobody"}, "mastodon_smtp_from_address", "local@domain"),
        ({"mastodon_extra_env": {"lower": "x"}}, "mastodon_extra_env", "must match"),
        ({"mastodon_extra_env": {"LOCAL_DOMAIN": "x"}}, "mastodon_extra_env", "managed"),
        ({"mastodon_extra_env": {"SECRET_KEY_BASE": "x"}}, "mastodon_extra_env", "managed"),
        ({"mastodon_extra_env": {"DB_HOST": "x"}}, "mastodon_extra_env", "managed"),
        ({"mastodon_extra_env": {"SKIP_POST_DEPLOYMENT_MIGRATIONS": "true"}}, "mastodon_extra_env", "managed"),
        ({"mastodon_extra_env": {"X": "a\nb"}}, "mastodon_extra_env", "newline"),
        ({"mastodon_extra_env": {"X": 1.5}}, "mastodon_extra_env", "str, int or bool"),
        ({"mastodon_extra_env": [("X", 1)]}, "mastodon_extra_env", "must be dict"),
        ({"mastodon_postgres_wait_timeout": 1}, "mastodon_postgres_wait_timeout", "5-3600"),
        ({"mastodon_healthy_timeout": 3.5}, "mastodon_healthy_timeout", "must be int"),
        ({"mastodon_backup_before_upgrade": None}, "mastodon_backup_before_upgrade", "must be bool"),
        ({"mastodon_zone": None}, "mastodon_zone", "is required"),
    ],
)
def test_bad_values(data, key, words):
    e = error(**data)
    assert e.key == key, str(e)
    assert words in e.problem, str(e)
    assert "\n" not in str(e)


@pytest.mark.parametrize("missing", ["mastodon_server_id", "mastodon_zone", "mastodon_admin_email"])
def test_missing_required(missing):
    data = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(SettingsError, match=f"setting '{missing}': is required"):
        load_config("web1", data)


@pytest.mark.parametrize(
    "key, hint",
    [
        ("mastodon_zon", "mastodon_zone"),
        ("mastodon_serverid", "mastodon_server_id"),
        ("mastodon_admin_mail", "mastodon_admin_email"),
        ("MASTODON_VERSION", "mastodon_version"),
        ("zone", "mastodon_zone"),
        ("server_id", "mastodon_server_id"),
        ("prefix", "mastodon_prefix"),
        ("version", "mastodon_version"),
        ("admin_email", "mastodon_admin_email"),
    ],
)
def test_unknown_names_with_hint(key, hint):
    e = error(**{key: "x"})
    assert e.key == key
    assert f"did you mean '{hint}'?" in e.problem


def test_unknown_name_without_close_match():
    e = error(mastodon_something_else_entirely="x")
    assert e.problem == "unknown setting"


def test_unknown_reported_before_missing():
    # A typo of a required key says "did you mean", not "is required".
    data = {**BASE}
    data["mastodon_zon"] = data.pop("mastodon_zone")
    with pytest.raises(SettingsError, match="did you mean 'mastodon_zone'"):
        load_config("web1", data)


def test_long_bad_value_is_truncated():
    e = error(mastodon_version="x;" * 500)
    assert len(str(e)) < 250


def _bad_override(env_key: str) -> str:
    """A value the apps refuse (Mastodon, Rails, webpush), with long markers that must not be printed."""
    marker = "Z" * 40 + "-not-a-valid-secret-value-" + "Q" * 40
    if env_key.startswith("ACTIVE_RECORD"):
        return marker + secrets.TEST_ONLY_SUFFIX
    if env_key in ("SECRET_KEY_BASE", "OTP_SECRET"):
        return "   "  # blank: Rails refuses it
    return marker


@pytest.mark.parametrize("env_key, name", sorted(SECRET_ENV_KEYS.items()))
def test_bad_secret_override_never_printed(env_key, name):
    bad = _bad_override(env_key)
    data = {name: bad}
    if name == "mastodon_vapid_private_key":
        data["mastodon_vapid_public_key"] = secrets.generate_vapid_keypair()[1]
    if name == "mastodon_vapid_public_key":
        data["mastodon_vapid_private_key"] = secrets.generate_vapid_keypair()[0]
    e = error(**data)
    assert e.key == name
    assert (bad.strip() == "" or bad not in str(e)) and "ZZZZ" not in str(e) and "QQQQ" not in str(e)
    assert "expected format" in e.problem


@pytest.mark.parametrize(
    "name, value",
    [
        # YunoHost's secrets: 128 alphanumerics, not hex (mastodon_ynh scripts/install)
        ("mastodon_secret_key_base", "aB3" * 42 + "xy"),
        ("mastodon_otp_secret", "short but not blank"),
        ("mastodon_active_record_encryption_primary_key", "any-length key 1234"),
        ("mastodon_active_record_encryption_deterministic_key", "x" * 64),
    ],
)
def test_secret_overrides_accept_what_mastodon_accepts(name, value):
    config = cfg(**{name: value})
    assert value in config.secret_overrides.values()


def test_secret_override_must_be_writable_for_compose():
    e = error(mastodon_secret_key_base="it's $HOME")
    assert e.key == "mastodon_secret_key_base" and "$HOME" not in str(e)
    assert "cannot be written to .env.production" in e.problem


@pytest.mark.parametrize("address", ["a%b@example.org", "a,b@example.org", '"a"@example.org'])
def test_email_characters_mastodon_refuses(address):
    e = error(mastodon_admin_email=address)
    assert e.key == "mastodon_admin_email" and "email_address_validator.rb" in e.problem


def test_redis_namespace_in_extra_env_is_refused_with_the_migration():
    e = error(mastodon_extra_env={"REDIS_NAMESPACE": "mastodon"})
    assert e.key == "mastodon_extra_env"
    assert "REDIS_NAMESPACE" in e.problem and "redis_namespace_migration" in e.problem


def test_secret_wrong_type_is_not_printed():
    e = error(mastodon_smtp_password=123456789)
    assert "123456789" not in str(e) and "must be str" in e.problem
    e = error(mastodon_smtp_password="pass\nword-secret")
    assert "word-secret" not in str(e)


def test_vapid_pair_rules():
    private, public = secrets.generate_vapid_keypair()
    assert error(mastodon_vapid_private_key=private).key == "mastodon_vapid_public_key"
    assert error(mastodon_vapid_public_key=public).key == "mastodon_vapid_private_key"
    other_public = secrets.generate_vapid_keypair()[1]
    e = error(mastodon_vapid_private_key=private, mastodon_vapid_public_key=other_public)
    assert e.key == "mastodon_vapid_public_key" and "does not belong" in e.problem
    assert private not in str(e) and other_public not in str(e)


def test_every_setting_is_checked_on_secret_settings():
    for setting in SETTINGS:
        if setting.name in SECRET_ENV_KEYS.values():
            assert setting.secret and setting.default is None and setting.validate


# Inventory
#


def test_inventory_configs_in_order_and_unique_domains():
    hosts = [("a", {**BASE, "mastodon_server_id": 1}), ("b", {**BASE, "mastodon_server_id": 2})]
    configs = load_inventory_configs(hosts)
    assert list(configs) == ["a", "b"]
    assert configs["b"].domain == "social2.example.org"
    with pytest.raises(SettingsError) as info:
        load_inventory_configs([("a", {**BASE, "mastodon_server_id": 1}), ("b", {**BASE, "mastodon_server_id": "1"})])
    assert info.value.host == "b" and "host 'a'" in info.value.problem


def test_inventory_first_error_wins():
    hosts = [("a", BASE), ("b", {**BASE, "mastodon_zone": "bad"}), ("c", {"zone": "x"})]
    with pytest.raises(SettingsError) as info:
        load_inventory_configs(hosts)
    assert info.value.host == "b"


def test_host_data_dict_from_pyinfra():
    # The deploy calls load_config(host.name, host.data.dict()) on pyinfra's layered data.
    from pyinfra.api import Inventory

    inventory = Inventory(
        (
            [("web1", {"mastodon_server_id": 7})],
            {"mastodon_zone": "example.org", "mastodon_admin_email": "a@example.org"},
        ),
        override_data={"mastodon_version": "v4.6.4"},
        web=(["web1"], {"mastodon_prefix": "mstdn"}),
    )
    host = inventory.get_host("web1")
    data = host.data.dict()
    # Outside a @deploy, data_defaults are not in the dict: load_config fills them itself.
    assert "mastodon_admin_username" not in data
    config = load_config(host.name, data)
    assert config.domain == "mstdn7.example.org" and config.version == "v4.6.4"
    assert config.admin_username == "admin"


# Documentation
#


def test_defaults_cover_every_optional_setting():
    assert set(DEFAULTS) == {s.name for s in SETTINGS if not s.required}
    assert all(name.startswith("mastodon_") for name in SETTINGS_BY_NAME)
    assert all(s.doc and "\n" not in s.doc for s in SETTINGS)


def test_markdown_table():
    table = docs.settings_markdown_table()
    lines = table.splitlines()
    assert lines[0] == "| setting | default | description |"
    assert len(lines) == 2 + len(SETTINGS)
    assert "| `mastodon_secret_key_base` | (generated) |" in table
    assert "| `mastodon_smtp_password` | (none) |" in table
    assert "| `mastodon_zone` | (required) |" in table


def test_markdown_cli():
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra_mastodon.docs", "--markdown"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == docs.settings_markdown_table()


def test_readme_settings_table_is_current():
    # Fails until README.md carries the block; regenerate with
    # `python -m pyinfra_mastodon.docs --markdown`.
    readme = (REPO / "README.md").read_text()
    start, end = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
    assert start in readme and end in readme, "README.md lacks the settings-table markers"
    block = readme.split(start, 1)[1].split(end, 1)[0]
    assert block.strip() == docs.settings_markdown_table().strip()


def test_group_data_all_is_generated_and_inert():
    path = REPO / "group_data" / "all.py"
    text = path.read_text()
    assert text == docs.group_data_example(), "regenerate: python -m pyinfra_mastodon.docs --write"
    tree = ast.parse(text)
    # Only the docstring: no import, no active assignment that would override a default.
    assert all(isinstance(node, ast.Expr) for node in tree.body)
    for setting in SETTINGS:
        assert f"# {setting.name} = " in text


def test_config_fields_are_derived_from_the_settings():
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(settings.MastodonConfig)}
    assert list(fields) == ["host", "domain", *(s.short for s in SETTINGS), "secret_overrides", "cluster"]
    for setting in SETTINGS:
        assert fields[setting.short].repr is (not setting.secret and setting.shown), setting.name


def test_no_secret_or_hidden_value_in_the_config_repr():
    private, public = secrets.generate_vapid_keypair()
    given = {name: secrets.generate(key) for key, name in SECRET_ENV_KEYS.items() if "VAPID" not in key}
    given.update(mastodon_vapid_private_key=private, mastodon_vapid_public_key=public)
    config = cfg(**given, mastodon_smtp_password="correct horse battery", mastodon_extra_env={"S3_KEY": "s3-key-value"})
    text = repr(config)
    for value in [*given.values(), "correct horse battery", "s3-key-value"]:
        assert value not in text
    assert "social42.example.org" in text  # the repr is still useful


def test_assertions_name_a_setting_and_run_in_order():
    assert all(a.setting in SETTINGS_BY_NAME for a in settings.ASSERTIONS)
    # A domain check comes before the VAPID pair: the first refusal is the one an operator sees first.
    order = [a.setting for a in settings.ASSERTIONS]
    assert order.index("mastodon_zone") < order.index("mastodon_vapid_public_key")


def test_a_restic_repository_needs_its_password():
    base = {"mastodon_server_id": 1, "mastodon_zone": "example.org", "mastodon_admin_email": "a@example.org"}
    with pytest.raises(settings.SettingsError, match="'mastodon_restic_password': is required when"):
        settings.load_config("h", {**base, "mastodon_restic_repository": "sftp:b@h:/srv/restic"})
    cfg = settings.load_config(
        "h", {**base, "mastodon_restic_repository": "sftp:b@h:/srv/restic", "mastodon_restic_password": "x" * 20}
    )
    assert "x" * 20 not in repr(cfg)
    with pytest.raises(settings.SettingsError, match="'mastodon_restic_repository': .* is not a restic repository"):
        settings.load_config("h", {**base, "mastodon_restic_repository": "a b;c", "mastodon_restic_password": "x" * 20})


# Roles, Sidekiq and object storage
#


def test_roles_default_to_a_whole_server_and_are_checked():
    assert cfg().roles == ("db", "redis", "web", "streaming", "sidekiq", "proxy")
    assert cfg(mastodon_roles=["web", "sidekiq"]).roles == ("web", "sidekiq")
    assert "is not a role" in error(mastodon_roles=["web", "worker"]).problem
    assert "twice" in error(mastodon_roles=["web", "web"]).problem
    assert "lists no role" in error(mastodon_roles=[]).problem
    assert "another host" in error(mastodon_roles=["db", "db_replica"]).problem
    assert error(mastodon_roles="web").key == "mastodon_roles"


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0", "::1", "10.0.0.300", "db.internal", "224.0.0.1"])
def test_private_address_is_an_address_others_can_reach(address):
    assert error(mastodon_private_address=address).key == "mastodon_private_address"


def test_sidekiq_queues_and_concurrency():
    assert cfg(mastodon_sidekiq_queues=["default,8", "push"]).sidekiq_queues == ("default,8", "push")
    for bad in (["default,0"], ["Default"], ["default", "default,2"], [], ["a b"], [8]):
        assert error(mastodon_sidekiq_queues=bad).key == "mastodon_sidekiq_queues", bad
    assert error(mastodon_sidekiq_concurrency=0).key == "mastodon_sidekiq_concurrency"
    assert error(mastodon_sidekiq_concurrency="25").key == "mastodon_sidekiq_concurrency"


S3 = {"mastodon_s3_bucket": "media", "mastodon_s3_access_key_id": "AKIA1", "mastodon_s3_secret_access_key": "x" * 40}


def test_object_storage_needs_its_keys_and_a_bucket():
    assert cfg(**S3).s3_bucket == "media"
    assert error(**{**S3, "mastodon_s3_access_key_id": None}).key == "mastodon_s3_access_key_id"
    assert error(**{**S3, "mastodon_s3_secret_access_key": None}).key == "mastodon_s3_secret_access_key"
    # without a bucket the rest would do nothing: refused, not ignored
    for name in ("mastodon_s3_endpoint", "mastodon_s3_alias_host", "mastodon_s3_access_key_id"):
        value = "https://s3.example.org" if name.endswith("endpoint") else "files.example.org"
        assert error(**{name: value}).key == name
    for bad in ("Media", "a", "media..x", "-media"):
        assert error(**{**S3, "mastodon_s3_bucket": bad}).key == "mastodon_s3_bucket", bad
    for bad in ("s3.example.org", "https://s3.example.org/path", "ftp://s3.example.org"):
        assert error(**{**S3, "mastodon_s3_endpoint": bad}).key == "mastodon_s3_endpoint", bad


def test_object_storage_settings_and_extra_env_do_not_both_write_a_key():
    refused = error(**S3, mastodon_extra_env={"S3_ENABLED": True, "AWS_ACCESS_KEY_ID": "x"})
    assert refused.key == "mastodon_extra_env" and "AWS_ACCESS_KEY_ID, S3_ENABLED" in refused.problem
    # object storage set up by extra env alone, as before the typed settings, stays valid
    assert cfg(mastodon_extra_env={"S3_ENABLED": True, "S3_BUCKET": "media"}).s3_bucket is None


def test_object_storage_secret_never_shows():
    secret = "Zq" * 20
    config = cfg(**{**S3, "mastodon_s3_secret_access_key": secret})
    assert secret not in repr(config) and "AKIA1" not in repr(config)
    problem = error(**{**S3, "mastodon_s3_secret_access_key": secret + "\n"})
    assert secret not in str(problem)


def test_media_urls_of_a_plain_http_endpoint_need_an_https_host_or_say_http():
    inside = {**S3, "mastodon_s3_endpoint": "http://10.0.0.5:9000"}
    refused = error(**inside)
    assert refused.key == "mastodon_s3_endpoint" and "mastodon_s3_alias_host" in refused.problem
    assert cfg(**inside, mastodon_s3_alias_host="files.example.org").s3_protocol == "https"
    assert cfg(**inside, mastodon_s3_protocol="http").s3_protocol == "http"
    assert error(**inside, mastodon_s3_protocol="ftp").key == "mastodon_s3_protocol"


def test_scale_settings_refuse_what_would_do_nothing_or_harm():
    assert error(mastodon_sidekiq_queues=["default", "mailer"]).problem.startswith("'mailer' is not one of")
    assert error(mastodon_sidekiq_concurrency=51).key == "mastodon_sidekiq_concurrency"
    refused = error(mastodon_extra_env={"SIDEKIQ_CONCURRENCY": 25})
    assert refused.key == "mastodon_extra_env" and "mastodon_sidekiq_concurrency" in refused.problem
    assert "public address" in error(mastodon_private_address="8.8.8.8").problem
    for address in ("10.1.2.3", "172.16.0.9", "192.168.1.4", "100.64.3.2"):
        assert cfg(mastodon_private_address=address).private_address == address
    # the compose ports, the firewall's guard and nginx's upstreams are written for IPv4 only
    assert "is an IPv6 address" in error(mastodon_private_address="fd00::5").problem
    for name, value in (
        ("mastodon_s3_endpoint", "https://s3.example.org:99999"),
        ("mastodon_s3_bucket", "192.168.1.1"),
    ):
        assert error(**{**S3, name: value}).key == name
