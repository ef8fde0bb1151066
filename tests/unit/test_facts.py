"""
Custom facts: fixture tests in pyinfra's own style (tests/unit/facts/<FactName>/*.json), plus real
/bin/sh runs of the commands that need no Docker (a fake ``docker`` on PATH stands in for the rest).

Fixture keys: ``arg`` (positional args) / ``kwargs``, ``command`` (exact) or ``command_contains``
(substrings), ``output`` (stdout lines) and ``fact`` (expected ``process``/``default`` result).
Fixtures named ``recorded-*`` hold output captured from a real Docker engine and Compose on the
sandbox (their ``_comment`` says how); the others are written from the documented formats.
"""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from pathlib import Path

import pytest

from pyinfra_mastodon.envfile import line_digest

from pyinfra_mastodon import facts

FIXTURES = Path(__file__).parent / "facts"
FACT_CLASSES = {
    name: getattr(facts, name)
    for name in (
        "DockerEngine",
        "ComposeCommand",
        "UidGidOwners",
        "ExistingInstance",
        "EnvFileDigests",
        "ComposeServices",
        "ComposeUpPlan",
        "ImageIds",
        "PostgresReady",
        "DatabaseInitialized",
        "DatabaseSeeded",
        "OwnerAccountExists",
        "PendingMigrations",
    )
}


def _fixtures() -> list:
    return [
        pytest.param(path, id=f"{path.parent.name}/{path.stem}")
        for path in sorted(FIXTURES.glob("*/*.json"))
    ]


def _run_fact(fact, output: list[str]):
    # What pyinfra does (api/facts.py): no stdout -> default(), else process(lines).
    return fact.process(output) if output else fact.default()


def test_every_fact_has_fixtures():
    have = {path.parent.name for path in FIXTURES.glob("*/*.json")}
    assert set(FACT_CLASSES) <= have


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
    args = {"EnvFileDigests": ["/x"], "ImageIds": [["a:b"]]}.get(name, [])
    command = str(fact.command(*args))
    assert command.endswith("; true") or command.endswith("echo no; fi"), command


def test_fact_names_are_the_contract():
    # pyinfra names facts after their module: the CLI spells them pyinfra_mastodon.facts.X.
    assert facts.EnvFileDigests.name == "pyinfra_mastodon.facts.EnvFileDigests"


def test_compose_command_quotes_the_project_dir():
    assert facts.compose_command("/opt/my dir") == (
        "docker compose --project-directory '/opt/my dir' -f '/opt/my dir/docker-compose.yml' -p mastodon"
    )


def test_owner_sql_literal_is_quoted():
    command = facts.OwnerAccountExists().command(username="o'brien")
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
        ["/bin/sh", "-c", command], capture_output=True, env=env, timeout=60, check=False,
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


def _expected_lines(lines: list[str]) -> list[list]:
    out = []
    for line in lines:
        key, sep, _ = line.partition("=")
        valid = sep and key and (key[0].isalpha() or key[0] == "_") and key.replace("_", "a").isalnum() and key.isascii()
        out.append([key if valid else None, hashlib.sha256(line.encode()).hexdigest()])
    return out


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_env_file_digests_real_shell(tmp_path, trailing_newline):
    path = tmp_path / "env file"
    content = "\n".join(TRICKY_LINES) + ("\n" if trailing_newline else "")
    path.write_bytes(content.encode())
    path.chmod(0o600)
    fact = facts.EnvFileDigests()
    result = fact.process(_sh(fact.command(str(path))))
    assert result["lines"] == _expected_lines(TRICKY_LINES)
    assert result["trailing_newline"] is trailing_newline
    assert result["mode"] == "600"
    assert result["readable"] is True


def test_env_file_digests_are_keyed_by_the_first_line_of_stdin(tmp_path):
    """The deploy sends a random key: -vvv output then cannot be used to guess a weak value offline."""
    path = tmp_path / ".env.production"
    path.write_text("SMTP_PASSWORD=hunter2\nLOCAL_DOMAIN=a.example.org\n")
    fact = facts.EnvFileDigests()
    keyed = fact.process(_sh(fact.command(str(path)), stdin="k3y\n"))
    assert keyed["lines"] == [
        ["SMTP_PASSWORD", line_digest("SMTP_PASSWORD=hunter2", "k3y")],
        ["LOCAL_DOMAIN", line_digest("LOCAL_DOMAIN=a.example.org", "k3y")],
    ]
    plain = hashlib.sha256(b"SMTP_PASSWORD=hunter2").hexdigest()
    assert keyed["lines"][0][1] != plain


def test_env_file_digests_output_has_no_values(tmp_path):
    path = tmp_path / ".env.production"
    secret = "f00dfeed" * 16
    path.write_text(f"SECRET_KEY_BASE={secret}\nnot a key {secret}\n")
    output = "\n".join(_sh(facts.EnvFileDigests().command(str(path))))
    assert secret not in output and "not a key" not in output


def test_env_file_digests_edge_files(tmp_path):
    fact = facts.EnvFileDigests()
    assert _sh(fact.command(str(tmp_path / "missing"))) == []
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert fact.process(_sh(fact.command(str(empty))))["lines"] == []
    blank = tmp_path / "blank"
    blank.write_bytes(b"\n\n")
    result = fact.process(_sh(fact.command(str(blank))))
    assert result["lines"] == [[None, hashlib.sha256(b"").hexdigest()]] * 2
    assert result["trailing_newline"] is True


def test_env_file_digests_fast_enough(tmp_path):
    path = tmp_path / "big"
    path.write_text("".join(f"KEY_{i}=value {i} with spaces\n" for i in range(120)))
    fact = facts.EnvFileDigests()
    result = fact.process(_sh(fact.command(str(path))))
    assert len(result["lines"]) == 120 and result["lines"][7][0] == "KEY_7"


def test_uid_gid_owners_real_shell():
    fact = facts.UidGidOwners()
    assert fact.process(_sh(fact.command(uid=0, gid=0))) == {"user": "root", "group": "root"}
    output = _sh(fact.command(uid=54321, gid=54321))
    assert (fact.process(output) if output else fact.default()) == {"user": None, "group": None}


# A fake docker on PATH, to run the compose-based commands through a real /bin/sh.
FAKE_DOCKER = r"""#!/bin/sh
# Records its argv, answers from env: FAKE_RUNNING (services with a running container),
# FAKE_PSQL (psql answer), FAKE_RAILS_RC / FAKE_RAILS_OUT (rails answer).
printf '%s\n' "$*" >> "$FAKE_LOG"
case "$*" in
  ps\ *)
    for s in $FAKE_RUNNING; do
      case "$*" in *"com.docker.compose.service=$s "*) echo "id-$s" ;; esac
    done ;;
  *" exec -T db psql "*) [ -n "$FAKE_PSQL" ] && echo "$FAKE_PSQL"; [ -n "$FAKE_PSQL" ] ;;
  *" exec -T db pg_isready "*) [ -n "$FAKE_PG_READY" ] ;;
  *" exec -T web "*) echo "$FAKE_RAILS_OUT"; exit "${FAKE_RAILS_RC:-0}" ;;
esac
"""


@pytest.fixture
def fake_docker(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
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
    value, log = fake_docker(facts.OwnerAccountExists(), {"FAKE_RUNNING": "web", "FAKE_PSQL": "t"}, username="admin")
    assert value is False and "exec" not in log


def test_postgres_ready_with_fake_docker(fake_docker):
    assert fake_docker(facts.PostgresReady(), {"FAKE_RUNNING": "db", "FAKE_PG_READY": "1"})[0] is True
    assert fake_docker(facts.PostgresReady(), {"FAKE_RUNNING": "db"})[0] is False
    assert fake_docker(facts.PostgresReady(), {"FAKE_RUNNING": ""})[0] is False


def test_pending_migrations_with_fake_docker(fake_docker):
    fact = facts.PendingMigrations()
    assert fake_docker(fact, {"FAKE_RUNNING": "web", "FAKE_RAILS_RC": "0"})[0] is False
    pending = "You have 2 pending migrations:\n20260611150940 Foo\nSECRET=leak"
    assert fake_docker(fact, {"FAKE_RUNNING": "web", "FAKE_RAILS_RC": "1", "FAKE_RAILS_OUT": pending})[0] is True
    assert fake_docker(fact, {"FAKE_RUNNING": "web", "FAKE_RAILS_RC": "1", "FAKE_RAILS_OUT": "boom"})[0] is None
    assert fake_docker(fact, {"FAKE_RUNNING": "db"})[0] is None


def test_pending_migrations_output_is_a_token(fake_docker, tmp_path):
    bin_dir = tmp_path / "bin"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_LOG": str(tmp_path / "docker.log"),
        "FAKE_RUNNING": "web",
        "FAKE_RAILS_RC": "1",
        "FAKE_RAILS_OUT": "You have 1 pending migration: SECRET_KEY_BASE=abc",
    }
    fake_docker(facts.PendingMigrations(), {})  # creates the fake docker
    assert _sh(facts.PendingMigrations().command(), env=env) == ["pending"]


def test_no_docker_means_defaults(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # no docker, no coreutils needed
    for name in ("DockerEngine", "ComposeCommand", "ComposeServices", "ComposeUpPlan",
                 "PostgresReady", "PendingMigrations"):
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
    }
    (project / "postgres14" / "PG_VERSION").write_text("14\n")
    assert fact.process(_sh(command))["upstream_pgdata"] is True
    empty = tmp_path / "nothing"
    assert _sh(fact.command(project_dir=str(empty), nginx_conf_dir=str(empty))) == []

