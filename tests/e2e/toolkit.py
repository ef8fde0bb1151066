"""The end-to-end toolkit: drive the real pyinfra CLI against the sandbox and look at the sandbox.

- ``Sandbox``: the server of ``scripts/sandbox`` (ssh as root, reset, the host suite's ssh config);
  ``SandboxCluster``: the four servers of ``scripts/sandbox up --cluster``;
- ``run_pyinfra`` and ``Result``: the one way to run pyinfra (any flags, deploy or task or ad-hoc
  command), in a private temporary working directory (a ``pyinfra-debug.log`` it writes is collected
  as one more output channel), optionally SIGKILLed when a line of its output matches;
- ``SecretBag``: the one secret scanner. It holds the host's secret values, read after every run, in
  this process only to look for them in every output channel; its repr, ``Result.describe()`` and
  every message built from them name keys, never values (lines holding a secret are withheld);
- ``snapshot``: the one "state of the host" (files, modes, owners, digests, compose containers), with
  one list of what it leaves out (``SNAPSHOT_PRUNE``);
- ``Watcher``: the inotify watcher of ``watcher/watch.sh`` and ``watcher/watch.pl``, run on the host;
- digests of secret lines computed ON the host, the stand-in's records, temporary inventories.

Paths and names come from ``contract`` (tests/contract.py). The sandbox contract
(docs/architecture.md): root ssh on 127.0.0.1:$SANDBOX_PORT (2222), key $SANDBOX_CACHE/ssh/id_ed25519
(default .sandbox/ in the repo); ``scripts/sandbox up`` always recreates a clean server.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from contract import (
    ADMIN_PASSWORD_FILE,
    BASE_DIR,
    CA_CERT,
    COMPOSE_FILE,
    COMPOSE_PROJECT,
    DOMAIN,
    ENV_DB,
    ENV_PRODUCTION,
    LETSENCRYPT_DIR,
    NGINX_CONF_DIR,
    NGINX_DATA_DIR,
    OTHER_SECRET_KEYS,
    PGDATA,
    PRIVATE_KEYS,
    SECRET_FILES,
    SECRET_KEYS,
    container_name,
)

REPO = Path(__file__).resolve().parents[2]
DEPLOY_FILE = REPO / "deploys" / "mastodon.py"
WATCHER_DIR = Path(__file__).resolve().parent / "watcher"
PYINFRA_TIMEOUT = 1800
WITHHELD_LINE = "<line withheld: it contains a secret>"


def _bin(name: str) -> str:
    """A console script of the current interpreter's venv (e.g. .venv/bin/pyinfra)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def op_label(name: str) -> str:
    """An operation's own name: pyinfra prefixes the deploy's, "Mastodon | Write ..."."""
    return name.rpartition(" | ")[2]


# --------------------------------------------------------------------------------------- sandbox


@dataclass
class Sandbox:
    """The sandbox server (scripts/sandbox): the session fixture `sandbox` is one of these.

    Connection from the same variables the script and inventories/sandbox.py read: SANDBOX_PORT
    (2222), SANDBOX_CACHE (.sandbox/, which holds the key), SANDBOX_SUITE (bookworm), SANDBOX_NAME.
    ``secrets``: the session's secret bag, used by runs that are given no bag of their own.
    """

    repo: Path
    inventory: Path
    key: Path
    port: int
    cache: Path
    secrets: "SecretBag" = field(default_factory=lambda: SecretBag(), repr=False)

    @classmethod
    def from_env(cls, repo: Path = REPO) -> "Sandbox":
        repo = Path(repo).resolve()
        cache = Path(os.environ.get("SANDBOX_CACHE") or repo / ".sandbox")
        if not cache.is_absolute():
            cache = (repo / cache).resolve()
        return cls(
            repo=repo,
            inventory=repo / "inventories" / "sandbox.py",
            key=cache / "ssh" / "id_ed25519",
            port=int(os.environ.get("SANDBOX_PORT") or 2222),
            cache=cache,
        )

    # -- the script
    def run(self, *args: str, check: bool = False, timeout: float = 900) -> subprocess.CompletedProcess:
        """``scripts/sandbox ARGS...`` (captured, text)."""
        return subprocess.run(
            [str(self.repo / "scripts" / "sandbox"), *args],
            cwd=self.repo,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    @staticmethod
    def suite_args() -> list[str]:
        return ["--suite", os.environ["SANDBOX_SUITE"]] if os.environ.get("SANDBOX_SUITE") else []

    def up(self, *args: str) -> subprocess.CompletedProcess:
        """(Re-)start the server, reset to a clean state; fails the test with the script's output."""
        proc = self.run("up", *args, timeout=3600)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            pytest.fail(
                f"scripts/sandbox up {' '.join(args)} failed (exit {proc.returncode}):\n{tail(proc.stderr, 60)}"
            )
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
            "ssh",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "root@127.0.0.1",
        ]

    def ssh(self, command: str, input: str | None = None, check: bool = False, timeout: int = 300):
        proc = subprocess.run([*self.ssh_argv(), command], input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"on the sandbox: {command!r} exited {proc.returncode}: {proc.stderr.strip()[-1000:]}")
        return proc

    def out(self, command: str, **kw) -> str:
        return self.ssh(command, check=True, **kw).stdout

    def is_pristine(self) -> bool:
        proc = self.ssh(
            f"test ! -e {BASE_DIR} && test ! -e {ADMIN_PASSWORD_FILE} && "
            f'test -z "$(docker ps -aq --filter label=com.docker.compose.project={COMPOSE_PROJECT})"'
        )
        return proc.returncode == 0

    def clean_with_standins(self, why: str) -> "Sandbox":
        """This sandbox, clean (``ensure_clean``), for a module that needs the stand-in images: the
        module is skipped, saying ``why``, when the server has the real ones."""
        if not self.uses_standins():
            pytest.skip(why)
        self.ensure_clean()
        return self

    def uses_standins(self) -> bool:
        label = self.ssh(
            "docker image inspect -f '{{index .Config.Labels \"pyinfra-mastodon-sandbox\"}}' "
            "ghcr.io/mastodon/mastodon:v4.6.5 2>/dev/null"
        ).stdout.strip()
        return label == "1"

    # -- pyinfra
    def deploy(self, *args: str, **kw) -> "Result":
        """``pyinfra -y --json ARGS INVENTORY deploys/mastodon.py`` (see ``run_pyinfra`` for the options)."""
        return run_pyinfra(self, "--json", *args, **kw)

    def task(self, name: str, *args: str, **kw) -> "Result":
        """An operator task on this host: ``pyinfra -y ARGS --limit sandbox INVENTORY pyinfra_mastodon.tasks.NAME``."""
        return run_pyinfra(self, *args, "--limit", "sandbox", target=[f"pyinfra_mastodon.tasks.{name}"], **kw)

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


@dataclass
class SandboxCluster:
    """The four servers of ``scripts/sandbox up --cluster`` (db, app1, app2, edge), as
    inventories/sandbox_cluster.py names them: ``hosts`` is its host data (as ``pyinfra INVENTORY
    debug-inventory`` prints it), ``boxes`` a ``Sandbox`` per server, on that server's SSH port.
    The conftest fixture ``cluster`` brings it up once per module and down after."""

    sandbox: Sandbox  # runs scripts/sandbox
    hosts: dict[str, dict]
    boxes: dict[str, Sandbox]

    INVENTORY = REPO / "inventories" / "sandbox_cluster.py"

    @classmethod
    def up(cls, sandbox: Sandbox) -> "SandboxCluster":
        sandbox.up("--cluster", *sandbox.suite_args())
        proc = subprocess.run(
            [sys.executable, "-m", "pyinfra", str(cls.INVENTORY), "debug-inventory", "--json"],
            cwd=sandbox.repo,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        hosts = {entry["name"]: entry["data"] for entry in json.loads(proc.stdout)}
        boxes = {
            name: Sandbox(sandbox.repo, cls.INVENTORY, sandbox.key, int(data["ssh_port"]), sandbox.cache)
            for name, data in hosts.items()
        }
        return cls(sandbox, hosts, boxes)

    @staticmethod
    def prefix() -> str:
        """The servers are containers PREFIX-SERVER, on the Docker network PREFIX (scripts/sandbox)."""
        return os.environ.get("SANDBOX_NAME") or "pyinfra-mastodon-sandbox-cluster"

    def container(self, server: str) -> str:
        return f"{self.prefix()}-{server}"

    def address(self, server: str) -> str:
        """The server's private address (``mastodon_private_address``)."""
        return self.hosts[server]["mastodon_private_address"]

    def down(self) -> subprocess.CompletedProcess:
        return self.sandbox.run("down", "--cluster")


# --------------------------------------------------------------------------------------- pyinfra


@dataclass
class Result:
    """One pyinfra run. Its repr shows neither the argv (may hold --data passwords) nor the output."""

    rc: int
    stdout: str
    stderr: str
    json: dict | None
    argv: list[str] = field(default_factory=list)
    label: str = ""
    bag: "SecretBag | None" = None  # the scanner this run's output is checked with
    debug_log: str | None = None  # ./pyinfra-debug.log written by this run, if any
    seconds: float = 0.0
    killed: bool = False
    kill_line: str | None = None  # the output line that triggered the kill
    kill_output: str | None = None  # stderr as it was when the kill was sent
    kill_evidence: object = None  # what ``at_kill`` returned (called right after the kill)

    def __repr__(self) -> str:
        return f"Result({self.label!r}, rc={self.rc}, {self.seconds:.1f} s{', killed' if self.killed else ''})"

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.json is not None and not (self.json.get("results") or {}).get("failed_hosts")

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr

    def channels(self) -> dict[str, str]:
        out = {"stdout": self.stdout, "stderr": self.stderr}
        if self.debug_log is not None:
            out["pyinfra-debug.log"] = self.debug_log
        return out

    def leaks(self) -> list[str]:
        """["KEY in CHANNEL", ...]: the secrets its bag knows (now) found in this run's output."""
        assert self.bag is not None, f"{self!r} was run without a secret bag: its output cannot be scanned"
        return self.bag.leaks(self)

    def changed_ops(self) -> list[str]:
        """Names of operations that ran with changes (pyinfra's "Success" column)."""
        results = (self.json or {}).get("results") or {}
        return [op["name"] for op in results.get("operations", []) if op.get("success")]

    def changed_labels(self) -> list[str]:
        """changed_ops() without the deploy's "Mastodon | " prefix."""
        return [op_label(name) for name in self.changed_ops()]

    def started_ops(self) -> list[str]:
        """Operation names of the "--> Starting operation: ..." lines, in order (also without JSON)."""
        return [m.strip() for m in re.findall(r"Starting operation: (.*)", self.stderr)]

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

    def describe(self, lines: int = 30) -> str:
        """For an assertion message: the command, rc, the tail of stderr and a short stdout, every line
        that holds a secret withheld (all of them when the run has no bag to tell)."""
        redact = (
            self.bag.redact
            if self.bag is not None
            else (lambda text: "\n".join(WITHHELD_LINE for _ in text.splitlines()))
        )
        err = redact(self.stderr).splitlines()[-lines:]
        out = redact(self.stdout)
        out = out if len(out) < 1500 else out[:300] + " ...<truncated>"
        argv = redact(" ".join(shlex.quote(a) for a in self.argv[1:]))
        return (
            f"[{self.label}] $ pyinfra {argv}\nrc={self.rc} ({self.seconds:.1f} s)\n"
            + "\n".join(err)
            + (f"\nstdout: {out}" if out.strip() else "")
        )


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


def run_pyinfra(
    box: Sandbox,
    *args: str,
    label: str = "",
    data: dict | None = None,
    raw_data: list[str] | tuple[str, ...] = (),
    inventory: str | Path | None = None,
    target: list[str] | tuple[str, ...] | None = None,
    yes: bool = True,
    bag: "SecretBag | None" = None,
    timeout: float = PYINFRA_TIMEOUT,
    kill_when: str | None = None,
    kill_delay: float = 0.0,
    on_match=None,
    at_kill=None,
    venv: Path | None = None,
    cwd: Path | None = None,
) -> Result:
    """`pyinfra [-y] ARGS [--data k=json(v)...] [--data RAW...] INVENTORY TARGET`, TARGET by default the deploy.

    Runs in a fresh temporary cwd (absolute inventory and deploy paths; the repo's group_data is not
    read). ``-y`` is left out with ``--dry``: it turns change detection off (pyinfra_cli:
    State(check_for_changes=not yes)), which would leave every op's hosts_with_change empty in a --dry
    plan (JSON mode never prompts). ``data`` values are JSON-encoded: pyinfra's parse_cli_arg turns
    "true"/"false" into bools, digits into ints and then tries json.loads, so a JSON string literal
    always stays a string; ``raw_data`` entries are passed verbatim ("key=text"). ``target``: what to
    run instead of the deploy file (e.g. ``["exec", "--", "true"]``). The JSON document is parsed
    when ``--json`` is among ARGS.

    ``bag`` (default: the sandbox's own): the secret scanner; after the run it reads the host's secrets,
    and the result is checked and described with it. ``kill_when``: a regex; when a line of stderr
    matches, the run is SIGKILLed (after ``kill_delay`` seconds), process group and all. ``on_match``:
    called (no argument) when ``kill_when`` matches, before the kill delay starts. ``at_kill``: called
    (no argument) right after that kill, its result kept as ``kill_evidence`` (e.g. what was on the
    host at that moment); ``kill_output`` is stderr up to the kill.

    ``venv``: run that virtualenv's pyinfra instead of this interpreter's, with PYTHONPATH removed
    so that it imports the package installed there, never the checkout's. ``cwd``: run in this
    folder (left as it is) instead of a fresh temporary one.
    """
    bag = box.secrets if bag is None else bag
    argv = [str(Path(venv) / "bin" / "pyinfra") if venv else _bin("pyinfra")]
    if yes and "--dry" not in args:
        argv.append("-y")
    argv += list(args)
    for key, value in (data or {}).items():
        argv += ["--data", f"{key}={json.dumps(value)}"]
    for item in raw_data:
        argv += ["--data", item]
    argv += [str(Path(inventory or box.inventory).resolve()), *(target or [str(DEPLOY_FILE)])]
    env = dict(
        os.environ,
        PYINFRA_PROGRESS="off",
        NO_COLOR="1",
        TERM="dumb",
        SANDBOX_CACHE=str(box.cache),
        SANDBOX_PORT=str(box.port),
    )
    if venv:
        env.pop("PYTHONPATH", None)
    own_cwd = cwd is None
    cwd = tempfile.mkdtemp(prefix="pyinfra-mastodon-run-") if own_cwd else str(cwd)
    out_chunks: list[str] = []
    err_lines: list[str] = []
    killed = threading.Event()
    kill_line: list[str] = []
    kill_state: dict = {}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    def _kill():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _kill_on_match():
        kill_state["output"] = "".join(err_lines)
        _kill()
        if at_kill is not None:
            kill_state["evidence"] = at_kill()

    def _read_out():
        out_chunks.append(proc.stdout.read())

    reader = threading.Thread(target=_read_out, daemon=True)
    reader.start()
    timer = threading.Timer(timeout, _kill)
    timer.start()
    pattern = re.compile(kill_when) if kill_when else None
    kill_timer = None
    try:
        for line in proc.stderr:
            err_lines.append(line)
            if pattern and not killed.is_set() and pattern.search(line):
                killed.set()
                kill_line.append(line.strip())
                if on_match is not None:
                    on_match()
                if kill_delay:
                    kill_timer = threading.Timer(kill_delay, _kill_on_match)
                    kill_timer.start()
                else:
                    _kill_on_match()
        proc.wait()
        if kill_timer is not None:
            kill_timer.join(timeout=120)
        reader.join(timeout=30)
    finally:
        timer.cancel()
    seconds = time.monotonic() - t0
    log = Path(cwd) / "pyinfra-debug.log"
    debug_log = log.read_text(errors="replace") if log.exists() else None
    if own_cwd:
        shutil.rmtree(cwd, ignore_errors=True)
    stdout = "".join(out_chunks)
    stderr = "".join(err_lines)
    if seconds >= timeout:
        stderr += f"\n<killed after the {timeout} s timeout>"
    result = Result(
        rc=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        json=_parse_json(stdout) if "--json" in args else None,
        argv=argv,
        label=label or " ".join(args) or "(default output)",
        bag=bag,
        debug_log=debug_log,
        seconds=seconds,
        killed=killed.is_set(),
        kill_line=(kill_line or [None])[0],
        kill_output=kill_state.get("output"),
        kill_evidence=kill_state.get("evidence"),
    )
    bag.read_host(box)  # values this run generated join the bag (old ones stay)
    return result


# ------------------------------------------------------------------------------- the secret scanner


def _variants(value: str) -> set[str]:
    """Forms a leaked value could take: raw, JSON-escaped, base64url<->base64, shell-quoted."""
    out = {value, json.dumps(value)[1:-1], value.translate(str.maketrans("-_", "+/")), shlex.quote(value)}
    return {v for v in out if v}


# the secret lines of the env files (VAPID_PUBLIC_KEY is public by design) and the owner password
_READ_SECRETS = (
    "for f in {env} {envdb}; do [ -f $f ] && grep -E '^({keys})=' $f; done; "
    "[ -s {pw} ] && sed 's/^/ADMIN_PASSWORD=/' {pw}; true"
)


class SecretBag:
    """Secret values by name, to look for in output. Never printed: repr and messages carry names only."""

    WINDOW = 16  # a leak of any 16 consecutive characters of a secret counts

    def __init__(self):
        self._values: dict[str, set[str]] = {}
        self._windows: dict[str, set[str]] = {}

    def __repr__(self) -> str:
        return f"SecretBag(keys={sorted(self._values)})"

    def add(self, name: str, value: str) -> None:
        value = (value or "").strip().strip("'\"")
        if len(value) < 8:
            return
        if value in self._values.setdefault(name, set()):
            return
        self._values[name].add(value)
        windows = self._windows.setdefault(name, set())
        for form in _variants(value):
            w = min(self.WINDOW, len(form))
            windows.update(form[i : i + w] for i in range(len(form) - w + 1))

    def read_host(self, box: Sandbox) -> "SecretBag":
        """Add the secret values now on the host (.env.production, .env.db, the owner password)."""
        # box.out: an ssh failure raises (a bag silently left empty would make every "no leak" check
        # vacuous); files that do not exist yet (a fresh host, a --dry run) are not an error
        keys = "|".join((*PRIVATE_KEYS, *OTHER_SECRET_KEYS))
        text = box.out(_READ_SECRETS.format(env=ENV_PRODUCTION, envdb=ENV_DB, keys=keys, pw=ADMIN_PASSWORD_FILE))
        for line in text.splitlines():
            key, _, value = line.partition("=")
            self.add(key, value)
        return self

    def names(self) -> list[str]:
        return sorted(self._values)

    def found(self, text: str) -> set[str]:
        """Names of the secrets (any 16-char window of any form) present in text."""
        if not text:
            return set()
        return {name for name, windows in self._windows.items() if any(w in text for w in windows)}

    def redact(self, text: str) -> str:
        """text with every line that holds (part of) a secret replaced by a marker."""
        return "\n".join(WITHHELD_LINE if self.found(line) else line for line in text.splitlines())

    def leaks(self, result: Result) -> list[str]:
        """["KEY in CHANNEL", ...] for one run."""
        return [
            f"{key} in {channel}" for channel, text in result.channels().items() for key in sorted(self.found(text))
        ]


# ------------------------------------------------------------------ secret digests, ON the host


def secret_hashes(box: Sandbox) -> dict[str, str]:
    """sha256 of each secret LINE of .env.production (and of the admin password file), ON the host.

    A missing key maps to "missing" (never to the hash of an empty string).
    """
    script = (
        f"for k in {' '.join(SECRET_KEYS)}; do "
        f'l=$(grep "^$k=" {ENV_PRODUCTION}) && printf \'%s %s\\n\' "$k" "$(printf \'%s\' "$l" | sha256sum | cut -c1-64)" '
        f"|| printf '%s missing\\n' \"$k\"; done; "
        f"if [ -s {ADMIN_PASSWORD_FILE} ]; then printf 'ADMIN_PASSWORD_FILE %s\\n' \"$(sha256sum < {ADMIN_PASSWORD_FILE} | cut -c1-64)\"; "
        f"else echo 'ADMIN_PASSWORD_FILE missing'; fi"
    )
    hashes = {}
    for line in box.out(script).splitlines():
        key, _, value = line.partition(" ")
        hashes[key] = value.strip()
    return hashes


def env_line_hashes(box: Sandbox, path: str = ENV_PRODUCTION) -> list[tuple[str, str]]:
    """[(KEY or '', sha256 of the line)] of an env file, in order, computed ON the host."""
    script = (
        f'[ -f {path} ] || exit 0; while IFS= read -r l || [ -n "$l" ]; do '
        "printf '%s %s\\n' \"$(printf '%s' \"$l\" | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p')\" "
        '"$(printf \'%s\' "$l" | sha256sum | cut -c1-64)"; '
        f"done < {path}"
    )
    out = []
    for line in box.out(script).splitlines():
        key, _, digest = line.rpartition(" ")
        out.append((key.strip(), digest))
    return out


def file_digest(box: Sandbox, path: str) -> str:
    return box.out(f"sha256sum {path} | cut -c1-64").strip()


# ------------------------------------------------------------------------------ the host snapshot

# What the snapshot covers: these trees (every entry's type, mode and owner, every file's sha256) and
# files (mode, owner, sha256), plus every compose container (id, StartedAt, restart count, status).
SNAPSHOT_TREES = (BASE_DIR, NGINX_DATA_DIR, LETSENCRYPT_DIR)
SNAPSHOT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", ADMIN_PASSWORD_FILE)
# What it leaves out: the data the services write themselves. Each entry (a `find -path` pattern) is
# listed with its type, mode and owner, but not hashed nor descended into.
# The read replica's data is PostgreSQL's too: it changes whenever the primary writes WAL.
SNAPSHOT_PRUNE = (
    PGDATA,
    f"{BASE_DIR}/postgres*-replica/pgdata",
    f"{BASE_DIR}/redis/*",
    f"{BASE_DIR}/public/system/*",
)


def _snapshot_script() -> str:
    prune = " -o ".join(f"-path {shlex.quote(p)}" for p in SNAPSHOT_PRUNE)
    return (
        "set -u; {\n"
        f"for d in {' '.join(SNAPSHOT_TREES)}; do\n"
        '  [ -e "$d" ] || { printf \'absent\\t%s\\n\' "$d"; continue; }\n'
        f"  find \"$d\" \\( {prune} \\) -prune -printf 'meta\\t%p\\t%y %m %u:%g\\n' -o -printf 'meta\\t%p\\t%y %m %u:%g\\n'\n"
        f'  find "$d" \\( {prune} \\) -prune -o -type f -print0 | xargs -0r sha256sum | '
        "sed 's/^\\([0-9a-f]*\\)  \\(.*\\)$/sha\\t\\2\\t\\1/'\n"
        "done\n"
        f"for f in {' '.join(SNAPSHOT_FILES)}; do\n"
        '  [ -e "$f" ] || { printf \'absent\\t%s\\n\' "$f"; continue; }\n'
        '  printf \'meta\\t%s\\t%s\\n\' "$f" "$(stat -c \'f %a %U:%G\' "$f")"\n'
        '  printf \'sha\\t%s\\t%s\\n\' "$f" "$(sha256sum < "$f" | cut -c1-64)"\n'
        "done\n"
        f"docker ps -aq --filter label=com.docker.compose.project={COMPOSE_PROJECT} | xargs -r docker inspect "
        "--format 'container\t{{.Name}}\t{{.Id}}\t{{.State.StartedAt}}\t{{.RestartCount}}\t{{.State.Status}}'\n"
        "} 2>&1; true"
    )


@dataclass
class Snapshot:
    """The state of the host (digests, modes, owners, container ids: no content)."""

    files: dict[str, str]  # path -> sha256 of the content
    meta: dict[str, str]  # path -> "type mode owner:group" (files, dirs, links), or "absent"
    containers: dict[str, dict[str, str]]  # name -> {"id", "started_at", "restarts", "status"}
    notes: frozenset[str] = frozenset()  # anything else the probe printed (errors, e.g. of find)

    def started(self, service: str) -> dict[str, str] | None:
        c = self.containers.get(container_name(service))
        return None if c is None else {k: c[k] for k in ("id", "started_at", "restarts")}

    def diff_files(self, other: "Snapshot") -> list[str]:
        """Paths whose content (~), presence (+/-) or type/mode/owner (mode ~) differ."""
        return _diff(self.files, other.files) + [f"mode {d}" for d in _diff(self.meta, other.meta)]

    def diff_containers(self, other: "Snapshot") -> list[str]:
        out = []
        for name in sorted(self.containers.keys() | other.containers.keys()):
            x, y = self.containers.get(name), other.containers.get(name)
            if x != y:
                out.append(f"{name}: {x} -> {y}")
        return out

    def diff(self, other: "Snapshot") -> list[str]:
        """Everything that differs: files, modes, containers, and the probe's other output."""
        notes = [f"note -{n}" for n in sorted(self.notes - other.notes)]
        notes += [f"note +{n}" for n in sorted(other.notes - self.notes)]
        return self.diff_files(other) + self.diff_containers(other) + notes


def _diff(a: dict, b: dict) -> list[str]:
    out = [f"+{k}" for k in sorted(b.keys() - a.keys())]
    out += [f"-{k}" for k in sorted(a.keys() - b.keys())]
    out += [f"~{k}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
    return out


def snapshot(box: Sandbox) -> Snapshot:
    """The one snapshot of the host (see SNAPSHOT_TREES, SNAPSHOT_FILES and SNAPSHOT_PRUNE)."""
    files: dict[str, str] = {}
    meta: dict[str, str] = {}
    containers: dict[str, dict[str, str]] = {}
    notes: set[str] = set()
    for line in box.out(_snapshot_script()).splitlines():
        kind, _, rest = line.partition("\t")
        parts = rest.split("\t")
        if kind == "meta" and len(parts) == 2:
            meta[parts[0]] = parts[1]
        elif kind == "sha" and len(parts) == 2:
            files[parts[0]] = parts[1]
        elif kind == "absent" and len(parts) == 1:
            meta[parts[0]] = "absent"
        elif kind == "container" and len(parts) == 5:
            name, cid, started, restarts, status = parts
            containers[name.lstrip("/")] = {
                "id": cid[:12],
                "started_at": started,
                "restarts": restarts,
                "status": status,
            }
        else:
            notes.add(line)
    return Snapshot(files=files, meta=meta, containers=containers, notes=frozenset(notes))


# ------------------------------------------------------------------------------ the host suite


def run_host_suite(box: Sandbox, domain: str, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run tests/host (testinfra, paramiko backend) against the sandbox, in a subprocess."""
    ssh_config = box.write_ssh_config()
    if not any(a.startswith("--mastodon-ca-file") for a in extra):
        extra = (f"--mastodon-ca-file={trust_file(box)}", *extra)
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "tests/host",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
        "--color=no",
        "--hosts=sandbox",
        f"--ssh-config={ssh_config}",
        f"--ssh-identity-file={box.key}",
        f"--mastodon-domain={domain}",
        *extra,
    ]
    try:
        return subprocess.run(argv, cwd=str(box.repo), capture_output=True, text=True, timeout=timeout)
    finally:
        ssh_config.unlink(missing_ok=True)
        ssh_config.parent.rmdir()


# ------------------------------------------------------------------- the instance and its records


def psql(box: Sandbox, sql: str) -> str:
    return box.out(
        f"docker exec {container_name('db')} psql -U postgres -d postgres -v ON_ERROR_STOP=1 -tAc {shlex.quote(sql)}"
    ).strip()


@dataclass
class Event:
    id: int
    event: str
    version: str  # normalised: no leading "v"
    detail: str
    at: float  # epoch seconds


def standin_events(box: Sandbox) -> list[Event]:
    out = psql(
        box, "select id, event, version, coalesce(detail, ''), extract(epoch from at) from standin_events order by id"
    )
    events = []
    for line in out.splitlines():
        eid, event, version, detail, at = line.split("|", 4)
        events.append(Event(int(eid), event, (version or "").removeprefix("v"), detail, float(at or 0)))
    return events


SANDBOX_TRUST = "/root/sandbox-trust.pem"  # on the sandbox: the CAs its certificates come from


def trust_file(box: Sandbox) -> str:
    """A CA file on the sandbox that verifies the deployed certificate: the local CA of nginx-certbot
    when the deploy made one (mastodon_certbot_local_ca), else the current issuing roots of the
    sandbox's pebble instances (production, staging, short: `pebble-root`)."""
    box.out(
        f"if [ -f {CA_CERT} ]; then cp {CA_CERT} {SANDBOX_TRUST}; "
        f"else for i in production staging short; do pebble-root $i; done > {SANDBOX_TRUST}; fi"
    )
    return SANDBOX_TRUST


def instance_document(box: Sandbox, domain: str = DOMAIN) -> dict:
    """/api/v1/instance through nginx, from the host, verified with ``trust_file``."""
    out = box.out(
        f"curl -sS --max-time 20 --resolve {domain}:443:127.0.0.1 --cacert {trust_file(box)} "
        f"https://{domain}/api/v1/instance"
    )
    return json.loads(out)


def instance_version(box: Sandbox, domain: str = DOMAIN) -> str | None:
    """`version` of /api/v1/instance through nginx (None when it does not answer)."""
    proc = box.ssh(
        f"curl -sS --max-time 20 --resolve {domain}:443:127.0.0.1 --cacert {trust_file(box)} "
        f"https://{domain}/api/v1/instance"
    )
    try:
        return json.loads(proc.stdout).get("version")
    except ValueError:
        return None


def container(box: Sandbox, service: str) -> str:
    """ "ID StartedAt Image" of mastodon-SERVICE-1 ('' if absent)."""
    return box.ssh(
        f"docker inspect --format '{{{{.Id}}}} {{{{.State.StartedAt}}}} {{{{.Config.Image}}}}' {container_name(service)} 2>/dev/null"
    ).stdout.strip()


def wait_healthy(box: Sandbox, services, timeout: int = 120) -> dict[str, str]:
    """Health status of mastodon-<service>-1 once none is `starting` (bounded)."""
    names = " ".join(container_name(s) for s in services)
    script = (
        f"for i in $(seq {timeout // 2}); do "
        f"s=$(docker inspect --format '{{{{.Name}}}} {{{{if .State.Health}}}}{{{{.State.Health.Status}}}}{{{{else}}}}none{{{{end}}}}' {names}); "
        'echo "$s" | grep -q \' starting$\' || break; sleep 2; done; echo "$s"'
    )
    status = {}
    for line in box.out(script, timeout=timeout + 60).splitlines():
        name, _, health = line.partition(" ")
        status[name.lstrip("/")] = health
    return status


# ---------------------------------------------------------------------------------------- watcher

# Watched trees. Left out (inotifywait's --exclude is one regex, matched against each path): the database
# and redis data, caches, the watcher's own /run/secwatch-* dir, Docker's and containerd's state and the
# container root filesystems mounted below them (/var/lib/docker, /var/lib/containerd, /run/docker,
# /run/containerd), the journal (/run/log, constant churn) and systemd's mount-propagation dirs.
WATCH_ROOTS = (
    "/opt",
    "/root",
    "/tmp",
    "/var/tmp",
    "/var/backups",
    "/data",
    "/run",
    "/dev/shm",
    "/home",
    "/etc",
    "/var/lib",
)
WATCH_EXCLUDE = (
    rf"^{BASE_DIR}/(postgres14|redis)/|^/root/\.cache"
    r"|^/run/(secwatch-|containerd|docker|log(/|$)|systemd/(journal|propagate|inaccessible|incoming|mount-rootfs))"
    r"|^/var/lib/(docker|containerd)(/|$)"
)
# key names whose presence in a group/other-readable file is a violation, whatever the file's name
SECRET_CONTENT_KEYS = (
    "SECRET_KEY_BASE=",
    "OTP_SECRET=",
    "VAPID_PRIVATE_KEY=",
    "ACTIVE_RECORD_ENCRYPTION_",
    "DB_PASS=",
    "POSTGRES_PASSWORD=",
    "SMTP_PASSWORD=",
)

# After the run, ON the host: the digests of the real secret files (whole content) and of their secret lines
# (a value of 8+ characters; each line of 8+ characters of another file, e.g. the owner password), against every digest the watcher recorded
# of a readable file. Prints "RECORD matches FILE:KEY" (names only, never a value).
_DIGEST_MATCH = r"""
set -u
d={dir}; s=$d/secret-digests
: > $s
for f in {files}; do
  [ -s "$f" ] || continue
  printf '%s\t%s\n' "$(sha256sum < "$f" | cut -c1-64)" "$f"
  case "$f" in */.env.*) rx='^({keys})=.{{8,}}';; *) rx='^[^#].{{7,}}$';; esac  # env files: the secret lines only
  grep -E "$rx" "$f" | while IFS= read -r l; do
    case "$l" in *=*) k=${{l%%=*}};; *) k=line;; esac
    printf '%s\t%s:%s\n' "$(printf '%s' "$l" | sha256sum | cut -c1-64)" "$f" "$k"
  done
done >> $s
[ -s $s ] || {{ echo NO-SECRET-FILES; exit 0; }}
[ -f $d/digests.log ] || exit 0
awk -F '\t' 'NR == FNR {{ k = $1; v = (k in sec) ? sec[k] " " $2 : $2; sec[k] = v; next }}
  {{ n = split($3, ls, ","); ls[n + 1] = $2;
    for (i = 1; i <= n + 1; i++) if (ls[i] in sec) print $1 " matches " sec[ls[i]] }}' $s $d/digests.log | sort -u
"""


class Watcher:
    """inotify watcher on the sandbox (watcher/watch.sh piped into watcher/watch.pl), run as a transient
    systemd unit (stopped by its unit name).

    Rules (see watch.pl): a secret-bearing NAME (env files, owner password, dumps, temp copies, anything in
    /tmp, /var/tmp, /root, the local CA dir except its certificates) readable by group/other; ANY file
    readable by group/other whose content holds a secret key name; and (``digest_violations``) any file
    readable by group/other whose content, or one of its lines, is byte-identical to a real secret file or
    one of its secret lines.
    """

    def __init__(self, box: Sandbox, name: str):
        self.box = box
        self.unit = f"secwatch-{name}"
        self.dir = f"/run/{self.unit}"

    def start(self) -> None:
        files = {
            "watch.sh": (WATCHER_DIR / "watch.sh").read_text(),
            "watch.pl": (WATCHER_DIR / "watch.pl").read_text(),
            "roots": "".join(f"{r}\n" for r in WATCH_ROOTS),
            "exclude": WATCH_EXCLUDE + "\n",
            "keys": "".join(f"{k}\n" for k in SECRET_CONTENT_KEYS),
        }
        copy = " && ".join(
            f"echo {base64.b64encode(text.encode()).decode()} | base64 -d > {self.dir}/{name}"
            for name, text in files.items()
        )
        self.box.out(
            f"systemctl stop {self.unit} 2>/dev/null; rm -rf {self.dir}; mkdir -m 700 {self.dir} && {copy} && "
            f"perl -c {self.dir}/watch.pl 2>/dev/null && "
            f"systemd-run --quiet --collect --unit={self.unit} sh {self.dir}/watch.sh {self.dir} && "
            f"for i in $(seq 300); do grep -q 'Watches established' {self.dir}/inotify.err 2>/dev/null && exit 0; sleep 0.1; done; "
            f"echo 'watcher did not start' >&2; cat {self.dir}/inotify.err >&2; exit 1",
            timeout=90,
        )

    def violations(self) -> list[str]:
        return self.box.out(f"sleep 0.5; cat {self.dir}/violations.log 2>/dev/null; true").splitlines()

    def events(self) -> list[str]:
        return self.box.out(f"cat {self.dir}/events.log 2>/dev/null; true").splitlines()

    def digests(self) -> list[str]:
        """Records of readable files with their digests (no content)."""
        return self.box.out(f"cat {self.dir}/digests.log 2>/dev/null; true").splitlines()

    def digest_violations(self, extra_files: tuple[str, ...] = ()) -> list[str]:
        """Readable files whose content (or a line of it) equals a real secret file (or one of its secret lines)."""
        keys = "|".join((*PRIVATE_KEYS, *OTHER_SECRET_KEYS))
        files = " ".join((*SECRET_FILES, *extra_files))
        out = self.box.out("sleep 0.5; " + _DIGEST_MATCH.format(dir=self.dir, files=files, keys=keys)).splitlines()
        assert out != ["NO-SECRET-FILES"], (
            "no secret file on the host to compare digests with: the check would be vacuous"
        )
        return out

    def public_copies(self, public: str = f"{COMPOSE_FILE} {NGINX_CONF_DIR}/*.conf") -> set[str]:
        """Records (as in violations.log) of readable files whose content at that moment was empty or
        byte-identical to one of the public files the deploy writes: e.g. pyinfra's /tmp upload of
        docker-compose.yml as a sudo user. Such a state shows no secret, whatever the file's name."""
        empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        out = self.box.out(
            f'p=$(for f in {public}; do [ -f "$f" ] && sha256sum < "$f" | cut -c1-64; done); '
            f"[ -f {self.dir}/digests.log ] || exit 0; "
            f"awk -F '\\t' -v p=\"$p {empty}\" 'BEGIN {{ n = split(p, a, /[ \\n]+/); for (i = 1; i <= n; i++) ok[a[i]] = 1 }} "
            f"($2 in ok) {{ print $1 }}' {self.dir}/digests.log"
        )
        return set(out.splitlines())

    def mark(self) -> int:
        """Number of violation lines so far (to look only at what comes after)."""
        return len(self.violations())

    def alive(self) -> bool:
        return self.box.ssh(f"systemctl is-active --quiet {self.unit}").returncode == 0

    def stop(self) -> None:
        self.box.ssh(f"systemctl stop {self.unit} 2>/dev/null; true")


# ------------------------------------------------------------------------------ temp inventories


def connection_data(box: Sandbox) -> dict:
    """How pyinfra reaches the sandbox (the same as inventories/sandbox.py)."""
    return {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": int(box.port),
        "ssh_user": "root",
        "ssh_key": str(box.key),
        "ssh_known_hosts_file": "/dev/null",
        "ssh_strict_host_key_checking": "off",
    }


SANDBOX_SETTINGS = {
    "mastodon_prefix": "social",
    "mastodon_server_id": "1",
    "mastodon_zone": "sandbox.test",
    "mastodon_admin_email": "admin@sandbox.test",
    "mastodon_certbot_local_ca": True,
}


def write_inventory(directory: Path, hosts: dict[str, dict], name: str = "inventory.py") -> Path:
    """A pyinfra inventory file (outside the repo) with one group ``hosts``: {host name: data}."""
    path = Path(directory) / name
    items = ",\n".join(f"    ({host!r}, {data!r})" for host, data in hosts.items())
    path.write_text(f"hosts = [\n{items},\n]\n")
    return path
