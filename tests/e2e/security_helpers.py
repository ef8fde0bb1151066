"""Helpers of the security / bad-input / fault end-to-end tests (test_security_*, test_bad_input, test_faults).

Builds on deploy_helpers (Sandbox connection, Result, secret_hashes, ...) and adds:

- ``run``: the real pyinfra CLI with any flags, in a private temporary working directory (so that a
  ``pyinfra-debug.log`` it writes is collected as one more output channel and never collides with
  another engineer's run in the repo), optionally killed (SIGKILL, whole process group) when a line
  of its output matches;
- ``SecretBag``: the secret values of the host, held in this process only to scan output for them.
  Its repr and every message built from it name keys, never values;
- ``Watcher``: an inotify watcher on the host (inotifywait piped into perl, which lstat()s the file
  without forking) that logs every state in which a secret-bearing file is readable by group/other;
- ``state_checksum``: files + modes + owners of /opt/mastodon, /data/nginx, /etc/letsencrypt,
  /etc/passwd, /etc/group, and the compose containers (id, StartedAt), for "nothing changed".
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
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from deploy_helpers import (
    ADMIN_PASSWORD_FILE,
    ENV_PRODUCTION,
    REPO,
    SECRET_KEYS,
    Result,
    Sandbox,
    _bin,
    _parse_json,
)

DEPLOY_FILE = REPO / "deploys" / "mastodon.py"
ENV_DB = "/opt/mastodon/.env.db"
DOMAIN = "social1.sandbox.test"


# ----------------------------------------------------------------------------------- pyinfra CLI


@dataclass
class Run(Result):
    label: str = ""
    debug_log: str | None = None  # ./pyinfra-debug.log written by this run, if any
    seconds: float = 0.0
    killed: bool = False
    kill_line: str | None = None  # the output line that triggered the kill

    def __repr__(self) -> str:  # never the argv (may hold --data passwords) nor the output
        return f"Run({self.label!r}, rc={self.rc}, {self.seconds:.1f} s{', killed' if self.killed else ''})"

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr

    def started_ops(self) -> list[str]:
        """Operation names of the "--> Starting operation: ..." lines (in order)."""
        return [m.strip() for m in re.findall(r"Starting operation: (.*)", self.stderr)]

    def channels(self) -> dict[str, str]:
        out = {"stdout": self.stdout, "stderr": self.stderr}
        if self.debug_log is not None:
            out["pyinfra-debug.log"] = self.debug_log
        return out


def run(
    box: Sandbox,
    *args: str,
    label: str = "",
    data: dict | None = None,
    raw_data: list[str] | tuple[str, ...] = (),
    inventory: str | Path | None = None,
    yes: bool = True,
    timeout: float = 1200,
    kill_when: str | None = None,
    kill_delay: float = 0.0,
    target: list[str] | tuple[str, ...] | None = None,
    on_match=None,
) -> Run:
    """`pyinfra [-y] ARGS [--data k=json(v)...] [--data RAW...] INVENTORY deploys/mastodon.py`.

    Runs in a fresh temporary cwd (absolute inventory and deploy paths); ``-y`` is left out with
    ``--dry`` (it would turn change detection off). ``raw_data`` entries are passed verbatim
    ("key=text", parsed by pyinfra's parse_cli_arg). ``kill_when``: a regex; when a line of stderr
    matches, the run is SIGKILLed (after ``kill_delay`` seconds), process group and all.
    ``on_match``: called (no argument) when ``kill_when`` matches, before the kill delay starts.
    ``target``: what to run instead of the deploy file (e.g. ``["exec", "--", "true"]``).
    """
    inventory = Path(inventory) if inventory else (REPO / box.inventory if not os.path.isabs(box.inventory) else Path(box.inventory))
    argv = [_bin("pyinfra")]
    if yes and "--dry" not in args:
        argv.append("-y")
    argv += list(args)
    for key, value in (data or {}).items():
        argv += ["--data", f"{key}={json.dumps(value)}"]
    for item in raw_data:
        argv += ["--data", item]
    argv += [str(inventory), *(target or [str(DEPLOY_FILE)])]
    env = dict(os.environ, PYINFRA_PROGRESS="off", NO_COLOR="1", TERM="dumb")
    cwd = tempfile.mkdtemp(prefix="pyinfra-mastodon-sec-")
    out_chunks: list[str] = []
    err_lines: list[str] = []
    killed = threading.Event()
    kill_line: list[str] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )

    def _kill():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _read_out():
        out_chunks.append(proc.stdout.read())

    reader = threading.Thread(target=_read_out, daemon=True)
    reader.start()
    timer = threading.Timer(timeout, _kill)
    timer.start()
    pattern = re.compile(kill_when) if kill_when else None
    try:
        for line in proc.stderr:
            err_lines.append(line)
            if pattern and not killed.is_set() and pattern.search(line):
                killed.set()
                kill_line.append(line.strip())
                if on_match is not None:
                    on_match()
                if kill_delay:
                    threading.Timer(kill_delay, _kill).start()
                else:
                    _kill()
        proc.wait()
        reader.join(timeout=30)
    finally:
        timer.cancel()
    seconds = time.monotonic() - t0
    log = Path(cwd) / "pyinfra-debug.log"
    debug_log = log.read_text(errors="replace") if log.exists() else None
    shutil.rmtree(cwd, ignore_errors=True)
    stdout = "".join(out_chunks)
    stderr = "".join(err_lines)
    if seconds >= timeout:
        stderr += f"\n<killed after the {timeout} s timeout>"
    parsed = _parse_json(stdout) if "--json" in args else None
    return Run(
        rc=proc.returncode, stdout=stdout, stderr=stderr, json=parsed, argv=argv, label=label or " ".join(args),
        debug_log=debug_log, seconds=seconds, killed=killed.is_set(), kill_line=(kill_line or [None])[0],
    )


# --------------------------------------------------------------------------------------- secrets


def _variants(value: str) -> set[str]:
    """Forms a leaked value could take: raw, JSON-escaped, base64url<->base64, shell-quoted."""
    out = {value, json.dumps(value)[1:-1], value.translate(str.maketrans("-_", "+/")), shlex.quote(value)}
    return {v for v in out if v}


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

    def names(self) -> list[str]:
        return sorted(self._values)

    def found(self, text: str) -> set[str]:
        """Names of the secrets (any 16-char window of any form) present in text."""
        if not text:
            return set()
        return {name for name, windows in self._windows.items() if any(w in text for w in windows)}

    def redact(self, text: str) -> str:
        """text with every line that holds (part of) a secret replaced by a marker."""
        out = []
        for line in text.splitlines():
            out.append("<line withheld: it contains a secret>" if self.found(line) else line)
        return "\n".join(out)

    def leaks(self, result: Run) -> list[str]:
        """["KEY in CHANNEL", ...] for one run."""
        return [f"{key} in {channel}" for channel, text in result.channels().items() for key in sorted(self.found(text))]


_READ_SECRETS = (
    "for f in {env} {envdb}; do [ -f $f ] && grep -E '^({keys})=' $f; done; "
    "[ -s {pw} ] && sed 's/^/ADMIN_PASSWORD=/' {pw}; true"
)


def read_host_secrets(box: Sandbox, bag: SecretBag) -> SecretBag:
    """Add the secret values now on the host (.env.production, .env.db, the owner password) to bag."""
    keys = "|".join((*SECRET_KEYS, "DB_PASS", "POSTGRES_PASSWORD", "SMTP_PASSWORD", "REDIS_PASSWORD"))
    text = box.ssh(_READ_SECRETS.format(env=ENV_PRODUCTION, envdb=ENV_DB, keys=keys, pw=ADMIN_PASSWORD_FILE)).stdout
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "VAPID_PUBLIC_KEY":
            continue  # public by design
        bag.add(key, value)
    return bag


def safe_tail(result: Run, bag: SecretBag, lines: int = 30) -> str:
    """Tail of a run's stderr (and a short stdout) for an assertion message, secrets withheld."""
    err = bag.redact(result.stderr).splitlines()[-lines:]
    out = bag.redact(result.stdout)
    out = out if len(out) < 1500 else out[:300] + " ...<truncated>"
    argv = bag.redact(" ".join(shlex.quote(a) for a in result.argv[1:-2]))
    return f"[{result.label}] $ pyinfra {argv}\nrc={result.rc} ({result.seconds:.1f} s)\n" + "\n".join(err) + (
        f"\nstdout: {out}" if out.strip() else ""
    )


def env_line_hashes(box: Sandbox, path: str = ENV_PRODUCTION) -> list[tuple[str, str]]:
    """[(KEY or '', sha256 of the line)] of an env file, in order, computed ON the host."""
    script = (
        f"[ -f {path} ] || exit 0; while IFS= read -r l || [ -n \"$l\" ]; do "
        "printf '%s %s\\n' \"$(printf '%s' \"$l\" | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p')\" "
        "\"$(printf '%s' \"$l\" | sha256sum | cut -c1-64)\"; "
        f"done < {path}"
    )
    out = []
    for line in box.out(script).splitlines():
        key, _, digest = line.rpartition(" ")
        out.append((key.strip(), digest))
    return out


def file_digest(box: Sandbox, path: str) -> str:
    return box.out(f"sha256sum {path} | cut -c1-64").strip()


# ------------------------------------------------------------------------------------- host state


_STATE = r"""
set -u
{ for d in /opt/mastodon /data/nginx /etc/letsencrypt; do
    [ -e "$d" ] || { echo "absent $d"; continue; }
    find "$d" \( -path /opt/mastodon/postgres14/pgdata -o -path /opt/mastodon/redis/\* \) -prune \
      -printf '%y %m %u:%g %p\n' -o -printf '%y %m %u:%g %p\n'
    find "$d" \( -path /opt/mastodon/postgres14/pgdata -o -path /opt/mastodon/redis/\* \) -prune -o -type f -print0 \
      | xargs -0r sha256sum | sed 's/^/sha /'
  done
  for f in /etc/passwd /etc/group /etc/shadow /etc/gshadow /root/mastodon-admin-password; do
    [ -e "$f" ] && { printf 'file %s ' "$f"; stat -c '%a %U:%G' "$f"; sha256sum "$f" | sed 's/^/sha /'; }
  done
  docker ps -aq --filter label=com.docker.compose.project=mastodon | xargs -r docker inspect \
    --format 'container {{.Name}} {{.Id}} {{.State.StartedAt}} {{.State.Status}}'
} 2>&1 | LC_ALL=C sort
"""


def state_lines(box: Sandbox) -> list[str]:
    """What "bad data changes nothing" compares (see module doc). Contains digests only, no content."""
    return box.out(_STATE).splitlines()


def state_diff(before: list[str], after: list[str]) -> list[str]:
    a, b = set(before), set(after)
    return [f"- {x}" for x in sorted(a - b)] + [f"+ {x}" for x in sorted(b - a)]


def instance_version(box: Sandbox) -> str | None:
    """`version` of /api/v1/instance through nginx (None when it does not answer)."""
    ca = "/data/nginx/local_ca/caCert.pem"
    proc = box.ssh(
        f"curl -sS --max-time 20 --resolve {DOMAIN}:443:127.0.0.1 --cacert {ca} https://{DOMAIN}/api/v1/instance"
    )
    try:
        return json.loads(proc.stdout).get("version")
    except ValueError:
        return None


def container(box: Sandbox, service: str) -> str:
    """"ID StartedAt Image" of mastodon-SERVICE-1 ('' if absent)."""
    return box.ssh(
        f"docker inspect --format '{{{{.Id}}}} {{{{.State.StartedAt}}}} {{{{.Config.Image}}}}' mastodon-{service}-1 2>/dev/null"
    ).stdout.strip()


# ---------------------------------------------------------------------------------------- watcher

WATCH_SCRIPT = r"""#!/bin/sh
# Logs every event on a secret-bearing file with its state at that moment (lstat right after the
# event, in perl: no fork in between). violations.log: the states readable by group or other.
dir=$1
roots=""
for r in /opt /root /tmp /var/tmp /var/backups /data; do [ -d "$r" ] && roots="$roots $r"; done
inotifywait -m -r -e create,moved_to,attrib,close_write,modify --format '%e|%w%f' \
  --exclude '^/opt/mastodon/(postgres14|redis)/|^/root/\.cache' $roots 2>"$dir/inotify.err" |
perl -e '
  $| = 1;
  my $dir = shift;
  open(my $ev, ">>", "$dir/events.log") or die; open(my $vi, ">>", "$dir/violations.log") or die;
  select((select($ev), $| = 1)[0]); select((select($vi), $| = 1)[0]);
  while (my $line = <STDIN>) {
    chomp $line; my ($e, $p) = split(/\|/, $line, 2);
    my @s = lstat($p);
    next unless @s && -f _;
    my $base = $p; $base =~ s{.*/}{};
    my $sensitive = ($base =~ /^\.env\.(production|db)/ || $base =~ /mastodon-admin-password/
      || $base =~ /pre-migration-/ || $base =~ /pyinfra/i || $base =~ /\.tmp$/
      || $p =~ m{^/var/backups/mastodon/} || $p =~ m{^/(tmp|var/tmp)/} || $p =~ m{^/root/}
      || $p =~ m{^/data/nginx/local_ca/});
    next unless $sensitive;
    my $mode = $s[2] & 07777;
    my $rec = sprintf("%s %s %04o %d:%d %d\n", $e, $p, $mode, $s[4], $s[5], $s[7]);
    print $ev $rec;
    # world/group-readable local CA *certificate* files are public by design
    next if $p =~ m{^/data/nginx/local_ca/.*(Cert|\.crt|\.srl)};
    print $vi $rec if $mode & 077;
  }' "$dir"
"""


class Watcher:
    """inotify watcher on the sandbox, run as a transient systemd unit (stopped by its unit name)."""

    def __init__(self, box: Sandbox, name: str):
        self.box = box
        self.unit = f"secwatch-{name}"
        self.dir = f"/run/{self.unit}"

    def start(self) -> None:
        script = base64.b64encode(WATCH_SCRIPT.encode()).decode()
        self.box.out(
            f"systemctl stop {self.unit} 2>/dev/null; rm -rf {self.dir}; mkdir -m 700 {self.dir} && "
            f"echo {script} | base64 -d > {self.dir}/watch.sh && "
            f"systemd-run --quiet --collect --unit={self.unit} sh {self.dir}/watch.sh {self.dir} && "
            f"for i in $(seq 200); do grep -q 'Watches established' {self.dir}/inotify.err 2>/dev/null && exit 0; sleep 0.1; done; "
            f"echo 'watcher did not start' >&2; cat {self.dir}/inotify.err >&2; exit 1",
            timeout=60,
        )

    def violations(self) -> list[str]:
        return self.box.out(f"sleep 0.5; cat {self.dir}/violations.log 2>/dev/null; true").splitlines()

    def events(self) -> list[str]:
        return self.box.out(f"cat {self.dir}/events.log 2>/dev/null; true").splitlines()

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
