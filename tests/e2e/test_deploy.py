"""Converge -> verify -> idempotence -> setting change -> upgrade, with the real pyinfra CLI on the sandbox.

Steps share module-scoped fixtures and run in file order; a step whose prerequisite failed fails too
(naming the prerequisite), so nothing is reported as passed or skipped without having been checked.
Every run's output is scanned for the host's secrets (toolkit.SecretBag); messages withhold them.
"""

from __future__ import annotations

import pytest
from contract import (
    APP_SERVICES,
    BACKUP_DIR,
    DEFAULT_VERSION,
    DOMAIN,
    ENV_PRODUCTION,
    HEALTHCHECKED,
    PREVIOUS_VERSION,
    STATEFUL_SERVICES,
)
from toolkit import (
    Result,
    Sandbox,
    instance_document,
    run_host_suite,
    secret_hashes,
    snapshot,
    standin_events,
    tail,
    wait_healthy,
)

pytestmark = pytest.mark.e2e

RUNS: list[tuple[str, Result]] = []  # every pyinfra run of this module, for the secret-leak check


def deploy(box: Sandbox, label: str, *args: str, data: dict | None = None) -> Result:
    result = box.deploy(*args, data=data, label=label)
    RUNS.append((label, result))
    return result


def require(result: Result, what: str) -> None:
    if not result.ok:
        pytest.fail(f"needs {what}, which failed (rc={result.rc})")


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def box(sandbox) -> Sandbox:
    sandbox.ensure_clean()  # something may have run on the session's sandbox before us
    return sandbox


@pytest.fixture(scope="module")
def standins(box) -> bool:
    return box.uses_standins()


@pytest.fixture(scope="module")
def first_run(box) -> Result:
    return deploy(box, "fresh deploy")


@pytest.fixture(scope="module")
def second_run(box, first_run):
    require(first_run, "the fresh deploy")
    before = snapshot(box)
    run = deploy(box, "second run")
    after = snapshot(box)
    dry = deploy(box, "dry run", "--dry")
    after_dry = snapshot(box)
    return {"before": before, "run": run, "after": after, "dry": dry, "after_dry": after_dry}


@pytest.fixture(scope="module")
def setting_change(box, first_run):
    require(first_run, "the fresh deploy")
    data = {"mastodon_smtp_server": "smtp.example.org"}
    before = snapshot(box)
    secrets_before = secret_hashes(box)
    dry = deploy(box, "setting change, dry run", "--dry", data=data)
    after_dry = snapshot(box)
    run = deploy(box, "setting change", data=data)
    after = snapshot(box)
    secrets_after = secret_hashes(box)
    health = wait_healthy(box, HEALTHCHECKED) if run.ok else {}
    again = deploy(box, "setting change, rerun", data=data)
    after_again = snapshot(box)
    return {
        "before": before,
        "dry": dry,
        "after_dry": after_dry,
        "run": run,
        "after": after,
        "secrets_before": secrets_before,
        "secrets_after": secrets_after,
        "health": health,
        "again": again,
        "after_again": after_again,
    }


@pytest.fixture(scope="module")
def upgrade(box, standins):
    if not standins:
        pytest.skip("the upgrade-order test reads the stand-in's standin_events table")
    box.reset()
    old = deploy(box, f"fresh deploy v{PREVIOUS_VERSION}", data={"mastodon_version": f"v{PREVIOUS_VERSION}"})
    require(old, f"the fresh deploy of v{PREVIOUS_VERSION}")
    old_instance = instance_document(box, DOMAIN)
    secrets_before = secret_hashes(box)
    events_before = standin_events(box)
    new = deploy(box, f"upgrade to v{DEFAULT_VERSION}")
    state = {
        "old": old,
        "old_instance": old_instance,
        "secrets_before": secrets_before,
        "events_before": events_before,
        "new": new,
    }
    if new.ok:
        state["events"] = standin_events(box)
        state["instance"] = instance_document(box, DOMAIN)
        state["secrets_after"] = secret_hashes(box)
        state["backups"] = box.out(
            f"stat -c '%a %U:%G' {BACKUP_DIR} 2>/dev/null || echo missing; "
            f"find {BACKUP_DIR} -type f -printf '%m\\t%u:%g\\t%s\\t%T@\\t%p\\n' 2>/dev/null; true"
        )
    return state


# ------------------------------------------------------------------------------- 1. fresh deploy


def test_1_fresh_deploy_exits_0(first_run):
    assert first_run.rc == 0, f"fresh deploy failed:\n{first_run.describe(60)}"
    assert first_run.json is not None, f"--json output is not JSON:\n{first_run.describe()}"
    assert first_run.ok, f"failed hosts: {first_run.json['results'].get('failed_hosts')}"
    assert first_run.totals().get("success", 0) > 0, "a fresh deploy changed nothing?"


# ------------------------------------------------------------------------------- 2. host suite


def test_2_host_suite_passes(box, first_run, standins):
    require(first_run, "the fresh deploy")
    extra = [f"--mastodon-version={DEFAULT_VERSION}"]
    if not standins:
        extra += ["-m", "not standin"]
    proc = run_host_suite(box, DOMAIN, *extra)
    assert proc.returncode == 0, (
        f"tests/host against the sandbox failed:\n{tail(proc.stdout, 80)}\n{tail(proc.stderr, 20)}"
    )


# ----------------------------------------------------------------------------- 3. idempotence


def test_3a_second_run_changes_nothing(second_run):
    run = second_run["run"]
    assert run.ok, f"second run failed:\n{run.describe(60)}"
    changed = run.changed_ops()
    assert run.totals().get("success") == 0 and not changed, (
        f"second run changed {len(changed)} operation(s): {changed}"
    )


def test_3b_second_run_restarts_nothing(second_run):
    assert second_run["before"].containers, "no mastodon containers on the host"
    diff = second_run["before"].diff_containers(second_run["after"])
    assert not diff, "second run restarted or recreated containers:\n" + "\n".join(diff)


def test_3c_second_run_files_byte_identical(second_run):
    assert second_run["before"].files, "snapshot found no files"
    diff = second_run["before"].diff_files(second_run["after"])
    assert not diff, "second run changed files (+added -removed ~changed):\n" + "\n".join(diff)


def test_3d_dry_run_reports_no_change(second_run):
    dry = second_run["dry"]
    assert dry.rc == 0 and dry.json is not None, f"--dry run failed:\n{dry.describe(60)}"
    assert dry.json.get("results") is None, "--dry --json printed results: did it execute?"
    planned = dry.planned_changes()
    assert not planned, f"--dry reports {len(planned)} operation(s) that would change: {planned}"
    assert not second_run["after"].diff_files(second_run["after_dry"]), "--dry changed files"
    assert not second_run["after"].diff_containers(second_run["after_dry"]), "--dry touched containers"


# -------------------------------------------------------------------------- 4. setting change


def test_4_dry_run_shows_the_setting_change_without_applying_it(setting_change):
    """Proves the --dry check of step 3 is not vacuous: a real pending change is reported."""
    dry = setting_change["dry"]
    assert dry.rc == 0 and dry.json is not None, f"--dry with mastodon_smtp_server failed:\n{dry.describe(60)}"
    planned = dry.planned_changes()
    assert any(".env.production" in name for name in planned), (
        f"--dry does not report the .env.production change; it reports: {planned}"
    )
    diff = setting_change["before"].diff_files(setting_change["after_dry"])
    diff += setting_change["before"].diff_containers(setting_change["after_dry"])
    assert not diff, "--dry changed the host:\n" + "\n".join(diff)


def test_4a_setting_change_applies(setting_change):
    run = setting_change["run"]
    assert run.ok, f"deploy with mastodon_smtp_server failed:\n{run.describe(60)}"
    env = ENV_PRODUCTION
    assert setting_change["before"].files.get(env) != setting_change["after"].files.get(env), (
        ".env.production is unchanged after changing mastodon_smtp_server"
    )


def test_4b_setting_change_restarts_only_app_services(setting_change):
    require(setting_change["run"], "the setting-change deploy")
    before, after = setting_change["before"], setting_change["after"]
    not_restarted = [s for s in APP_SERVICES if before.started(s) == after.started(s)]
    assert not not_restarted, f"not restarted after the .env.production change: {not_restarted}"
    restarted = [
        f"{s}: {before.started(s)} -> {after.started(s)}"
        for s in STATEFUL_SERVICES
        if before.started(s) != after.started(s)
    ]
    assert not restarted, "restarted although nothing they use changed:\n" + "\n".join(restarted)
    unhealthy = {n: h for n, h in setting_change["health"].items() if h != "healthy"}
    assert not unhealthy, f"not healthy after the restart: {unhealthy}"


def test_4c_setting_change_keeps_secrets(setting_change):
    require(setting_change["run"], "the setting-change deploy")
    before, after = setting_change["secrets_before"], setting_change["secrets_after"]
    missing = sorted(k for k, v in before.items() if v == "missing")
    assert not missing, f"secrets missing before the change: {missing}"
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert not changed, f"secrets changed by a settings change (values not shown): {changed}"


def test_4d_setting_change_rerun_changes_nothing(setting_change):
    require(setting_change["run"], "the setting-change deploy")
    again = setting_change["again"]
    assert again.ok, f"rerun with the same data failed:\n{again.describe(60)}"
    changed = again.changed_ops()
    assert again.totals().get("success") == 0 and not changed, f"rerun changed: {changed}"
    diff = setting_change["after"].diff_files(setting_change["after_again"])
    diff += setting_change["after"].diff_containers(setting_change["after_again"])
    assert not diff, "rerun with the same data changed the host:\n" + "\n".join(diff)


# -------------------------------------------------------------------------------- 5. upgrade


def test_5a_upgrade_deploy_succeeds(upgrade):
    assert upgrade["old_instance"].get("version") == PREVIOUS_VERSION, (
        f"after deploying v{PREVIOUS_VERSION} the instance reports {upgrade['old_instance'].get('version')!r}"
    )
    new = upgrade["new"]
    assert new.ok, f"upgrade to the default version failed:\n{new.describe(60)}"


def _upgrade_events(upgrade):
    seen = max((e.id for e in upgrade["events_before"]), default=0)
    return [e for e in upgrade["events"] if e.id > seen]


def _describe(events) -> str:
    return "\n".join(f"  {e.id} {e.event} v{e.version} {e.detail}" for e in events)


def test_5b_upgrade_order_pre_migrations_web_post_migrations(upgrade):
    require(upgrade["new"], "the upgrade deploy")
    events = _upgrade_events(upgrade)
    new = [e for e in events if e.version == DEFAULT_VERSION]
    pre = [e for e in new if e.event == "migration" and e.detail.split()[-1:] == ["pre"]]
    post = [e for e in new if e.event == "migration" and e.detail.split()[-1:] == ["post"]]
    web = [e for e in new if e.event == "web-start"]
    listing = f"events of the upgrade run:\n{_describe(events)}"
    assert web, f"no web-start of v{DEFAULT_VERSION}; {listing}"
    assert pre, f"no pre-deployment migration ran with v{DEFAULT_VERSION}; {listing}"
    assert post, f"no post-deployment migration ran with v{DEFAULT_VERSION}; {listing}"
    first_web = web[0].id
    late_pre = [e.id for e in pre if e.id > first_web]
    assert not late_pre, (
        f"pre-deployment migrations {late_pre} ran after the first v{DEFAULT_VERSION} web-start ({first_web}); {listing}"
    )
    early_post = [e.id for e in post if e.id < first_web]
    assert not early_post, (
        f"post-deployment migrations {early_post} ran before the first v{DEFAULT_VERSION} web-start ({first_web}); {listing}"
    )


def test_5c_upgrade_reports_new_version(upgrade):
    require(upgrade["new"], "the upgrade deploy")
    assert upgrade["instance"].get("version") == DEFAULT_VERSION, (
        f"/api/v1/instance reports {upgrade['instance'].get('version')!r} after the upgrade"
    )
    assert upgrade["instance"].get("uri") == DOMAIN


def test_5d_upgrade_keeps_secrets(upgrade):
    require(upgrade["new"], "the upgrade deploy")
    before, after = upgrade["secrets_before"], upgrade["secrets_after"]
    missing = sorted(k for k, v in before.items() if v == "missing")
    assert not missing, f"secrets missing after the v{PREVIOUS_VERSION} deploy: {missing}"
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert not changed, f"secrets changed by the upgrade (values not shown): {changed}"


def test_5e_upgrade_took_a_private_dump_first(upgrade):
    require(upgrade["new"], "the upgrade deploy")
    lines = upgrade["backups"].splitlines()
    assert lines and lines[0] != "missing", f"{BACKUP_DIR} does not exist"
    assert lines[0] == "700 root:root", f"{BACKUP_DIR} is {lines[0]}, expected 700 root:root"
    dumps = [line.split("\t") for line in lines[1:] if line.strip()]
    assert dumps, f"no dump in {BACKUP_DIR}"
    bad = [f"{d[4]} ({d[0]} {d[1]})" for d in dumps if d[0] != "600" or d[1] != "root:root"]
    assert not bad, f"dumps not root:root 0600: {bad}"
    empty = [d[4] for d in dumps if int(d[2]) == 0]
    assert not empty, f"empty dumps: {empty}"
    # the dump was taken before the upgrade's first migration
    migrations = [e for e in _upgrade_events(upgrade) if e.event == "migration"]
    if migrations:
        first = min(e.at for e in migrations)
        assert any(float(d[3]) <= first for d in dumps), (
            f"no dump in {BACKUP_DIR} was written before the upgrade's first migration"
        )


def test_5f_host_suite_passes_after_upgrade(box, upgrade):
    require(upgrade["new"], "the upgrade deploy")
    proc = run_host_suite(box, DOMAIN, f"--mastodon-version={DEFAULT_VERSION}")
    assert proc.returncode == 0, (
        f"tests/host after the upgrade failed:\n{tail(proc.stdout, 80)}\n{tail(proc.stderr, 20)}"
    )


# --------------------------------------------------------------------------- secret hygiene


def test_9_no_secret_in_any_pyinfra_output():
    """SPEC §5: a run never prints a secret (checked against the real values read from the host)."""
    if not RUNS:
        pytest.skip("no pyinfra run in this session")
    unscanned = [label for label, r in RUNS if r.bag is None]
    assert not unscanned, f"could not scan the output of: {unscanned}"
    bags = {id(r.bag): r.bag for _, r in RUNS}.values()
    assert all({"SECRET_KEY_BASE", "ADMIN_PASSWORD"} <= set(b.names()) for b in bags), (
        f"the host's secrets were not read: {list(bags)}"
    )
    leaking = [f"{label}: {', '.join(leaks)}" for label, r in RUNS if (leaks := r.leaks())]
    assert not leaking, f"pyinfra output contains secret values (lines withheld): {leaking}"
