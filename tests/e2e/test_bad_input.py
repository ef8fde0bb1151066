"""Bad inventory data changes nothing (SPEC §2): a table of bad values, each refused before any
operation runs, with ONE line naming the host and the setting, on a fresh host AND on a host that
runs an instance. Every case runs twice: first against the fresh host (all fresh-host tests are defined,
so run, before the instance is deployed), then against the running instance.

"Nothing changed" = the host snapshot (toolkit.snapshot) is the same: files, modes and owners of
/opt/mastodon (without the data the services write: database, redis, uploads), /data/nginx,
/etc/letsencrypt, /etc/passwd, /etc/group, /etc/shadow, /etc/gshadow and the owner password file, plus
the id, StartedAt, restart count and status of every compose container. Values with shell syntax carry a canary
(`touch /tmp/sec-canary-...`) that must never be created, locally or on the host.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest
from contract import CLUSTER_QUEUES_WITHOUT_SCHEDULER, CLUSTER_ROLES
from toolkit import SANDBOX_SETTINGS, SecretBag, Snapshot, connection_data, run_pyinfra, snapshot, write_inventory

pytestmark = pytest.mark.e2e

CANARY = "/tmp/sec-canary"
SH = f"$(touch {CANARY}-dollar)"
BT = f"`touch {CANARY}-backtick`"
SEMI = f";touch {CANARY}-semicolon"
VAPID_PRIVATE = base64.urlsafe_b64encode(os.urandom(32)).decode()  # right format, no public key given
BAD_SECRET = "ABCDEF0123456789" * 8 + "DO_NOT_USE_IN_PRODUCTION"  # Mastodon aborts on this suffix

# (id, --data values (raw "key=text", parsed by pyinfra), expected setting in the message, value never to print)
DATA_CASES = [
    ("zone-upper-case", ['mastodon_zone="Sandbox.test"'], "mastodon_zone", None),
    ("zone-trailing-dot", ['mastodon_zone="sandbox.test."'], "mastodon_zone", None),
    ("zone-empty", ['mastodon_zone=""'], "mastodon_zone", None),
    ("zone-empty-label", ['mastodon_zone="sandbox..test"'], "mastodon_zone", None),
    ("zone-label-starts-with-dash", ['mastodon_zone="-sandbox.test"'], "mastodon_zone", None),
    ("zone-one-label", ['mastodon_zone="test"'], "mastodon_zone", None),
    ("zone-underscore", ['mastodon_zone="sand_box.test"'], "mastodon_zone", None),
    ("server-id-space", ['mastodon_server_id="4 2"'], "mastodon_server_id", None),
    ("server-id-slash", ['mastodon_server_id="1/2"'], "mastodon_server_id", None),
    ("server-id-empty", ['mastodon_server_id=""'], "mastodon_server_id", None),
    ("server-id-float", ["mastodon_server_id=1.5"], "mastodon_server_id", None),
    ("prefix-space", ['mastodon_prefix="so cial"'], "mastodon_prefix", None),
    ("version-semicolon", [f'mastodon_version="v4.6.5{SEMI}"'], "mastodon_version", None),
    ("version-dollar-paren", [f'mastodon_version="{SH}"'], "mastodon_version", None),
    ("version-backtick", [f'mastodon_version="v4.6.5{BT}"'], "mastodon_version", None),
    ("version-space", ['mastodon_version="v4.6.5 latest"'], "mastodon_version", None),
    ("web-image-space", ['mastodon_web_image="ghcr.io/mastodon/mastodon :v4.6.5"'], "mastodon_web_image", None),
    ("web-image-dollar-paren", [f'mastodon_web_image="ghcr.io/{SH}/mastodon:v4.6.5"'], "mastodon_web_image", None),
    (
        "postgres-image-semicolon",
        [f'mastodon_postgres_image="postgres:14-alpine{SEMI}"'],
        "mastodon_postgres_image",
        None,
    ),
    ("nginx-image-upper-case", ['mastodon_nginx_image="Jonasal/nginx-certbot:latest"'], "mastodon_nginx_image", None),
    ("admin-username-dollar-paren", [f'mastodon_admin_username="admin{SH}"'], "mastodon_admin_username", None),
    ("admin-username-upper-case", ['mastodon_admin_username="Admin"'], "mastodon_admin_username", None),
    ("admin-email-no-at", ['mastodon_admin_email="admin.sandbox.test"'], "mastodon_admin_email", None),
    ("admin-email-backtick", [f'mastodon_admin_email="a{BT}@sandbox.test"'], "mastodon_admin_email", None),
    ("admin-email-control-char", ['mastodon_admin_email="admin@sandbox.test\\u0007"'], "mastodon_admin_email", None),
    ("smtp-server-semicolon", [f'mastodon_smtp_server="smtp.sandbox.test{SEMI}"'], "mastodon_smtp_server", None),
    ("smtp-login-quote-and-specials", [f'mastodon_smtp_login="it\'s {SH}"'], "mastodon_smtp_login", None),
    (
        "smtp-password-quote-and-specials",
        ['mastodon_smtp_password="s3cr3t-pw-it\'s-$HOME"'],
        "mastodon_smtp_password",
        "s3cr3t-pw-it's-$HOME",
    ),
    (
        "smtp-password-newline",
        ['mastodon_smtp_password="s3cr3t-pw-line1\\nline2"'],
        "mastodon_smtp_password",
        "s3cr3t-pw-line1",
    ),
    ("smtp-from-no-at", ['mastodon_smtp_from_address="notifications"'], "mastodon_smtp_from_address", None),
    (
        "smtp-port-as-string",
        ['mastodon_smtp_port="587"'.replace('="587"', "='\"587\"'").replace("'", "")],
        "mastodon_smtp_port",
        None,
    ),
    ("smtp-port-out-of-range", ["mastodon_smtp_port=70000"], "mastodon_smtp_port", None),
    ("bool-as-string", ['mastodon_certbot_local_ca="true"'], "mastodon_certbot_local_ca", None),
    ("int-as-bool", ["mastodon_postgres_wait_timeout=true"], "mastodon_postgres_wait_timeout", None),
    ("wait-timeout-zero", ["mastodon_postgres_wait_timeout=0"], "mastodon_postgres_wait_timeout", None),
    ("extra-env-bad-key", ['mastodon_extra_env={"BAD KEY": "x"}'], "mastodon_extra_env", None),
    ("extra-env-key-dollar-paren", [f'mastodon_extra_env={{"{SH}": "x"}}'], "mastodon_extra_env", None),
    ("extra-env-managed-key", ['mastodon_extra_env={"SECRET_KEY_BASE": "x"}'], "mastodon_extra_env", None),
    (
        "extra-env-value-quote-and-specials",
        [f'mastodon_extra_env={{"S3_SECRET": "xs3cr3t-\'{SH}"}}'],
        "mastodon_extra_env",
        "xs3cr3t-'",
    ),
    (
        "extra-env-value-newline",
        ['mastodon_extra_env={"S3_SECRET": "xs3cr3t-a\\nLOCAL_DOMAIN=evil.test"}'],
        "mastodon_extra_env",
        "xs3cr3t-a",
    ),
    ("extra-env-not-a-dict", ['mastodon_extra_env="A=1"'], "mastodon_extra_env", None),
    ("misspelt-setting", ["mastodon_zoen=sandbox.test"], "mastodon_zoen", None),
    ("bare-setting-name", ["zone=sandbox.test"], "zone", None),
    (
        "ar-key-override-test-only",
        [f'mastodon_active_record_encryption_primary_key="{BAD_SECRET}"'],
        "mastodon_active_record_encryption_primary_key",
        BAD_SECRET,
    ),
    ("otp-override-blank", ['mastodon_otp_secret="          "'], "mastodon_otp_secret", None),
    (
        "secret-override-not-writable",
        ['mastodon_secret_key_base="s3cr3t-it\'s-$HOME"'],
        "mastodon_secret_key_base",
        "s3cr3t-it's",
    ),
    (
        "vapid-private-without-public",
        [f'mastodon_vapid_private_key="{VAPID_PRIVATE}"'],
        "mastodon_vapid_public_key",
        VAPID_PRIVATE,
    ),
]
# the "smtp-port-as-string" entry must be the string "587" in JSON: --data mastodon_smtp_port='"587"'
DATA_CASES = [(i, ['mastodon_smtp_port="587"'] if i == "smtp-port-as-string" else d, k, s) for i, d, k, s in DATA_CASES]

# One instance over four hosts (contract.CLUSTER_ROLES), with and without object storage.
CLUSTER_WITHOUT_S3 = CLUSTER_ROLES
_S3 = {
    "mastodon_s3_bucket": "media",
    "mastodon_s3_access_key_id": "AKIASANDBOX",
    "mastodon_s3_secret_access_key": "k" * 40,
}
CLUSTER = {name: {**data, **_S3} for name, data in CLUSTER_WITHOUT_S3.items()}

# (id, {host name: extra data}, host named in the message, expected setting)
INVENTORY_CASES = [
    ("zone-missing", {"sandbox": {"mastodon_zone": None}}, "sandbox", "mastodon_zone"),
    ("admin-email-missing", {"sandbox": {"mastodon_admin_email": None}}, "sandbox", "mastodon_admin_email"),
    ("two-hosts-one-domain", {"alpha": {}, "beta": {}}, "beta", "mastodon_server_id"),
    (
        "second-host-bad-first-good",
        {"good": {}, "bad": {"mastodon_server_id": "2", "mastodon_zone": "Sandbox.Test"}},
        "bad",
        "mastodon_zone",
    ),
    ("server-id-list", {"sandbox": {"mastodon_server_id": ["1"]}}, "sandbox", "mastodon_server_id"),
    # instances checked as a whole (pyinfra_mastodon/instance.py); the hosts below all name this sandbox,
    # and the instance's rules come before the one that refuses two hosts on one server
    (
        "part-of-the-roles-alone",
        {"sandbox": {"mastodon_roles": ["web", "streaming", "sidekiq", "proxy"]}},
        "sandbox",
        "mastodon_roles",
    ),
    (
        "sidekiq-without-scheduler",
        {"sandbox": {"mastodon_sidekiq_queues": CLUSTER_QUEUES_WITHOUT_SCHEDULER}},
        "sandbox",
        "mastodon_sidekiq_queues",
    ),
    ("bucket-without-keys", {"sandbox": {"mastodon_s3_bucket": "media"}}, "sandbox", "mastodon_s3_access_key_id"),
    ("two-app-hosts-without-object-storage", CLUSTER_WITHOUT_S3, "app1", "mastodon_s3_bucket"),
    (
        "a-host-serving-others-without-firewall",
        {**CLUSTER, "db": {**CLUSTER["db"], "mastodon_firewall": None}},
        "db",
        "mastodon_firewall",
    ),
    (
        "a-read-replica-without-its-firewall",
        {
            **CLUSTER,
            "edge": {**CLUSTER["edge"], "mastodon_roles": ["proxy", "db_replica"], "mastodon_firewall": None},
        },
        "edge",
        "mastodon_firewall",
    ),
    (
        "pgbouncer-pools-over-max-connections",
        {
            **CLUSTER,
            "app1": {**CLUSTER["app1"], "mastodon_pgbouncer_pool_size": 41},
            "app2": {**CLUSTER["app2"], "mastodon_pgbouncer_pool_size": 41},
        },
        "app2",
        "mastodon_pgbouncer_pool_size",
    ),
    # every instance rule passes; then its four hosts are one machine (this sandbox)
    ("a-valid-cluster-on-one-machine", CLUSTER, "app1", "ssh_hostname"),
]

ERROR_LINE = re.compile(r"^.*pyinfra error.*$", re.M)
BAG = SecretBag()
TIMINGS: dict[str, float] = {}


def run(box, *args: str, **kw):
    """One pyinfra run of this module (the host's secrets join BAG, which withholds them from messages)."""
    return run_pyinfra(box, *args, bag=BAG, **kw)


def _clean_canaries(box):
    box.ssh(f"rm -f {CANARY}-*")
    for p in Path("/tmp").glob("sec-canary-*"):
        p.unlink()


def _canaries(box) -> list[str]:
    remote = box.ssh(f"ls {CANARY}-* 2>/dev/null; true").stdout.split()
    local = [str(p) for p in Path("/tmp").glob("sec-canary-*")]
    return [f"host:{p}" for p in remote] + [f"local:{p}" for p in local]


def check_refused(box, result, before, host: str, key: str | None, must_not_print: str | None = None, also: str = ""):
    TIMINGS[result.label] = result.seconds
    ctx = result.describe()
    assert result.rc != 0, f"bad data was accepted (exit 0):\n{ctx}"
    assert "Starting operation" not in result.stderr, f"operations ran despite bad data:\n{ctx}"
    errors = ERROR_LINE.findall(result.stderr + result.stdout)
    assert len(errors) == 1, f"expected ONE error line, got {len(errors)}:\n{ctx}"
    line = errors[0]
    assert f"host '{host}'" in line, f"the error line does not name host '{host}':\n{line}"
    if key:
        assert f"setting '{key}'" in line, f"the error line does not name setting '{key}':\n{line}"
    if also:
        assert also in line, f"the error line does not say {also!r}:\n{line}"
    assert "Traceback" not in result.stderr, f"a traceback instead of one line:\n{ctx}"
    assert result.debug_log is None, "pyinfra-debug.log (a traceback) was written"
    if must_not_print:
        assert must_not_print not in result.output, f"the error output echoes the secret value of {key}"
    diff = before.diff(snapshot(box))
    assert not diff, "bad data changed the host:\n" + "\n".join(diff[:40])
    fired = _canaries(box)
    assert not fired, f"shell syntax in the data was executed: {fired}"


PRISTINE: dict[str, Snapshot] = {}


@pytest.fixture(scope="module")
def pristine_state(box):
    _clean_canaries(box)
    PRISTINE["state"] = snapshot(box)
    return PRISTINE["state"]


def _inventory_for(box, tmp_path, hosts: dict) -> Path:
    data = {}
    for name, extra in hosts.items():
        d = {**connection_data(box), **SANDBOX_SETTINGS, **extra}
        data[name] = {k: v for k, v in d.items() if v is not None}
    return write_inventory(tmp_path, data)


def refused_on_fresh(box, result, host, key, must_not_print=None):
    """check_refused against the fresh host; if the case changed the host, reset it to a fresh server
    (and take its state again) before failing, so that the next fresh-host cases start from a fresh host."""
    try:
        check_refused(box, result, PRISTINE["state"], host, key, must_not_print=must_not_print)
    except AssertionError:
        if PRISTINE["state"].diff(snapshot(box)):
            box.reset()
            _clean_canaries(box)
            PRISTINE["state"] = snapshot(box)
        raise


def test_uid_clash_on_a_fresh_host_is_refused_and_changes_nothing(box, pristine_state):
    box.out("useradd --system --uid 991 --user-group --no-create-home intruder")
    try:
        before = snapshot(box)
        r = run(box, label="uid clash")
        check_refused(box, r, before, "sandbox", None, also="uid 991 belongs to user 'intruder'")
    finally:
        box.ssh("userdel intruder; getent group intruder >/dev/null && groupdel intruder; true")
    assert snapshot(box) == pristine_state


def test_gid_clash_on_a_fresh_host_is_refused_and_changes_nothing(box, pristine_state):
    box.out("groupadd --system --gid 991 intruders")
    try:
        before = snapshot(box)
        r = run(box, label="gid clash")
        check_refused(box, r, before, "sandbox", None, also="gid 991 belongs to group 'intruders'")
    finally:
        box.ssh("groupdel intruders; true")


# ------------------------------------------------------------------ every case on a fresh host
# (defined before the `running` tests: pytest runs them first, before the instance is deployed)


@pytest.mark.parametrize("case_id,data,key,secret", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_on_a_fresh_host_is_refused_and_changes_nothing(box, pristine_state, case_id, data, key, secret):
    assert box.is_pristine(), "the host is not fresh: the fresh-host cases must run before the deploy"
    r = run(box, label=f"fresh {case_id}", raw_data=data)
    refused_on_fresh(box, r, "sandbox", key, must_not_print=secret)


@pytest.mark.parametrize("case_id,hosts,host,key", INVENTORY_CASES, ids=[c[0] for c in INVENTORY_CASES])
def test_bad_inventory_on_a_fresh_host_is_refused_and_changes_nothing(
    box, pristine_state, tmp_path, case_id, hosts, host, key
):
    assert box.is_pristine(), "the host is not fresh: the fresh-host cases must run before the deploy"
    r = run(box, label=f"fresh {case_id}", inventory=_inventory_for(box, tmp_path, hosts))
    refused_on_fresh(box, r, host, key)


def test_bad_data_with_dry_run_on_a_fresh_host_is_refused_too(box, pristine_state):
    r = run(box, "--dry", label="fresh dry zone-upper-case", raw_data=['mastodon_zone="Sandbox.test"'])
    refused_on_fresh(box, r, "sandbox", "mastodon_zone")


# ------------------------------------------------------- every case on a host that runs an instance

BASELINE: dict[str, Snapshot] = {}


def _deploy_good(box) -> Snapshot:
    r = run(box, label="deploy")
    assert r.rc == 0, r.describe()
    _clean_canaries(box)
    BASELINE["state"] = snapshot(box)
    return BASELINE["state"]


@pytest.fixture(scope="module")
def running(box, pristine_state):
    """A host that runs an instance; returns its state."""
    return _deploy_good(box)


def refused(box, result, host, key, must_not_print=None):
    """check_refused against the running instance; if the case broke the host, repair it (a good deploy)
    before failing, so that the next cases start from a running instance again."""
    try:
        check_refused(box, result, BASELINE["state"], host, key, must_not_print=must_not_print)
    except AssertionError:
        if BASELINE["state"].diff(snapshot(box)):
            _deploy_good(box)
        raise


@pytest.mark.parametrize("case_id,data,key,secret", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_is_refused_and_changes_nothing(box, running, case_id, data, key, secret):
    r = run(box, label=case_id, raw_data=data)
    refused(box, r, "sandbox", key, must_not_print=secret)


@pytest.mark.parametrize("case_id,hosts,host,key", INVENTORY_CASES, ids=[c[0] for c in INVENTORY_CASES])
def test_bad_inventory_is_refused_and_changes_nothing(box, running, tmp_path, case_id, hosts, host, key):
    r = run(box, label=case_id, inventory=_inventory_for(box, tmp_path, hosts))
    refused(box, r, host, key)


def test_bad_data_with_dry_run_is_refused_too(box, running):
    r = run(box, "--dry", label="dry zone-upper-case", raw_data=['mastodon_zone="Sandbox.test"'])
    refused(box, r, "sandbox", "mastodon_zone")


def test_refusals_are_fast():
    assert TIMINGS, "no refused run was timed: the refusal tests did not run (or did not reach check_refused)"
    fresh = [k for k in TIMINGS if k.startswith("fresh ")]
    assert fresh and len(fresh) < len(TIMINGS), (
        f"timings cover only one kind of host: {len(fresh)} fresh of {len(TIMINGS)}"
    )
    slow = {k: round(v, 1) for k, v in TIMINGS.items() if v > 5}
    print(
        f"\nrefused runs: {len(TIMINGS)}, slowest {max(TIMINGS.values(), default=0):.1f} s, total {sum(TIMINGS.values()):.1f} s"
    )
    assert not slow, f"refusing bad data took more than 5 s: {slow}"
