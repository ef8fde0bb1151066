"""Mastodon itself: owner account, seed, migrations, uploads (SPEC §3, §6)."""

from __future__ import annotations

import shlex
import uuid

import pytest
from contract import BASE_DIR, container_name
from host_helpers import psql

# The database's records: asked of PostgreSQL on the host that runs it.
pytestmark = pytest.mark.roles("db")


def test_owner_account_exists(host, admin_username):
    n = psql(
        host,
        "select count(*) from accounts a join users u on u.account_id = a.id "
        f"where a.username = '{admin_username}' and a.domain is null",
    )
    assert n == "1", f"{n!r} local account(s) with a user named {admin_username!r}, expected 1"


def test_owner_account_is_owner_approved_confirmed(host, admin_username):
    row = psql(
        host,
        "select r.name, u.approved, u.confirmed_at is not null from accounts a "
        "join users u on u.account_id = a.id left join user_roles r on r.id = u.role_id "
        f"where a.username = '{admin_username}' and a.domain is null",
    )
    assert row, f"no local user {admin_username!r}"
    role, approved, confirmed = row.split("|")
    assert role == "Owner", f"{admin_username!r} has role {role!r}, expected Owner"
    assert approved == "t", f"{admin_username!r} is not approved (tootctl --approve missing)"
    assert confirmed == "t", f"{admin_username!r} is not confirmed"


def test_seed_instance_actor(host):
    n = psql(host, "select count(*) from accounts where id = -99")
    assert n == "1", "instance actor (account id -99) missing: db:seed did not run"


def test_seed_web_superapp(host):
    n = psql(host, "select count(*) from oauth_applications where name = 'Web' and superapp")
    assert n == "1", "Doorkeeper 'Web' superapp missing: db:seed did not run"


def test_seed_roles(host):
    names = set(psql(host, "select name from user_roles").split())
    assert {"Moderator", "Admin", "Owner"} <= names, f"user_roles: {sorted(names)}"


def test_no_pending_migrations(host, services):
    check = "bundle exec rails db:abort_if_pending_migrations"
    if "web" in services:
        command = f"docker exec {container_name('web')} {check}"
    else:  # the db host of an instance on several hosts: in a one-off container of its jobs' web, as the deploy
        command = f"cd {BASE_DIR} && docker compose run --rm -T web {check}"
    result = host.run(command)
    assert result.rc == 0, (
        f"pending migrations (post-deployment migrations not run?): {result.stdout.strip()[-600:]} "
        f"{result.stderr.strip()[-600:]}"
    )


@pytest.mark.standin
@pytest.mark.whole_server  # an instance on several hosts keeps its media in object storage
def test_media_upload_lands_in_public_system(site, host):
    """POST /api/v2/media through nginx; the stand-in accepts it without auth (real Mastodon needs a token)."""
    token = f"pyinfra-mastodon-upload-{uuid.uuid4().hex}"
    tmp = host.check_output("mktemp").strip()
    try:
        host.run_test(f"printf %s {shlex.quote(token)} > {tmp}")
        r = site.https("/api/v2/media", "-F", f"file=@{tmp};type=text/plain;filename=upload-test.txt")
        assert r.rc == 0 and r.status in (200, 202), (
            f"POST /api/v2/media: {r.describe()} (500 = public/system not writable by 991)"
        )
    finally:
        host.run(f"rm -f {tmp}")
    found = host.check_output(f"grep -rlF -- {shlex.quote(token)} {BASE_DIR}/public/system || true").split()
    assert found, f"the uploaded body is nowhere below {BASE_DIR}/public/system"
    for path in found:
        owner = host.check_output(f"stat -c %u:%g {shlex.quote(path)}").strip()
        assert owner == "991:991", f"uploaded file {path} is owned by {owner}, expected 991:991"
