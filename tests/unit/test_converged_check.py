"""
The converged check (``facts.Converged``, ``sh/converged.sh``, ``sh/compose-memo.sh``): what it is
given comes from ``desired`` (the list the stages write), no secret is in its arguments, and a real
/bin/sh run reports each kind of difference. A fake ``docker`` that knows no container stands in for
the engine; the end-to-end tests (tests/e2e/test_converged.py) run it against the real one.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest
from fakes import fake_bin

from pyinfra_mastodon import commands, desired, layout
from pyinfra_mastodon.envfile import Withheld
from pyinfra_mastodon.facts import Converged
from pyinfra_mastodon.settings import load_config

BASE = {
    "mastodon_prefix": "social",
    "mastodon_server_id": 1,
    "mastodon_zone": "example.org",
    "mastodon_admin_email": "admin@example.org",
}
OVERRIDE = "s3cr3t-override-value-Zq"


def _cfg(**data):
    return load_config("social1", {**BASE, **data})


def test_every_declared_path_is_checked():
    cfg = _cfg(mastodon_media_remove_timer=True, mastodon_certbot_local_ca=True)
    args, _ = desired.converged_check(cfg)
    items = args[13:]
    paths = {item.split()[1] for item in items if item.split()[0] in ("folder", "file", "envfile", "absent")}
    declared = {f.path for f in desired.folders(cfg)} | {f.path for f in desired.files(cfg)}
    declared |= {e.path for e in desired.env_files(cfg)} | set(desired.absent_timer_files(cfg))
    assert declared <= paths, sorted(declared - paths)
    assert layout.LOCAL_CA_DIR in paths and layout.JOB_RUNNER in paths
    assert f"timer {layout.TIMERS[0].unit}.timer" in items
    # the files' digests are those of what the stages write
    compose = desired.compose_file(cfg)
    assert f"file {compose.path} {compose.sha256} mastodon mastodon 644" in items


def test_no_secret_in_the_arguments_and_the_payload_is_withheld():
    cfg = _cfg(mastodon_secret_key_base=OVERRIDE)
    args, payload = desired.converged_check(cfg)
    assert not any(OVERRIDE in arg for arg in args)
    command = Converged().command(args)
    assert OVERRIDE not in command
    assert f"SECRET_KEY_BASE={OVERRIDE}" in payload  # the override is compared on the host...
    assert repr(Withheld(payload)) == "<withheld>"  # ...and travels withheld
    # every other secret is one the host must have
    assert "@@KEEP@@OTP_SECRET" in payload and "@@SECRET@@" not in payload


def test_an_item_never_holds_a_space_inside_a_field():
    args, _ = desired.converged_check(_cfg(mastodon_media_remove_timer=True))
    fields = {"folder": 5, "file": 6, "envfile": 5, "absent": 2, "user": 6, "group": 3, "timer": 2, "data": 2}
    for item in args[13:]:
        kind = item.split()[0]
        assert len(item.split()) == fields[kind], item


# Real shell runs

FAKE_DOCKER = """#!/bin/sh
# Knows no container and no image: every query answers nothing.
exit 0
"""


@pytest.fixture
def host(tmp_path):
    """A folder tree standing for the host, files owned by whoever runs the tests."""
    bin_dir = fake_bin(tmp_path, docker=FAKE_DOCKER)
    root = tmp_path / "host"
    root.mkdir()
    return root, {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}


def _me() -> tuple[str, str]:
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def _run(root: Path, env: dict, items: list[str], payload: str = "", env_count: int = 0, memo: str = "") -> dict:
    fixed = (
        layout.MANAGED_HEADER,
        str(root),
        str(root / "conf.d"),
        str(root / "conf.d/social1.example.org.conf"),
        memo or str(root / "memo"),
        str(root / "cache"),
        "SELECT 1",
        str(root / "password"),
        "social1.example.org",
        "none",
        f"1 {root}",
        str(env_count),
        "-",
    )
    fact = Converged()
    result = subprocess.run(
        ["/bin/sh", "-c", fact.command((*fixed, *items))], input=payload, capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    return fact.process(lines) if lines else fact.default()


ENV = "LOCAL_DOMAIN=social1.example.org\nSECRET_KEY_BASE=abc123\nOTP_SECRET=def456\n"
PLAN = "@@ENVFILE@@ {path}\nLOCAL_DOMAIN=social1.example.org\n@@KEEP@@SECRET_KEY_BASE\n@@KEEP@@OTP_SECRET\n"


def _env_case(root: Path, content: str, plan_template: str = PLAN) -> tuple[list[str], str]:
    path = root / ".env.production"
    path.write_text(content)
    path.chmod(0o600)
    user, group = _me()
    return [f"envfile {path} {user} {group} 600"], plan_template.format(path=path)


def test_env_file_as_planned_passes_to_the_next_concern(host):
    root, env = host
    items, payload = _env_case(root, ENV)
    # the next item differs: the env file itself was found as planned
    found = _run(root, env, [*items, f"folder {root}/missing root root 755"], payload, env_count=1)
    assert found == {"converged": False, "concern": "folder", "what": f"{root}/missing"}


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(ENV.replace("abc123", ""), id="a secret left empty is one to generate"),
        pytest.param(ENV.replace("abc123", "''"), id="a secret of two quotes is empty too"),
        pytest.param(ENV.replace("OTP_SECRET=def456\n", ""), id="a secret missing"),
        pytest.param(ENV.replace("social1", "social2"), id="a plain line changed"),
        pytest.param(ENV + "EXTRA=1\n", id="a line the deploy does not write"),
    ],
)
def test_env_file_differences(host, content):
    root, env = host
    items, payload = _env_case(root, content)
    assert _run(root, env, items, payload, env_count=1)["concern"] == "envfile"


def test_env_file_missing_or_not_in_the_payload(host):
    root, env = host
    items, payload = _env_case(root, ENV)
    (root / ".env.production").unlink()
    assert _run(root, env, items, payload, env_count=1)["concern"] == "envfile"
    items, payload = _env_case(root, ENV)
    assert _run(root, env, items, "", env_count=1)["concern"] == "envfile"  # nothing compared is no answer


def test_env_file_mode_counts(host):
    root, env = host
    items, payload = _env_case(root, ENV)
    (root / ".env.production").chmod(0o644)
    assert _run(root, env, items, payload, env_count=1)["concern"] == "file"


def test_folder_file_and_absent_differences(host):
    root, env = host
    user, group = _me()
    (root / "d").mkdir(mode=0o755)
    (root / "d").chmod(0o755)
    f = root / "f"
    f.write_text("content\n")
    f.chmod(0o644)
    good_sha = desired.File(str(f), "content\n", user, group, "644").sha256
    ok = [f"folder {root}/d {user} {group} 755", f"file {f} {good_sha} {user} {group} 644", f"absent {root}/gone"]
    sentinel = [f"folder {root}/sentinel {user} {group} 755"]
    assert _run(root, env, ok + sentinel)["what"] == f"{root}/sentinel"
    (root / "d").chmod(0o775)
    assert _run(root, env, ok)["what"] == f"{root}/d"
    (root / "d").chmod(0o755)
    f.write_text("edited\n")
    assert _run(root, env, ok) == {"converged": False, "concern": "file", "what": str(f)}
    f.write_text("content\n")
    f.chmod(0o640)
    assert _run(root, env, ok)["what"] == str(f)
    f.chmod(0o644)
    (root / "gone").write_text("")
    assert _run(root, env, ok) == {"converged": False, "concern": "absent", "what": f"{root}/gone"}
    (root / "gone").unlink()
    os.symlink(f, root / "link")
    assert _run(root, env, [f"file {root}/link {good_sha} {user} {group} 644"])["concern"] == "file"


def test_user_and_group(host):
    root, env = host
    user, group = _me()
    uid, gid = os.getuid(), os.getgid()
    home, shell = pwd.getpwuid(uid).pw_dir, pwd.getpwuid(uid).pw_shell
    sentinel = [f"folder {root}/sentinel {user} {group} 755"]
    assert (
        _run(root, env, [f"user {user} {uid} {gid} {home} {shell}", f"group {group} {gid}", *sentinel])["what"]
        == f"{root}/sentinel"
    )
    assert _run(root, env, [f"user {user} {uid} {gid} {home} /bin/false"])["concern"] == "user"
    assert _run(root, env, ["user nobody-here-at-all 991 991 /x /y"])["concern"] == "user"
    assert _run(root, env, [f"group {group} {gid + 1}"])["concern"] == "group"


def test_a_stale_server_block_or_upstream_data(host):
    root, env = host
    conf_dir = root / "conf.d"
    conf_dir.mkdir()
    (conf_dir / "social1.example.org.conf").write_text(layout.MANAGED_HEADER + "\n")
    (conf_dir / "old.example.org.conf").write_text(layout.MANAGED_HEADER + "\n")
    assert _run(root, env, []) == {"converged": False, "concern": "absent", "what": f"{conf_dir}/old.example.org.conf"}
    (conf_dir / "old.example.org.conf").write_text("# the operator's own\n")
    # ours only: on to the next question, Compose (no memo here)
    assert _run(root, env, []) == {"converged": False, "concern": "compose", "what": "plan"}
    db = root / layout.SERVICES_BY_NAME["db"].data_dir
    db.mkdir()
    (db / "PG_VERSION").write_text("14\n")
    assert _run(root, env, [])["what"] == "upstream-pgdata"


def _memo_run(tmp_path, env: dict, plan: str) -> Path:
    memo = tmp_path / "cache" / "memo"
    command = commands.script("compose-memo", str(tmp_path), str(memo))
    result = subprocess.run(["/bin/sh", "-c", command], input=plan, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == plan  # the plan is passed on, for ComposeUpPlan
    return memo


RUNNING = " DRY-RUN MODE -  Container mastodon-web-1  Running\n DRY-RUN MODE -  Container mastodon-db-1  Running\n"


def test_the_memo_is_kept_only_when_every_service_is_up_to_date(host, tmp_path):
    root, env = host
    memo = _memo_run(root, env, RUNNING + " DRY-RUN MODE -  Container mastodon-db-1  Healthy\n")
    assert memo.is_file() and stat.S_IMODE(memo.stat().st_mode) == 0o600
    assert len(memo.read_text().strip()) == 64
    # the first action of a container is the decision
    stale = " DRY-RUN MODE -  Container mastodon-web-1  Recreate\n DRY-RUN MODE -  Container mastodon-web-1  Running\n"
    assert not _memo_run(root, env, stale + RUNNING).exists()
    assert _memo_run(root, env, RUNNING + stale).exists()  # web's first word was Running
    _memo_run(root, env, RUNNING)
    assert not _memo_run(root, env, "").exists()  # no plan at all (no compose file): no memo


def test_the_memo_holds_while_nothing_changes_and_not_after(host):
    root, env = host
    user, group = _me()
    conf_dir = root / "conf.d"
    conf_dir.mkdir()
    pgdata = root / layout.SERVICES_BY_NAME["db"].data_dir / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("14\n")
    (root / "docker-compose.yml").write_text("services: {}\n")
    memo = _memo_run(root, env, RUNNING)
    # compose holds: the next question is the database, which the fake docker cannot answer
    assert _run(root, env, [], memo=str(memo)) == {"converged": False, "concern": "database", "what": "migrations"}
    (root / "docker-compose.yml").write_text("services: {web: {}}\n")
    assert _run(root, env, [], memo=str(memo)) == {"converged": False, "concern": "compose", "what": "plan"}
    _memo_run(root, env, RUNNING)
    (root / ".env.production").write_text("A=1\n")  # an env file Compose reads changed
    assert _run(root, env, [], memo=str(memo))["concern"] == "compose"


def test_a_cluster_host_leaves_out_what_it_does_not_run():
    """On an instance on several hosts: the database is checked on the db host only (against the web
    image its jobs use, since no web runs there), the certificate on the proxy only; the env files are
    compared with the instance's secrets, which travel in the withheld payload only."""
    from contract import CLUSTER_ROLES

    from pyinfra_mastodon.settings import load_inventory_configs

    s3 = {
        "mastodon_s3_bucket": "media",
        "mastodon_s3_access_key_id": "AKIA1",
        "mastodon_s3_secret_access_key": "k" * 40,
    }
    base = {"mastodon_server_id": "1", "mastodon_zone": "example.org", "mastodon_admin_email": "admin@example.org"}
    hosts = [
        (name, {**base, **s3, "ssh_hostname": f"{name}.example.org", **data}) for name, data in CLUSTER_ROLES.items()
    ]
    configs = load_inventory_configs(hosts)
    shared = {"DB_PASS": "d" * 64, "REDIS_PASSWORD": "r" * 64, "SECRET_KEY_BASE": "a" * 128}
    fixed = {}
    for name, cfg in configs.items():
        args, payload = desired.converged_check(cfg, (), shared)
        fixed[name] = (args[3] != "-", args[6] != "-", args[12])
        assert not any(value in arg for arg in args for value in shared.values()), name
        if name != "edge":
            assert f"DB_PASS={'d' * 64}" in payload or f"POSTGRES_PASSWORD={'d' * 64}" in payload, name
    web = configs["db"].web_image
    # (checks the certificate, checks the database, the image of the jobs)
    assert fixed == {
        "db": (False, True, web),
        "app1": (False, False, "-"),
        "app2": (False, False, "-"),
        "edge": (True, False, "-"),
    }
