"""An instance, or an earlier install, already on the host: what would silently break it is refused
before any change, and a deliberate start-over on a new domain leaves no stale nginx server block.

- PostgreSQL data in upstream's layout (directly in postgres14/): this deploy keeps it one level
  below and would start an empty database next to it; the run is refused.
- A new domain (prefix, server_id or zone) for a running instance: Mastodon cannot change its
  LOCAL_DOMAIN; the run is refused and the instance is untouched.
- Starting over (instance removed by the operator) on a new domain: the former domain's server block,
  which this deploy wrote, is removed (two would both claim default_server and nginx would refuse
  them); a server block the operator wrote stays.
"""

from __future__ import annotations

import re

import pytest
from contract import (
    ADMIN_PASSWORD_FILE,
    BASE_DIR,
    COMPOSE_FILE,
    COMPOSE_PROJECT,
    DOMAIN,
    NGINX_CONF_DIR,
    PGDATA,
    nginx_conf,
)
from toolkit import Result, Sandbox, instance_document, psql, snapshot

pytestmark = pytest.mark.e2e

OLD_DOMAIN = DOMAIN
NEW_DOMAIN = "social2.sandbox.test"
NEW_DATA = {"mastodon_server_id": "2"}
OPERATOR_CONF = f"{NGINX_CONF_DIR}/operator-extra.conf"


def refusal_line(result: Result) -> str:
    """The one error line of a refused run (asserts there is exactly one and no operation started)."""
    assert result.rc != 0, f"the run was not refused:\n{result.describe()}"
    assert "Starting operation" not in result.stderr, f"operations ran before the refusal:\n{result.describe()}"
    assert "Traceback" not in result.stderr, f"a traceback instead of one line:\n{result.describe()}"
    lines = [line for line in (result.stderr + result.stdout).splitlines() if re.search(r"host 'sandbox'", line)]
    assert len(lines) == 1, f"expected one line naming host 'sandbox':\n{result.describe()}"
    return lines[0]


def test_upstream_database_layout_is_refused_and_changes_nothing(box: Sandbox):
    box.out(f"mkdir -p {BASE_DIR}/postgres14 && echo 14 > {BASE_DIR}/postgres14/PG_VERSION")
    try:
        before = snapshot(box)
        line = refusal_line(box.deploy())
        assert "upstream's layout" in line and PGDATA in line, line
        after = snapshot(box)
        assert not before.diff_files(after), before.diff_files(after)
        assert box.ssh(f"test ! -e {PGDATA} && ! id mastodon").returncode == 0, "the refused run changed the host"
    finally:
        box.out(f"rm -rf {BASE_DIR}")


@pytest.fixture(scope="module")
def running(box: Sandbox) -> Result:
    result = box.deploy()
    assert result.ok, f"deploy failed:\n{result.describe(60)}"
    return result


def test_a_new_domain_for_a_running_instance_is_refused_and_changes_nothing(box, running):
    before = snapshot(box)
    line = refusal_line(box.deploy(data=NEW_DATA))
    assert f"'{NEW_DOMAIN}'" in line and f"'{OLD_DOMAIN}'" in line, line
    after = snapshot(box)
    assert not before.diff_files(after), before.diff_files(after)
    assert not before.diff_containers(after), before.diff_containers(after)
    assert instance_document(box, OLD_DOMAIN)["uri"] == OLD_DOMAIN


@pytest.fixture(scope="module")
def started_over(box, running) -> tuple[Result, Result]:
    """The operator removes the instance, keeps an nginx server block of their own, deploys a new domain."""
    box.out(
        f"printf '%s\\n' '# written by the operator' 'server {{ listen 127.0.0.1:8081; return 204; }}' > {OPERATOR_CONF}"
    )
    box.out(
        f"docker compose --project-directory {BASE_DIR} -f {COMPOSE_FILE} -p {COMPOSE_PROJECT} "
        f"down --timeout 5 && rm -rf {BASE_DIR} {ADMIN_PASSWORD_FILE}",
        timeout=300,
    )
    first = box.deploy(data=NEW_DATA)
    second = box.deploy(data=NEW_DATA)
    return first, second


def test_start_over_on_a_new_domain_removes_only_the_former_server_block(box, started_over):
    first, second = started_over
    assert first.ok, f"deploy on the new domain failed:\n{first.describe(60)}"
    removed = [name for name in first.changed_labels() if name.startswith("Remove ")]
    assert removed == [f"Remove {nginx_conf(OLD_DOMAIN)} (server block of a former domain)"], removed
    confs = sorted(box.out(f"ls {NGINX_CONF_DIR}").split())
    assert confs == sorted([f"{NEW_DOMAIN}.conf", "operator-extra.conf"]), confs
    assert instance_document(box, NEW_DOMAIN)["uri"] == NEW_DOMAIN
    assert second.ok and second.totals().get("success") == 0, f"second run changed: {second.changed_ops()}"


def test_a_renamed_owner_role_does_not_make_the_deploy_seed_again(box, started_over):
    """Admins may rename roles; the seed check looks only at rows they cannot rename or remove."""
    psql(box, "UPDATE user_roles SET name = 'Boss' WHERE name = 'Owner'")
    try:
        again = box.deploy(data=NEW_DATA)
        assert again.ok and again.totals().get("success") == 0, f"the run changed: {again.changed_ops()}"
        assert psql(box, "SELECT count(*) FROM user_roles WHERE name = 'Owner'").strip() == "0"
    finally:
        psql(box, "UPDATE user_roles SET name = 'Owner' WHERE name = 'Boss'")
