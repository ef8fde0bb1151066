"""Secret files: never readable by others, not even for a moment; generated once, kept forever (SPEC §3, §5).

An inotify watcher on the host (toolkit.Watcher) runs through the whole module: it sees every
create/modify/attrib/rename of a file under /opt, /root, /tmp, /var/tmp, /var/backups, /data, /run,
/dev/shm, /home, /etc and /var/lib (less Docker's own state) and logs each state in which a secret-bearing
file (env files, the owner password, dumps, temp copies, anything under /tmp, /var/tmp, /root) is readable
by group or other; any readable file whose content holds a secret key name, whatever its name; and the
sha256 of every readable file, compared afterwards with the real secret files (a readable copy of the
owner password would be caught). Negative controls prove it catches a file that is 0644 for about a
millisecond, a readable file with an unrelated name holding "SECRET_KEY_BASE=", and a readable copy of
the owner password.

Secret identity is compared by sha256 of each line, computed ON the host.
"""

from __future__ import annotations

import secrets as pysecrets
import time

import pytest
from contract import ADMIN_PASSWORD_FILE, COMPOSE_FILE, ENV_DB, ENV_PRODUCTION, NGINX_CONF_DIR, SECRET_KEYS
from toolkit import (
    Result,
    Sandbox,
    SecretBag,
    Watcher,
    env_line_hashes,
    file_digest,
    run_pyinfra,
    secret_hashes,
)

pytestmark = pytest.mark.e2e

RERUNS = 10
SMTP = {"mastodon_smtp_server": "smtp.sandbox.test", "mastodon_smtp_password": f"pw-{pysecrets.token_hex(12)}"}
OVERRIDE = pysecrets.token_hex(64)  # a valid SECRET_KEY_BASE (128 lowercase hex)
CONTROL = f"{ENV_PRODUCTION}.leaktest"
CONTENT_CONTROLS = ("/run/leaktest-notes.txt", "/var/tmp/leaktest-notes.txt")  # names no rule knows (in /run)
COPY_CONTROL = "/dev/shm/leaktest-copy"
CONTROL_MARK = "leaktest"  # every control file's path holds it; real violations never do

RUNS: list[Result] = []
BAG = SecretBag()
BAG.add("operator SMTP password", SMTP["mastodon_smtp_password"])
BAG.add("SECRET_KEY_BASE override", OVERRIDE)


def deploy(box: Sandbox, label: str, *args: str, data: dict | None = None) -> Result:
    result = run_pyinfra(box, *args, label=label, data=data, bag=BAG)  # the host's secrets join BAG
    RUNS.append(result)
    return result


def ok(result: Result) -> None:
    assert result.rc == 0, result.describe()


@pytest.fixture(scope="module")
def watcher(box):
    w = Watcher(box, "files")
    w.start()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def created(box, watcher):
    """A fresh host deployed at v4.6.4: the secret files are created under the watcher."""
    r = deploy(box, "create (v4.6.4)", data={"mastodon_version": "v4.6.4"})
    ok(r)
    # the bag must hold the host's secrets, else "no secret in the output" below would prove nothing
    assert "SECRET_KEY_BASE" in BAG.names() and "ADMIN_PASSWORD" in BAG.names(), f"host secrets not read: {BAG!r}"
    return {"run": r, "hashes": secret_hashes(box)}


@pytest.fixture(scope="module")
def control(box, watcher, created):
    """Negative control: a secret-named file that is 0644 only until the next command (chmod)."""
    box.out(f"echo x > {CONTROL}; chmod 600 {CONTROL}; rm -f {CONTROL}")
    time.sleep(0.5)
    return [v for v in watcher.violations() if ".leaktest" in v]


@pytest.fixture(scope="module")
def content_controls(box, watcher, created, control):
    """Negative controls of the content rules: readable (0644) files with names no rule knows, one holding
    a secret key name, one a byte-identical copy of the owner password; each lives 0.3 s."""
    box.out(
        "umask 022; "
        + "; ".join(f"printf 'SECRET_KEY_BASE=x\\n' > {f}" for f in CONTENT_CONTROLS)
        + f"; cat {ADMIN_PASSWORD_FILE} > {COPY_CONTROL}; sleep 0.3; rm -f {' '.join(CONTENT_CONTROLS)} {COPY_CONTROL}"
    )
    time.sleep(0.5)
    return {
        "content": [v for v in watcher.violations() if CONTROL_MARK in v and "content:" in v],
        "digest": [v for v in watcher.digest_violations() if CONTROL_MARK in v],
    }


def real_violations(watcher) -> list[str]:
    """Everything the watcher flagged (names, content, digests) but the negative controls."""
    found = watcher.violations() + [f"digest: {v}" for v in watcher.digest_violations()]
    return [v for v in found if CONTROL_MARK not in v]


@pytest.fixture(scope="module")
def upgraded(box, created, control, content_controls):
    r = deploy(box, "upgrade to v4.6.5")
    ok(r)
    return {"run": r, "hashes": secret_hashes(box)}


@pytest.fixture(scope="module")
def setting_changed(box, upgraded):
    r = deploy(box, "setting change (smtp)", data=SMTP)
    ok(r)
    return {"run": r, "hashes": secret_hashes(box), "file": file_digest(box, ENV_PRODUCTION)}


@pytest.fixture(scope="module")
def reruns(box, setting_changed):
    out = []
    t0 = time.monotonic()
    for i in range(RERUNS):
        r = deploy(box, f"re-run {i + 1}", "--json", data=SMTP)
        ok(r)
        out.append((r, secret_hashes(box), file_digest(box, ENV_PRODUCTION), file_digest(box, ENV_DB)))
    return {"runs": out, "seconds": time.monotonic() - t0}


def _delete_and_rerun(box, key: str) -> dict:
    before = env_line_hashes(box)
    box.out(f"sed -i '/^{key}=/d' {ENV_PRODUCTION}")
    missing = env_line_hashes(box)
    assert key not in [k for k, _ in missing], f"could not delete {key} by hand"
    r = deploy(box, f"re-add {key}", data=SMTP)
    ok(r)
    return {"run": r, "before": before, "after": env_line_hashes(box), "key": key}


@pytest.fixture(scope="module")
def deleted(box, reruns):
    return {
        k: _delete_and_rerun(box, k)
        for k in ("SECRET_KEY_BASE", "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "VAPID_PUBLIC_KEY")
    }


@pytest.fixture(scope="module")
def overridden(box, deleted):
    before = secret_hashes(box)
    r1 = deploy(box, "override SECRET_KEY_BASE", data={**SMTP, "mastodon_secret_key_base": OVERRIDE})
    ok(r1)
    after = secret_hashes(box)
    r2 = deploy(box, "after the override, without it", data=SMTP)
    ok(r2)
    return {"runs": (r1, r2), "before": before, "after": after, "kept": secret_hashes(box)}


# ----------------------------------------------------------------------------------------- tests


def test_watcher_catches_a_millisecond_leak(control):
    assert control, "the watcher did not see a secret-named file that was 0644 until chmod 600: it could never fail"


def test_watcher_catches_secret_content_under_an_unrelated_name(content_controls):
    for path in CONTENT_CONTROLS:
        assert any(path in v and "SECRET_KEY_BASE=" in v for v in content_controls["content"]), (
            f"the watcher did not flag {path} (0644, holds 'SECRET_KEY_BASE='): {content_controls['content']}"
        )


def test_watcher_catches_a_readable_copy_of_the_owner_password(content_controls):
    assert any(COPY_CONTROL in v and ADMIN_PASSWORD_FILE in v for v in content_controls["digest"]), (
        f"the digest comparison did not flag {COPY_CONTROL} (a 0644 copy of {ADMIN_PASSWORD_FILE}): {content_controls['digest']}"
    )


def test_watcher_hashed_the_public_files(watcher, created):
    """Not vacuous: the readable files the deploy writes were seen and hashed (and are no violation)."""
    digests = watcher.digests()
    for path in (COMPOSE_FILE, f"{NGINX_CONF_DIR}/"):
        assert any(path in d for d in digests), f"the watcher hashed no readable {path}: it does not look at content"


def test_secret_files_created_0600_and_never_readable_by_others(box, watcher, created, control, upgraded):
    bad = [v for v in watcher.violations() if CONTROL_MARK not in v]  # CONTROL_MARK is in ".leaktest" too
    bad += [v for v in real_violations(watcher) if v not in bad]
    assert not bad, "secret-bearing files readable by group/other at some moment:\n" + "\n".join(bad[:30])
    modes = box.out(f"stat -c '%n %a %U:%G' {ENV_PRODUCTION} {ENV_DB} {ADMIN_PASSWORD_FILE}").split("\n")
    assert [m.split()[1:] for m in modes if m] == [["600", "mastodon:mastodon"]] * 2 + [["600", "root:root"]], modes


def test_watcher_saw_the_secret_files_being_written(watcher, created):
    events = watcher.events()
    for path in (ENV_PRODUCTION, ENV_DB, ADMIN_PASSWORD_FILE):
        assert any(path in e for e in events), f"the watcher saw no event on {path}: it watches the wrong place"


def test_upgrade_keeps_every_secret(created, upgraded):
    assert "missing" not in created["hashes"].values(), f"secrets missing after create: {created['hashes']}"
    changed = [k for k in created["hashes"] if created["hashes"][k] != upgraded["hashes"][k]]
    assert not changed, f"the v4.6.4 -> v4.6.5 upgrade changed {changed}"


def test_setting_change_keeps_every_secret(upgraded, setting_changed):
    changed = [k for k in upgraded["hashes"] if upgraded["hashes"][k] != setting_changed["hashes"][k]]
    assert not changed, f"the setting change changed {changed}"


def test_ten_reruns_leave_the_env_files_byte_identical(setting_changed, reruns):
    print(f"\n{RERUNS} re-runs took {reruns['seconds']:.1f} s")
    first_db = reruns["runs"][0][3]
    for r, hashes, env_digest, db_digest in reruns["runs"]:
        assert hashes == setting_changed["hashes"], f"[{r.label}] secrets changed: " + str(
            [k for k in hashes if hashes[k] != setting_changed["hashes"].get(k)]
        )
        assert env_digest == setting_changed["file"], f"[{r.label}] .env.production is not byte-identical"
        assert db_digest == first_db, f"[{r.label}] .env.db is not byte-identical"


def test_reruns_report_zero_changes(reruns):
    changed = [f"[{r.label}] {op}" for r, *_ in reruns["runs"] for op in r.changed_ops()]
    assert all(r.json for r, *_ in reruns["runs"]), "a re-run printed no JSON document"
    assert not changed, f"converged re-runs changed something: {changed}"


@pytest.mark.parametrize("key", ["SECRET_KEY_BASE", "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "VAPID_PUBLIC_KEY"])
def test_deleted_key_is_added_back_alone(deleted, key):
    d = deleted[key]
    before, after, r = d["before"], d["after"], d["run"]
    assert [k for k, _ in after] == [k for k, _ in before], (
        f"[{r.label}] the keys/lines of .env.production changed order or count:\n"
        f"before {[k for k, _ in before]}\nafter  {[k for k, _ in after]}"
    )
    others = [
        k or f"line {i + 1}"
        for i, ((k, a), (_, b)) in enumerate(zip(before, after, strict=False))
        if k != key and a != b
    ]
    assert not others, f"[{r.label}] re-adding {key} changed other lines: {others}"
    if key == "VAPID_PUBLIC_KEY":
        assert dict(after)[key] == dict(before)[key], "the rebuilt VAPID_PUBLIC_KEY differs from the original"
        assert "VAPID_PUBLIC_KEY rebuilt from its private key on the host" in r.stderr, r.describe()
    else:
        assert f"new secrets generated for {key} (not shown)" in r.stderr, r.describe()


def test_override_from_host_data_replaces_and_is_kept(overridden):
    import hashlib

    r1, r2 = overridden["runs"]
    want = hashlib.sha256(f"SECRET_KEY_BASE={OVERRIDE}".encode()).hexdigest()
    assert overridden["after"]["SECRET_KEY_BASE"] == want, (
        "the SECRET_KEY_BASE on the host is not the one from host data"
    )
    assert "SECRET_KEY_BASE replaced by the value from host data (not shown)" in r1.stderr, r1.describe()
    others = [k for k in SECRET_KEYS if k != "SECRET_KEY_BASE" and overridden["before"][k] != overridden["after"][k]]
    assert not others, f"the override also changed {others}"
    assert overridden["kept"] == overridden["after"], "dropping the override from host data changed the secrets"
    assert "replaced by the value from host data" not in r2.stderr, r2.describe()


def test_watcher_saw_no_leak_during_updates(watcher, overridden):
    assert watcher.alive(), "the watcher died during the module: the no-leak result would mean nothing"
    bad = [v for v in watcher.violations() if CONTROL_MARK not in v]  # CONTROL_MARK is in ".leaktest" too
    bad += [v for v in real_violations(watcher) if v not in bad]
    assert not bad, "secret-bearing files readable by group/other at some moment:\n" + "\n".join(bad[:30])


def test_no_secret_in_the_output_of_this_module(overridden):
    leaks = [f"[{r.label}] {leak}" for r in RUNS for leak in BAG.leaks(r)]
    assert not leaks, f"secret values in the output: {leaks}"
