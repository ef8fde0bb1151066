"""
Custom facts: fixture tests in pyinfra's own style (tests/unit/facts/<FactName>/*.json), plus real
/bin/sh runs of the commands that need no Docker (a fake ``docker`` on PATH stands in for the rest).

Fixture keys: ``arg`` (positional args) / ``kwargs``, ``command`` (exact) or ``command_contains``
(substrings), ``output`` (stdout lines) and ``fact`` (expected ``process``/``default`` result).
Fixtures named ``recorded-*`` hold output captured from a real Docker engine and Compose on the
sandbox (their ``_comment`` says how); the others are written from the documented formats.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from fakes import fake_bin
from pyinfra.api import FactBase

from pyinfra_mastodon import commands, facts

FIXTURES = Path(__file__).parent / "facts"
# Every fact of the module, found rather than listed: each must have a fixture folder of its name.
FACT_CLASSES = {
    name: obj
    for name, obj in vars(facts).items()
    if isinstance(obj, type)
    and issubclass(obj, FactBase)
    and obj.__module__ == facts.__name__
    and not vars(obj).get("abstract", False)
}


def _fixtures() -> list:
    return [pytest.param(path, id=f"{path.parent.name}/{path.stem}") for path in sorted(FIXTURES.glob("*/*.json"))]


def _run_fact(fact, output: list[str]):
    # What pyinfra does (api/facts.py): no stdout -> default(), else process(lines).
    return fact.process(output) if output else fact.default()


def test_every_fact_has_fixtures():
    have = {path.parent.name for path in FIXTURES.glob("*/*.json")}
    assert len(FACT_CLASSES) >= 13, sorted(FACT_CLASSES)
    assert set(FACT_CLASSES) <= have, f"without fixtures: {sorted(set(FACT_CLASSES) - have)}"
    assert have <= set(FACT_CLASSES), f"fixtures of no fact: {sorted(have - set(FACT_CLASSES))}"


@pytest.mark.parametrize("path", _fixtures())
def test_fact_fixture(path: Path):
    data = json.loads(path.read_text())
    fact = FACT_CLASSES[path.parent.name]()
    command = str(fact.command(*data.get("arg", []), **data.get("kwargs", {})))
    if "command" in data:
        assert command == data["command"]
    for part in data.get("command_contains", []):
        assert part in command, f"{part!r} not in {command!r}"
    assert _run_fact(fact, data["output"]) == data["fact"]


@pytest.mark.parametrize("name", sorted(FACT_CLASSES))
def test_commands_always_end_in_exit_zero(name):
    # Every command ends in something that exits 0 whatever happened before it.
    fact = FACT_CLASSES[name]()
    needs = {
        "EnvFileKeys": ["/x"],
        "EnvFileDiff": ["/x"],
        "ImageIds": [["a:b"]],
        "MailDomain": ["example.org"],
        "HostLock": ["r", 5],
        "FreeSpace": [["/x"]],
        "CertificateState": ["social1.example.org"],
        "PathsPresent": [["/x"]],
        "TimerRuns": [["mastodon-x"]],
        "InstalledPackages": [["docker.io"]],
        "Converged": [("h",)],
        "BackupInfo": ["latest"],
    }
    args = needs.get(name, [])
    command = str(fact.command(*args))
    assert command.endswith("; true") or command.endswith("echo no; fi"), command


def test_fact_names_are_the_contract():
    # pyinfra names facts after their module: the CLI spells them pyinfra_mastodon.facts.X.
    assert facts.EnvFileKeys.name == "pyinfra_mastodon.facts.EnvFileKeys"


def test_compose_command_quotes_the_project_dir():
    assert commands.compose_command("/opt/my dir") == (
        "docker compose --project-directory '/opt/my dir' -f '/opt/my dir/docker-compose.yml' -p mastodon"
    )


def test_owner_sql_literal_is_quoted():
    command = facts.OwnerAccount().command(username="o'brien")
    # Doubled for SQL, then shell-quoted: the shell hands psql lower('o''brien').
    sql = command.split("-tAc ", 1)[1].split(" 2>/dev/null", 1)[0]
    assert subprocess.run(["sh", "-c", f"printf %s {sql}"], capture_output=True, text=True).stdout.endswith(
        "lower(a.username) = lower('o''brien'))"
    )


def test_inspect_template_never_prints_env():
    command = facts.ComposeServices().command()
    assert ".Config.Env" not in command and "{{json .}}" not in command


# Real shell runs
#


def _sh(command: str, env: dict | None = None, stdin: str = "") -> list[str]:
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
        input=stdin.encode(),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().splitlines()


TRICKY_LINES = [
    "# a comment with 'quotes' and \"double\" ones",
    "",
    "LOCAL_DOMAIN=social1.sandbox.test",
    "SMTP_PASSWORD=p a s s=word%s%%\\n\\t$HOME`id`",
    "   LEADING_SPACE=1",
    "TRAILING_SPACE=x   ",
    "BACKSLASH=\\",
    "EMPTY=",
    "export EXPORTED=1",
    "1BAD=key",
    "lower_key=ok",
    "tab\there=1",
    "KEY WITH SPACE=1",
    "-n",
    "-e \\x41",
    "UNICODE=héllo ✓",
    "CRLF=x\r",
]


def _expected_keys(lines: list[str]) -> dict:
    out = {}
    for line in lines:
        key, sep, value = line.partition("=")
        valid = (
            sep and key and (key[0].isalpha() or key[0] == "_") and key.replace("_", "a").isalnum() and key.isascii()
        )
        if valid:
            out[key] = value not in ("", '""', "''")
    return out


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_env_file_keys_real_shell(tmp_path, trailing_newline):
    path = tmp_path / "env file"
    content = "\n".join(TRICKY_LINES) + ("\n" if trailing_newline else "")
    path.write_bytes(content.encode())
    path.chmod(0o600)
    fact = facts.EnvFileKeys()
    result = fact.process(_sh(fact.command(str(path))))
    # awk reads a last line without newline too
    assert result["keys"] == _expected_keys(TRICKY_LINES)
    assert result["mode"] == "600"
    assert result["readable"] is True


def test_env_file_keys_output_has_no_values(tmp_path):
    path = tmp_path / ".env.production"
    secret = "f00dfeed" * 16
    path.write_text(f"SECRET_KEY_BASE={secret}\nnot a key {secret}\n")
    output = "\n".join(_sh(facts.EnvFileKeys().command(str(path))))
    assert secret not in output and "not a key" not in output


def test_env_file_compare_output_has_no_values_nor_digests(tmp_path):
    path = tmp_path / ".env.production"
    secret = "f00dfeed" * 16
    path.write_text(f"SECRET_KEY_BASE={secret}\nSMTP_PASSWORD=hunter2\n")
    fact = facts.EnvFileDiff()
    output = _sh(fact.command(str(path)), stdin="@@KEEP@@SECRET_KEY_BASE\nSMTP_PASSWORD=hunter3\n")
    assert fact.process(output) == {"exists": True, "readable": True, "same": False, "changed": ["SMTP_PASSWORD"]}
    text = "\n".join(output)
    assert secret not in text and "hunter" not in text
    assert not re.search(r"[0-9a-f]{32}", text), "something that looks like a digest came back"
    same = _sh(fact.command(str(path)), stdin="@@KEEP@@SECRET_KEY_BASE\nSMTP_PASSWORD=hunter2\n")
    assert fact.process(same)["same"] is True


def test_env_file_facts_edge_files(tmp_path):
    keys = facts.EnvFileKeys()
    assert _sh(keys.command(str(tmp_path / "missing"))) == []
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert keys.process(_sh(keys.command(str(empty))))["keys"] == {}
    blank = tmp_path / "blank"
    blank.write_bytes(b"\n\n")
    assert keys.process(_sh(keys.command(str(blank))))["keys"] == {}
    diff = facts.EnvFileDiff()
    assert diff.process(_sh(diff.command(str(blank)), stdin="\n\n"))["same"] is True
    assert diff.process(_sh(diff.command(str(tmp_path / "missing")), stdin="A=1\n"))["exists"] is False


def test_env_file_keys_fast_enough(tmp_path):
    path = tmp_path / "big"
    path.write_text("".join(f"KEY_{i}=value {i} with spaces\n" for i in range(120)))
    fact = facts.EnvFileKeys()
    result = fact.process(_sh(fact.command(str(path))))
    assert len(result["keys"]) == 120 and result["keys"]["KEY_7"] is True


def test_uid_gid_owners_real_shell():
    fact = facts.UidGidOwners()
    assert fact.process(_sh(fact.command(uid=0, gid=0))) == {"user": "root", "group": "root"}
    output = _sh(fact.command(uid=54321, gid=54321))
    assert (fact.process(output) if output else fact.default()) == {"user": None, "group": None}


# A fake docker on PATH, to run the compose-based commands through a real /bin/sh.
FAKE_DOCKER = r"""#!/bin/sh
# Records its argv, answers from env: FAKE_RUNNING (services with a running container),
# FAKE_PSQL (psql answer), FAKE_RAILS_RC / FAKE_RAILS_OUT (rails answer); for PendingMigrations:
# FAKE_IMAGE (web's image id), FAKE_LS (the image's migration listing), FAKE_APPLIED (schema_migrations).
printf '%s\n' "$*" >> "$FAKE_LOG"
case "$*" in
  ps\ *)
    for s in $FAKE_RUNNING; do
      case "$*" in *"com.docker.compose.service=$s "*) echo "id-$s" ;; esac
    done ;;
  *" exec -T db psql "*) [ -n "$FAKE_PSQL" ] && echo "$FAKE_PSQL"; [ -n "$FAKE_PSQL" ] ;;
  *" exec -T db pg_isready "*) [ -n "$FAKE_PG_READY" ] ;;
  *" exec -T web "*) echo "$FAKE_RAILS_OUT"; exit "${FAKE_RAILS_RC:-0}" ;;
  "inspect --format {{.Image}} id-web") echo "sha256:$FAKE_IMAGE" ;;
  "exec id-web sh -c "*) printf '%b' "$FAKE_LS" ;;
  "exec id-db psql "*) [ -n "$FAKE_APPLIED" ] || exit 2; printf '%b' "$FAKE_APPLIED" ;;
esac
"""


@pytest.fixture
def fake_docker(tmp_path):
    bin_dir = fake_bin(tmp_path, docker=FAKE_DOCKER)
    log = tmp_path / "docker.log"
    log.write_text("")

    def run(fact, env: dict, **kwargs):
        log.write_text("")
        full_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_LOG": str(log), **env}
        output = _sh(str(fact.command(**kwargs)), env=full_env)
        return (fact.process(output) if output else fact.default()), log.read_text()

    return run


def test_sql_facts_with_fake_docker(fake_docker):
    value, log = fake_docker(facts.DatabaseSeeded(), {"FAKE_RUNNING": "db", "FAKE_PSQL": "t"})
    assert value is True
    assert "exec -T db psql -X -v ON_ERROR_STOP=1 -U postgres -d postgres -tAc SELECT EXISTS" in log
    assert fake_docker(facts.DatabaseSeeded(), {"FAKE_RUNNING": "db", "FAKE_PSQL": "f"})[0] is False
    # psql failing (no table yet) -> False
    assert fake_docker(facts.DatabaseInitialized(), {"FAKE_RUNNING": "db", "FAKE_PSQL": ""})[0] is False
    # db not running -> False without even calling compose
    value, log = fake_docker(facts.OwnerAccount(), {"FAKE_RUNNING": "web", "FAKE_PSQL": "t"}, username="admin")
    assert value == "missing" and "exec" not in log


def test_postgres_ready_with_fake_docker(fake_docker):
    assert fake_docker(facts.PostgresReady(), {"FAKE_RUNNING": "db", "FAKE_PG_READY": "1"})[0] is True
    assert fake_docker(facts.PostgresReady(), {"FAKE_RUNNING": "db"})[0] is False
    assert fake_docker(facts.PostgresReady(), {"FAKE_RUNNING": ""})[0] is False


# `ls db/migrate db/post_migrate` in the web container, with printf %b escapes
LS = (
    "db/migrate:\\n20260114093012_create_accounts.rb\\n20260527084519_add_index.rb\\n"
    "\\ndb/post_migrate:\\n20260611150940_remove_otp.rb\\n"
)


@pytest.fixture
def pending_docker(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    log = tmp_path / "docker.log"
    cache = tmp_path / "cache"

    def run(**env):
        log.write_text("")
        full = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "FAKE_LOG": str(log),
            "FAKE_RUNNING": "web db",
            "FAKE_IMAGE": "1" * 64,
            "FAKE_LS": LS,
            **env,
        }
        fact = facts.PendingMigrations()
        output = _sh(fact.command(cache_dir=str(cache)), env=full)
        return (fact.process(output) if output else fact.default()), output, log.read_text()

    run.cache = cache
    return run


def test_pending_migrations_without_rails(pending_docker):
    every = "20260114093012\\n20260527084519\\n20260611150940\\n"
    value, output, log = pending_docker(FAKE_APPLIED=every)
    assert value is False and output == ["none"]
    assert "rails" not in log and " run " not in log  # no Rails boot, no one-off container
    # a post-deployment migration not applied yet is pending, as Rails counts it in web (no SKIP)
    value, _, log = pending_docker(FAKE_APPLIED="20260114093012\\n20260527084519\\n")
    assert value is True
    # the image's listing was read once, then kept
    assert "exec id-web" not in log
    listing = (pending_docker.cache / ("1" * 64)).read_text().splitlines()
    assert sum(1 for line in listing if line[:1].isdigit()) == 3


def test_pending_migrations_reads_each_new_image_once(pending_docker):
    every = "20260114093012\\n20260527084519\\n20260611150940\\n"
    _, _, first = pending_docker(FAKE_APPLIED=every)
    _, _, again = pending_docker(FAKE_APPLIED=every)
    _, _, other = pending_docker(FAKE_APPLIED=every, FAKE_IMAGE="2" * 64)
    assert "exec id-web" in first and "exec id-web" not in again and "exec id-web" in other


def test_pending_migrations_unknown_and_absent(pending_docker):
    assert pending_docker(FAKE_APPLIED="")[0] is None  # psql failed: cannot tell
    # an image whose listing has no migration files (not a Mastodon image?): cannot tell
    assert pending_docker(FAKE_APPLIED="1\\n", FAKE_LS="nothing\\n", FAKE_IMAGE="3" * 64)[0] is None
    assert pending_docker(FAKE_RUNNING="db")[1] == []  # web does not run: nothing to say
    assert pending_docker(FAKE_RUNNING="web", FAKE_APPLIED="x")[0] is None  # no db


def test_pending_migrations_output_is_a_token(pending_docker):
    _, output, _ = pending_docker(FAKE_APPLIED="20260114093012\\nSECRET_KEY_BASE=abc\\n")
    assert output == ["pending"]


def test_no_docker_means_defaults(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # no docker, no coreutils needed
    for name in (
        "DockerEngine",
        "ComposeCommand",
        "ComposeServices",
        "ComposeUpPlan",
        "PostgresReady",
        "PendingMigrations",
    ):
        fact = FACT_CLASSES[name]()
        output = _sh(str(fact.command()), env=env)
        assert (fact.process(output) if output else fact.default()) == fact.default() or output == ["no"]


def test_existing_instance_real_shell(tmp_path):
    """Only LOCAL_DOMAIN comes back from .env.production; only the deploy's own server blocks are listed."""
    project, confs = tmp_path / "mastodon", tmp_path / "user_conf.d"
    (project / "postgres14").mkdir(parents=True)
    confs.mkdir()
    secret = "f00dfeed" * 16
    (project / ".env.production").write_text(f"LOCAL_DOMAIN=social1.example.org\nSECRET_KEY_BASE={secret}\n")
    (confs / "social0.example.org.conf").write_text("# Managed by pyinfra-mastodon: local changes ...\nserver {}\n")
    (confs / "own.conf").write_text("# mine\n# Managed by pyinfra-mastodon (quoted, not a header)\n")
    fact = facts.ExistingInstance()
    command = fact.command(project_dir=str(project), nginx_conf_dir=str(confs))
    output = _sh(command)
    assert secret not in "\n".join(output)
    assert fact.process(output) == {
        "local_domain": "social1.example.org",
        "nginx_confs": [str(confs / "social0.example.org.conf")],
        "upstream_pgdata": False,
        # made by this test, so owned by its uid: not the mastodon uid (991) unless the test runs as it
        "foreign_owned": [] if os.getuid() == 991 else [str(project / "postgres14")],
        "database": False,
    }
    (project / "postgres14" / "PG_VERSION").write_text("14\n")
    assert fact.process(_sh(command))["upstream_pgdata"] is True
    empty = tmp_path / "nothing"
    assert _sh(fact.command(project_dir=str(empty), nginx_conf_dir=str(empty))) == []


def test_free_space_real_shell(tmp_path):
    fact = facts.FreeSpace()
    missing = tmp_path / "not" / "made" / "yet"
    result = fact.process(_sh(fact.command(paths=[str(tmp_path), str(missing)]), env={"PATH": "/usr/bin:/bin"}))
    # the same filesystem (its free space may move a little between the two df runs)
    assert result[str(tmp_path)] > 0 and abs(result[str(missing)] - result[str(tmp_path)]) < 512


def _fake_session(tmp_path: Path, command: str, seconds: float) -> subprocess.Popen:
    """A process named sshd (like the SSH connection of a run) that runs ``command``, then lives on."""
    sshd = tmp_path / "sshd"
    if not sshd.exists():
        sshd.write_bytes(Path("/bin/sh").read_bytes())
        sshd.chmod(0o755)
    return subprocess.Popen(
        [str(sshd), "-c", f"{command}; sleep {seconds}"],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_host_lock_is_held_while_the_session_lives(tmp_path):
    fact = facts.HostLock()
    lock = str(tmp_path / "lock")
    first = _fake_session(tmp_path, fact.command(run_id="run-a", timeout=5, path=lock), seconds=3)
    assert first.stdout.readline().strip() == "acquired"
    # the same run asks again: it has the lock already
    again = subprocess.run(
        ["/bin/sh", "-c", fact.command(run_id="run-a", timeout=1, path=lock)], capture_output=True, text=True
    )
    assert again.stdout.strip() == "acquired"
    second = _fake_session(tmp_path, fact.command(run_id="run-b", timeout=1, path=lock), seconds=0)
    out, _ = second.communicate(timeout=30)
    assert fact.process(out.splitlines())["state"] == "busy"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fact.process(out.splitlines())["since"])
    first.wait(timeout=30)
    # the first session is gone: its holder lets go within a second or two, and a waiting run gets it
    third = _fake_session(tmp_path, fact.command(run_id="run-c", timeout=10, path=lock), seconds=0)
    out, _ = third.communicate(timeout=30)
    assert out.strip() == "acquired"


def test_host_lock_outside_ssh_is_unsupported(tmp_path):
    fact = facts.HostLock()
    out = _sh(fact.command(run_id="r", timeout=1, path=str(tmp_path / "lock")))
    assert fact.process(out) == {"state": "unsupported", "reason": "no-ssh-session"}
