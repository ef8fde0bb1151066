"""Helpers of the end-to-end deploy tests: drive the real pyinfra CLI, look at the sandbox.

Secrets never enter this process: everything about a secret is computed ON the sandbox
(sha256 of a line, counts), and pyinfra's output is scanned for secrets ON the sandbox too
(lines that contain one are withheld from assertion messages).

The sandbox contract (docs/architecture.md): root ssh on 127.0.0.1:$SANDBOX_PORT (2222), key
$SANDBOX_CACHE/ssh/id_ed25519 (default .sandbox/ in the repo); `scripts/sandbox up` always
recreates a clean server.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = "deploys/mastodon.py"
BASE_DIR = "/opt/mastodon"
ENV_PRODUCTION = f"{BASE_DIR}/.env.production"
ADMIN_PASSWORD_FILE = "/root/mastodon-admin-password"
BACKUP_DIR = "/var/backups/mastodon"
COMPOSE_PROJECT = "mastodon"
SECRET_KEYS = (
    "SECRET_KEY_BASE",
    "OTP_SECRET",
    "VAPID_PRIVATE_KEY",
    "VAPID_PUBLIC_KEY",
    "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
    "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
    "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
)
# values that must never appear in any output (VAPID_PUBLIC_KEY is public)
PRIVATE_KEYS = tuple(k for k in SECRET_KEYS if k != "VAPID_PUBLIC_KEY")
PYINFRA_TIMEOUT = 1800


def _bin(name: str) -> str:
    """A console script of the current interpreter's venv (e.g. .venv/bin/pyinfra)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --------------------------------------------------------------------------------------- pyinfra


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    json: dict | None
    argv: list[str] = field(default_factory=list)
    leaked_lines: int | None = None  # lines of stdout+stderr holding a secret (None = not scanned)
    withheld: set[int] = field(default_factory=set)  # 1-based line numbers of stdout+stderr

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.json is not None and not (self.json.get("results") or {}).get("failed_hosts")

    def changed_ops(self) -> list[str]:
        """Names of operations that ran with changes (pyinfra's "Success" column)."""
        results = (self.json or {}).get("results") or {}
        return [op["name"] for op in results.get("operations", []) if op.get("success")]

    def changed_labels(self) -> list[str]:
        """changed_ops() without the deploy's "Mastodon | " prefix."""
        return [op_label(name) for name in self.changed_ops()]

    def planned_changes(self) -> list[str]:
        """Operations a --dry run would change, unconditionally or under `_if`."""
        plan = (self.json or {}).get("plan") or []
        return [
            f"{op['name']} ({'conditional' if not op.get('hosts_with_change') else 'change'})"
            for op in plan
            if op.get("hosts_with_change") or op.get("hosts_with_conditional_change")
        ]

    def totals(self) -> dict:
        return ((self.json or {}).get("results") or {}).get("totals") or {}

    def safe_output(self, lines: int = 40) -> str:
        """Tail of stderr+stdout for an assertion message, without the lines that hold a secret."""
        combined = (self.stdout + ("\n" if self.stdout and not self.stdout.endswith("\n") else "") + self.stderr)
        out = [
            "<line withheld: it contains a secret>" if i in self.withheld else line
            for i, line in enumerate(combined.splitlines(), start=1)
        ]
        # the JSON document is one huge line: show it only when short
        out = [ln if len(ln) < 2000 else ln[:300] + " ...<truncated>" for ln in out]
        return f"$ {' '.join(self.argv)}\nrc={self.rc}\n" + "\n".join(out[-lines:])

    def describe(self) -> str:
        return self.safe_output()


def op_label(name: str) -> str:
    """An operation's own name: pyinfra prefixes the deploy's, "Mastodon | Write ..."."""
    return name.rpartition(" | ")[2]


def _parse_json(stdout: str) -> dict | None:
    text = stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    # tolerate noise around the document (e.g. a print() in deploy code)
    start = text.find('{"plan"')
    if start < 0:
        return None
    try:
        doc, _ = json.JSONDecoder().raw_decode(text[start:])
        return doc
    except ValueError:
        return None


def run_pyinfra(repo, inventory, *args: str, data: dict | None = None, timeout: int = PYINFRA_TIMEOUT) -> Result:
    """`pyinfra -y --json [ARGS] [--data k=v ...] INVENTORY deploys/mastodon.py`, cwd=repo (no -y with --dry).

    `data` values are JSON-encoded: pyinfra's parse_cli_arg turns "true"/"false" into bools, digits
    into ints and then tries json.loads, so a JSON string literal always stays a string.
    """
    # `-y` turns change detection off (pyinfra_cli: State(check_for_changes=not yes)), which would leave
    # every op's hosts_with_change empty in a --dry plan: a dry run goes without it (JSON mode never prompts).
    yes = [] if "--dry" in args else ["-y"]
    argv = [_bin("pyinfra"), *yes, "--json", *args]
    for key, value in (data or {}).items():
        argv += ["--data", f"{key}={json.dumps(value)}"]
    argv += [str(inventory), DEPLOY]
    env = dict(os.environ, PYINFRA_PROGRESS="off", NO_COLOR="1", TERM="dumb")
    try:
        proc = subprocess.run(argv, cwd=str(repo), env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return Result(rc=-1, stdout=out, stderr=err + f"\n<timeout after {timeout} s>", json=None, argv=argv)
    return Result(proc.returncode, proc.stdout, proc.stderr, _parse_json(proc.stdout), argv=argv)


# --------------------------------------------------------------------------------------- sandbox


@dataclass
class Sandbox:
    """The sandbox server (scripts/sandbox): the session fixture `sandbox` is one of these.

    Connection from the same variables the script and inventories/sandbox.py read: SANDBOX_PORT
    (2222), SANDBOX_CACHE (.sandbox/, which holds the key), SANDBOX_SUITE (bookworm), SANDBOX_NAME.
    """

    repo: Path
    inventory: str
    key: Path
    port: int
    cache: Path

    @classmethod
    def from_env(cls, repo: Path = REPO) -> "Sandbox":
        repo = Path(repo).resolve()
        cache = Path(os.environ.get("SANDBOX_CACHE") or repo / ".sandbox")
        if not cache.is_absolute():
            cache = (repo / cache).resolve()
        return cls(
            repo=repo,
            inventory=str(repo / "inventories" / "sandbox.py"),
            key=cache / "ssh" / "id_ed25519",
            port=int(os.environ.get("SANDBOX_PORT") or 2222),
            cache=cache,
        )

    # -- the script
    def run(self, *args: str, check: bool = False, timeout: float = 900) -> subprocess.CompletedProcess:
        """``scripts/sandbox ARGS...`` (captured, text)."""
        return subprocess.run(
            [str(self.repo / "scripts" / "sandbox"), *args], cwd=self.repo, capture_output=True,
            text=True, check=check, timeout=timeout,
        )

    @staticmethod
    def suite_args() -> list[str]:
        return ["--suite", os.environ["SANDBOX_SUITE"]] if os.environ.get("SANDBOX_SUITE") else []

    def up(self, *args: str) -> subprocess.CompletedProcess:
        """(Re-)start the server, reset to a clean state; fails the test with the script's output."""
        proc = self.run("up", *args, timeout=3600)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            pytest.fail(f"scripts/sandbox up {' '.join(args)} failed (exit {proc.returncode}):\n{tail(proc.stderr, 60)}")
        return proc

    def reset(self) -> None:
        """A clean server: `scripts/sandbox up` always recreates it (same suite)."""
        self.up(*self.suite_args())

    def ensure_clean(self) -> None:
        """Reset the server when an earlier test module left a deploy on it (ports 80/443 taken...)."""
        if not self.is_pristine():
            self.reset()

    # -- ssh
    def ssh_argv(self) -> list[str]:
        return [
            "ssh", "-i", str(self.key), "-p", str(self.port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            "root@127.0.0.1",
        ]

    def ssh(self, command: str, input: str | None = None, check: bool = False, timeout: int = 300):
        proc = subprocess.run(
            [*self.ssh_argv(), command], input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"on the sandbox: {command!r} exited {proc.returncode}: {proc.stderr.strip()[-1000:]}"
            )
        return proc

    def out(self, command: str, **kw) -> str:
        return self.ssh(command, check=True, **kw).stdout

    def is_pristine(self) -> bool:
        proc = self.ssh(
            f"test ! -e {BASE_DIR} && test ! -e {ADMIN_PASSWORD_FILE} && "
            f"test -z \"$(docker ps -aq --filter label=com.docker.compose.project={COMPOSE_PROJECT})\""
        )
        return proc.returncode == 0

    def uses_standins(self) -> bool:
        label = self.ssh(
            "docker image inspect -f '{{index .Config.Labels \"pyinfra-mastodon-sandbox\"}}' "
            "ghcr.io/mastodon/mastodon:v4.6.5 2>/dev/null"
        ).stdout.strip()
        return label == "1"

    # -- pyinfra
    def deploy(self, *args: str, data: dict | None = None) -> Result:
        result = run_pyinfra(self.repo, self.inventory, *args, data=data)
        scan_output_for_secrets(self, result)
        return result

    # -- ssh config for testinfra
    def write_ssh_config(self, directory: Path | None = None) -> Path:
        directory = Path(directory or tempfile.mkdtemp(prefix="pyinfra-mastodon-ssh-"))
        path = directory / "sandbox.ssh_config"
        path.write_text(
            "Host sandbox\n"
            "    HostName 127.0.0.1\n"
            f"    Port {self.port}\n"
            "    User root\n"
            f"    IdentityFile {self.key}\n"
            "    StrictHostKeyChecking no\n"
            "    UserKnownHostsFile /dev/null\n"
            "    LogLevel ERROR\n"
        )
        path.chmod(0o600)
        return path


# ------------------------------------------------------------------------------- secret hygiene

_SCAN = r"""
set -u
p=$(mktemp); o=$(mktemp); trap 'rm -f "$p" "$o"' EXIT
cat > "$o"
if [ -f {env} ]; then grep -E '^({keys})=.' {env} | cut -d= -f2- >> "$p" || true; fi
if [ -s {pw} ]; then grep -oE '[^[:space:]:]{{12,}}' {pw} >> "$p" || true; fi
if [ ! -s "$p" ]; then echo NONE; exit 0; fi
grep -nF -f "$p" "$o" | cut -d: -f1 | tr '\n' ' '
echo
"""


def scan_output_for_secrets(box: Sandbox, result: Result) -> None:
    """Line numbers of pyinfra's stdout+stderr that contain a secret value, computed ON the sandbox."""
    combined = result.stdout + ("\n" if result.stdout and not result.stdout.endswith("\n") else "") + result.stderr
    script = _SCAN.format(env=ENV_PRODUCTION, keys="|".join(PRIVATE_KEYS), pw=ADMIN_PASSWORD_FILE)
    proc = box.ssh(f"bash -c {shlex.quote(script)}", input=combined)
    if proc.returncode != 0:
        return  # leave leaked_lines None: "not scanned"
    words = proc.stdout.split()
    if words == ["NONE"]:
        result.leaked_lines = 0
        return
    result.withheld = {int(w) for w in words if w.isdigit()}
    result.leaked_lines = len(result.withheld)


def secret_hashes(box: Sandbox) -> dict[str, str]:
    """sha256 of each secret LINE of .env.production (and of the admin password file), ON the host.

    A missing key maps to "missing" (never to the hash of an empty string).
    """
    script = (
        f"for k in {' '.join(SECRET_KEYS)}; do "
        f"l=$(grep \"^$k=\" {ENV_PRODUCTION}) && printf '%s %s\\n' \"$k\" \"$(printf '%s' \"$l\" | sha256sum | cut -c1-64)\" "
        f"|| printf '%s missing\\n' \"$k\"; done; "
        f"if [ -s {ADMIN_PASSWORD_FILE} ]; then printf 'ADMIN_PASSWORD_FILE %s\\n' \"$(sha256sum < {ADMIN_PASSWORD_FILE} | cut -c1-64)\"; "
        f"else echo 'ADMIN_PASSWORD_FILE missing'; fi"
    )
    hashes = {}
    for line in box.out(script).splitlines():
        key, _, value = line.partition(" ")
        hashes[key] = value.strip()
    return hashes


# ------------------------------------------------------------------------------------ snapshots


@dataclass
class Snapshot:
    files: dict[str, str]  # path -> sha256 of the content
    meta: dict[str, str]  # path -> "mode owner:group" (files and dirs)
    containers: dict[str, dict[str, str]]  # name -> {"id", "started_at", "restarts"}

    def started(self, service: str) -> dict[str, str] | None:
        return self.containers.get(f"{COMPOSE_PROJECT}-{service}-1")


def _diff(a: dict, b: dict) -> list[str]:
    out = [f"+{k}" for k in sorted(b.keys() - a.keys())]
    out += [f"-{k}" for k in sorted(a.keys() - b.keys())]
    out += [f"~{k}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
    return out


def diff_files(a: Snapshot, b: Snapshot) -> list[str]:
    """Paths whose content (~), presence (+/-) or mode/owner (mode ~) differ."""
    return _diff(a.files, b.files) + [f"mode {d}" for d in _diff(a.meta, b.meta)]


def diff_containers(a: Snapshot, b: Snapshot) -> list[str]:
    out = []
    for name in sorted(a.containers.keys() | b.containers.keys()):
        x, y = a.containers.get(name), b.containers.get(name)
        if x != y:
            out.append(f"{name}: {x} -> {y}")
    return out


_PRUNED = ("postgres14", "redis", "public/system")  # written by the services themselves


def host_snapshot(box: Sandbox) -> Snapshot:
    prune = " -o ".join(f"-path {BASE_DIR}/{p}" for p in _PRUNED)
    files_cmd = (
        f"{{ [ -d {BASE_DIR} ] && find {BASE_DIR} \\( {prune} \\) -prune -o -type f -print0; "
        f"[ -d /data/nginx/user_conf.d ] && find /data/nginx/user_conf.d -type f -print0; "
        f"[ -f {ADMIN_PASSWORD_FILE} ] && printf '%s\\0' {ADMIN_PASSWORD_FILE}; }} | xargs -0r sha256sum"
    )
    meta_cmd = (
        f"{{ [ -d {BASE_DIR} ] && find {BASE_DIR} \\( {prune} \\) -printf '%m\\t%u:%g\\t%p\\n' -prune "
        f"-o -printf '%m\\t%u:%g\\t%p\\n'; "
        f"[ -d /data/nginx/user_conf.d ] && find /data/nginx/user_conf.d -printf '%m\\t%u:%g\\t%p\\n'; "
        f"[ -e {ADMIN_PASSWORD_FILE} ] && find {ADMIN_PASSWORD_FILE} -printf '%m\\t%u:%g\\t%p\\n'; }} ; true"
    )
    containers_cmd = (
        f"docker ps -aq --filter label=com.docker.compose.project={COMPOSE_PROJECT} | "
        "xargs -r docker inspect --format '{{.Name}}\t{{.Id}}\t{{.State.StartedAt}}\t{{.RestartCount}}'"
    )
    files = {}
    for line in box.out(files_cmd + "; true").splitlines():
        digest, _, path = line.partition("  ")
        files[path] = digest
    meta = {}
    for line in box.out(meta_cmd).splitlines():
        mode, owner, path = line.split("\t", 2)
        meta[path] = f"{mode} {owner}"
    containers = {}
    for line in box.out(containers_cmd).splitlines():
        name, cid, started, restarts = line.split("\t")
        containers[name.lstrip("/")] = {"id": cid[:12], "started_at": started, "restarts": restarts}
    return Snapshot(files=files, meta=meta, containers=containers)


# ------------------------------------------------------------------------------ the host suite


def run_host_suite(box: Sandbox, domain: str, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run tests/host (testinfra, paramiko backend) against the sandbox, in a subprocess."""
    ssh_config = box.write_ssh_config()
    argv = [
        sys.executable, "-m", "pytest", "tests/host",
        "-p", "no:cacheprovider", "-q", "-rfE", "--color=no",
        "--hosts=sandbox", f"--ssh-config={ssh_config}", f"--ssh-identity-file={box.key}",
        f"--mastodon-domain={domain}",
        *extra,
    ]
    try:
        return subprocess.run(argv, cwd=str(box.repo), capture_output=True, text=True, timeout=timeout)
    finally:
        ssh_config.unlink(missing_ok=True)
        ssh_config.parent.rmdir()


# ----------------------------------------------------------------------------- stand-in record


def psql(box: Sandbox, sql: str) -> str:
    return box.out(
        f"docker exec {COMPOSE_PROJECT}-db-1 psql -U postgres -d postgres -v ON_ERROR_STOP=1 -tAc {shlex.quote(sql)}"
    ).strip()


@dataclass
class Event:
    id: int
    event: str
    version: str  # normalised: no leading "v"
    detail: str
    at: float  # epoch seconds


def standin_events(box: Sandbox) -> list[Event]:
    out = psql(box, "select id, event, version, coalesce(detail, ''), extract(epoch from at) from standin_events order by id")
    events = []
    for line in out.splitlines():
        eid, event, version, detail, at = line.split("|", 4)
        events.append(Event(int(eid), event, (version or "").removeprefix("v"), detail, float(at or 0)))
    return events


def instance_document(box: Sandbox, domain: str) -> dict:
    """/api/v1/instance through nginx, from the host (CA of the local certbot CA if present)."""
    ca = "/data/nginx/local_ca/caCert.pem"
    out = box.out(
        f"if [ -f {ca} ]; then c='--cacert {ca}'; else c=''; fi; "
        f"curl -sS --max-time 20 --resolve {domain}:443:127.0.0.1 $c https://{domain}/api/v1/instance"
    )
    return json.loads(out)


def wait_healthy(box: Sandbox, services, timeout: int = 120) -> dict[str, str]:
    """Health status of mastodon-<service>-1 once none is `starting` (bounded)."""
    names = " ".join(f"{COMPOSE_PROJECT}-{s}-1" for s in services)
    script = (
        f"for i in $(seq {timeout // 2}); do "
        f"s=$(docker inspect --format '{{{{.Name}}}} {{{{if .State.Health}}}}{{{{.State.Health.Status}}}}{{{{else}}}}none{{{{end}}}}' {names}); "
        "echo \"$s\" | grep -q ' starting$' || break; sleep 2; done; echo \"$s\""
    )
    status = {}
    for line in box.out(script, timeout=timeout + 60).splitlines():
        name, _, health = line.partition(" ")
        status[name.lstrip("/")] = health
    return status
