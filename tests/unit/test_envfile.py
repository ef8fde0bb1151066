"""
Env files with secrets: planning from the keys the host has, comparing on the host (the real
``env-file-keys.sh`` and ``env-file-compare.sh`` through /bin/sh), and the command that writes them.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyinfra_mastodon import facts
from pyinfra_mastodon.commands import env_file_write as write_command
from pyinfra_mastodon.envfile import (
    DERIVE_MARKER,
    KEEP_MARKER,
    EnvFileError,
    EnvPlan,
    plan_env_file,
    planned_keys,
    quote_env_value,
)
from pyinfra_mastodon.secrets import generate_vapid_keypair

RENDERED = (
    "# header\nLOCAL_DOMAIN=a.example.org\nSECRET_KEY_BASE=@@SECRET@@\n"
    "VAPID_PRIVATE_KEY=@@SECRET@@\nVAPID_PUBLIC_KEY=@@SECRET@@\n"
)
PAIRS = {"VAPID_PUBLIC_KEY": "VAPID_PRIVATE_KEY"}


def _fact(fact, path: Path, stdin: str = ""):
    out = subprocess.run(
        ["/bin/sh", "-c", fact.command(str(path))], input=stdin, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return fact.process(out) if out else fact.default()


@dataclass
class Outcome:
    """A plan and what the host said of it, as ``operations.secret_env_file`` combines them."""

    plan: EnvPlan
    changed: bool
    changed_keys: tuple[str, ...]
    overridden: tuple[str, ...]
    output: str  # everything the host printed: it must hold no value

    def __getattr__(self, name):
        return getattr(self.plan, name)


def plan_on_host(tmp_path: Path, on_host: str | None, overrides: dict | None = None) -> Outcome:
    path = tmp_path / ".env.production"
    if on_host is not None:
        path.write_text(on_host)
    found = _fact(facts.EnvFileKeys(), path)
    plan = plan_env_file(RENDERED, found["keys"] if found else None, overrides or {}, fake_generate, pairs=PAIRS)
    if found is None:
        return Outcome(plan, True, tuple(planned_keys(plan.payload)), (), "")
    diff = _fact(facts.EnvFileDiff(), path, stdin=plan.payload)
    output = (
        subprocess.run(
            ["/bin/sh", "-c", facts.EnvFileDiff().command(str(path))],
            input=plan.payload,
            capture_output=True,
            text=True,
        ).stdout
        + subprocess.run(
            ["/bin/sh", "-c", facts.EnvFileKeys().command(str(path))], capture_output=True, text=True
        ).stdout
    )
    changed_keys = tuple(diff["changed"])
    overridden = tuple(k for k in plan.overridden if k in changed_keys)
    return Outcome(plan, not diff["same"], changed_keys, overridden, output)


def fake_generate(missing: set[str]) -> dict[str, str]:
    return {key: f"new-{key.lower()}" for key in missing}


def test_fresh_file_generates_every_secret(tmp_path):
    plan = plan_on_host(tmp_path, None)
    assert plan.changed
    assert set(plan.generated) == {"SECRET_KEY_BASE", "VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY"}
    assert "SECRET_KEY_BASE=new-secret_key_base" in plan.payload.splitlines()
    assert KEEP_MARKER not in plan.payload


def test_converged_file_is_unchanged_and_keeps_secrets_on_the_host(tmp_path):
    on_host = RENDERED.replace("@@SECRET@@", "hostvalue")
    plan = plan_on_host(tmp_path, on_host)
    assert not plan.changed
    assert plan.generated == () and plan.changed_keys == ()
    assert set(plan.kept) == {"SECRET_KEY_BASE", "VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY"}
    assert "hostvalue" not in plan.payload and "hostvalue" not in plan.output


def test_changed_setting_keeps_secrets_and_names_only_the_changed_key(tmp_path):
    on_host = RENDERED.replace("@@SECRET@@", "hostvalue").replace("a.example.org", "old.example.org")
    plan = plan_on_host(tmp_path, on_host)
    assert plan.changed
    assert plan.changed_keys == ("LOCAL_DOMAIN",)
    assert plan.generated == ()
    assert f"{KEEP_MARKER}SECRET_KEY_BASE" in plan.payload.splitlines()
    assert "hostvalue" not in plan.output and "example.org" not in plan.output


def test_deleted_key_is_the_only_one_generated(tmp_path):
    on_host = RENDERED.replace("@@SECRET@@", "hostvalue")
    on_host = "\n".join(line for line in on_host.splitlines() if not line.startswith("SECRET_KEY_BASE")) + "\n"
    plan = plan_on_host(tmp_path, on_host)
    assert plan.changed
    assert plan.generated == ("SECRET_KEY_BASE",)
    assert set(plan.kept) == {"VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY"}


def test_missing_private_key_regenerates_its_public_key(tmp_path):
    on_host = RENDERED.replace("@@SECRET@@", "hostvalue")
    on_host = "\n".join(line for line in on_host.splitlines() if not line.startswith("VAPID_PRIVATE")) + "\n"
    plan = plan_on_host(tmp_path, on_host)
    assert set(plan.generated) == {"VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY"}


def test_missing_public_key_alone_is_rebuilt_on_the_host_from_the_kept_private_key(tmp_path):
    on_host = RENDERED.replace("@@SECRET@@", "hostvalue")
    on_host = "\n".join(line for line in on_host.splitlines() if not line.startswith("VAPID_PUBLIC")) + "\n"
    plan = plan_on_host(tmp_path, on_host)
    assert plan.changed and plan.generated == () and plan.derived == ("VAPID_PUBLIC_KEY",)
    assert f"{DERIVE_MARKER}VAPID_PUBLIC_KEY" in plan.payload.splitlines()
    assert "VAPID_PRIVATE_KEY" in plan.kept and "hostvalue" not in plan.payload
    assert "VAPID_PUBLIC_KEY" in plan.changed_keys


@pytest.mark.parametrize("empty", ["", '""', "''"])
def test_an_empty_secret_on_the_host_counts_as_missing(tmp_path, empty):
    # `SECRET_KEY_BASE=` has no value to keep: keeping it would leave the instance without a key forever.
    on_host = RENDERED.replace("@@SECRET@@", "hostvalue").replace(
        "SECRET_KEY_BASE=hostvalue", f"SECRET_KEY_BASE={empty}"
    )
    plan = plan_on_host(tmp_path, on_host)
    assert plan.changed and plan.generated == ("SECRET_KEY_BASE",)
    assert "SECRET_KEY_BASE=new-secret_key_base" in plan.payload.splitlines()
    assert set(plan.kept) == {"VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY"}


def test_an_empty_private_key_regenerates_the_pair(tmp_path):
    on_host = RENDERED.replace("@@SECRET@@", "hostvalue").replace("VAPID_PRIVATE_KEY=hostvalue", "VAPID_PRIVATE_KEY=")
    plan = plan_on_host(tmp_path, on_host)
    assert set(plan.generated) == {"VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY"}
    assert plan.kept == ("SECRET_KEY_BASE",)


def test_override_replaces_host_value_and_is_reported_by_name(tmp_path):
    on_host = RENDERED.replace("@@SECRET@@", "hostvalue")
    plan = plan_on_host(tmp_path, on_host, {"SECRET_KEY_BASE": "f" * 128})
    assert plan.changed and plan.overridden == ("SECRET_KEY_BASE",)
    # an override equal to what the host has is no change
    on_host2 = on_host.replace("SECRET_KEY_BASE=hostvalue", "SECRET_KEY_BASE=" + "f" * 128)
    plan2 = plan_on_host(tmp_path, on_host2, {"SECRET_KEY_BASE": "f" * 128})
    assert not plan2.changed and plan2.overridden == ()
    assert "f" * 128 not in plan.output + plan2.output


def test_reordered_or_extra_lines_count_as_change(tmp_path):
    on_host = RENDERED.replace("@@SECRET@@", "hostvalue") + "EXTRA=1\n"
    plan = plan_on_host(tmp_path, on_host)
    assert plan.changed and "EXTRA" in plan.changed_keys
    swapped = on_host.replace("# header\n", "").replace(
        "LOCAL_DOMAIN=a.example.org\n", "LOCAL_DOMAIN=a.example.org\n# header\n"
    )
    moved = plan_on_host(tmp_path, swapped.replace("EXTRA=1\n", ""))
    assert moved.changed and moved.changed_keys == ()  # a comment moved: no key differs


def test_env_file_keys_never_print_a_value(tmp_path):
    path = tmp_path / ".env.production"
    secret = "f00dfeed" * 16
    path.write_text(f"SECRET_KEY_BASE={secret}\nEMPTY=\nQUOTED=''\nnot a key {secret}\n")
    found = _fact(facts.EnvFileKeys(), path)
    assert found["keys"] == {"SECRET_KEY_BASE": True, "EMPTY": False, "QUOTED": False}
    raw = subprocess.run(["/bin/sh", "-c", facts.EnvFileKeys().command(str(path))], capture_output=True, text=True)
    assert secret not in raw.stdout + raw.stderr and "not a key" not in raw.stdout


def test_compare_reads_its_whole_stdin_even_without_a_file(tmp_path):
    # The channel must not close under the writer: the script drains stdin when the file is missing.
    big = "X=" + "y" * 200000 + "\n"
    result = subprocess.run(
        ["/bin/sh", "-c", facts.EnvFileDiff().command(str(tmp_path / "missing")) + "; echo rc=$?"],
        input=big,
        capture_output=True,
        text=True,
    )
    assert result.stdout.split() == ["missing", "rc=0"]


@pytest.mark.parametrize(
    "value, expected",
    [("plain", "plain"), ("a b", "'a b'"), ("pa$$word", "'pa$$word'"), ("x#y", "'x#y'"), ("", "")],
)
def test_quote_env_value(value, expected):
    assert quote_env_value(value) == expected


@pytest.mark.parametrize("value", ["a\nb", "it's $", "nul\0"])
def test_quote_env_value_refuses_unwritable_values(value):
    with pytest.raises(EnvFileError):
        quote_env_value(value)


def _run_write(path, payload, **kwargs):
    me_user = pwd.getpwuid(os.getuid()).pw_name
    me_group = grp.getgrgid(os.getgid()).gr_name
    return subprocess.run(
        write_command(str(path), me_user, me_group, **kwargs),
        shell=True,
        input=payload,
        text=True,
        capture_output=True,
    )


def test_write_command_merges_kept_lines_atomically_with_mode_600(tmp_path):
    target = tmp_path / ".env.production"
    target.write_text("LOCAL_DOMAIN=old\nSECRET_KEY_BASE=keep me = with % and 'quotes' \\\\\n")
    os.chmod(target, 0o600)
    payload = f"LOCAL_DOMAIN=new\n{KEEP_MARKER}SECRET_KEY_BASE\nOTP_SECRET=fresh\n"
    result = _run_write(target, payload)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == (
        "LOCAL_DOMAIN=new\nSECRET_KEY_BASE=keep me = with % and 'quotes' \\\\\nOTP_SECRET=fresh\n"
    )
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not (tmp_path / ".env.production.pyinfra-tmp").exists()
    assert "keep me" not in result.stdout + result.stderr


def test_write_command_creates_a_new_file_as_600(tmp_path):
    target = tmp_path / ".env.db"
    result = _run_write(target, "A=1\n")
    assert result.returncode == 0, result.stderr
    assert target.read_text() == "A=1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_write_command_fails_and_keeps_the_file_when_a_kept_key_vanished(tmp_path):
    target = tmp_path / ".env.production"
    target.write_text("LOCAL_DOMAIN=old\n")
    result = _run_write(target, f"{KEEP_MARKER}SECRET_KEY_BASE\n")
    assert result.returncode != 0
    assert "SECRET_KEY_BASE vanished" in result.stderr
    assert target.read_text() == "LOCAL_DOMAIN=old\n"


def test_write_command_rebuilds_the_vapid_public_key_from_the_private_key(tmp_path):
    private, public = generate_vapid_keypair()
    target = tmp_path / ".env.production"
    target.write_text(f"VAPID_PRIVATE_KEY={private}\n")
    payload = f"{KEEP_MARKER}VAPID_PRIVATE_KEY\n{DERIVE_MARKER}VAPID_PUBLIC_KEY\n"
    result = _run_write(target, payload, derive_vapid_public=True)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == f"VAPID_PRIVATE_KEY={private}\nVAPID_PUBLIC_KEY={public}\n"
    assert private not in result.stdout + result.stderr
