"""Helpers of the security / bad-input / fault end-to-end tests (test_security_*, test_bad_input, test_faults).

Builds on deploy_helpers (Sandbox connection, Result, secret_hashes, ...) and adds:

- ``run``: the real pyinfra CLI with any flags, in a private temporary working directory (so that a
  ``pyinfra-debug.log`` it writes is collected as one more output channel and never collides with
  another engineer's run in the repo), optionally killed (SIGKILL, whole process group) when a line
  of its output matches;
- ``SecretBag``: the secret values of the host, held in this process only to scan output for them.
  Its repr and every message built from it name keys, never values;
- ``Watcher``: an inotify watcher on the host (inotifywait piped into perl, which lstat()s the file
  without forking) that logs every state in which a secret-bearing file is readable by group/other,
  every group/other-readable file whose content holds a secret key name, and the sha256 of every
  group/other-readable file (compared afterwards with the real secret files: a readable copy is caught);
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
    kill_output: str | None = None  # stderr as it was when the kill was sent
    kill_evidence: object = None  # what ``at_kill`` returned (called right after the kill)

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
    at_kill=None,
) -> Run:
    """`pyinfra [-y] ARGS [--data k=json(v)...] [--data RAW...] INVENTORY deploys/mastodon.py`.

    Runs in a fresh temporary cwd (absolute inventory and deploy paths); ``-y`` is left out with
    ``--dry`` (it would turn change detection off). ``raw_data`` entries are passed verbatim
    ("key=text", parsed by pyinfra's parse_cli_arg). ``kill_when``: a regex; when a line of stderr
    matches, the run is SIGKILLed (after ``kill_delay`` seconds), process group and all.
    ``on_match``: called (no argument) when ``kill_when`` matches, before the kill delay starts.
    ``target``: what to run instead of the deploy file (e.g. ``["exec", "--", "true"]``).
    ``at_kill``: called (no argument) right after the ``kill_when`` kill, its result kept as
    ``kill_evidence`` (e.g. what was on the host at that moment); ``kill_output`` is stderr up to the kill.
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
    kill_state: dict = {}
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
    shutil.rmtree(cwd, ignore_errors=True)
    stdout = "".join(out_chunks)
    stderr = "".join(err_lines)
    if seconds >= timeout:
        stderr += f"\n<killed after the {timeout} s timeout>"
    parsed = _parse_json(stdout) if "--json" in args else None
    return Run(
        rc=proc.returncode, stdout=stdout, stderr=stderr, json=parsed, argv=argv, label=label or " ".join(args),
        debug_log=debug_log, seconds=seconds, killed=killed.is_set(), kill_line=(kill_line or [None])[0],
        kill_output=kill_state.get("output"), kill_evidence=kill_state.get("evidence"),
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
    # box.out: an ssh failure raises (a bag silently left empty would make every "no leak" check vacuous);
    # files that do not exist yet (a fresh host, a --dry run) are not an error
    text = box.out(_READ_SECRETS.format(env=ENV_PRODUCTION, envdb=ENV_DB, keys=keys, pw=ADMIN_PASSWORD_FILE))
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

_SHA256_PL = r'''my @K = (0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2);
sub sha256_hex {
  my $m = shift; my $l = length($m);
  $m .= "\x80" . ("\0" x ((55 - $l) % 64)) . pack("NN", int($l / 536870912), ($l * 8) & 0xffffffff);
  my @H = (0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);
  for (my $o = 0; $o < length($m); $o += 64) {
    my @w = unpack("N16", substr($m, $o, 64));
    for my $i (16 .. 63) {
      my ($x, $y) = ($w[$i - 15], $w[$i - 2]);
      my $s0 = (($x >> 7 | $x << 25) ^ ($x >> 18 | $x << 14) ^ ($x >> 3)) & 0xffffffff;
      my $s1 = (($y >> 17 | $y << 15) ^ ($y >> 19 | $y << 13) ^ ($y >> 10)) & 0xffffffff;
      $w[$i] = ($w[$i - 16] + $s0 + $w[$i - 7] + $s1) & 0xffffffff;
    }
    my ($A, $B, $C, $D, $E, $F, $G, $I) = @H;
    for my $i (0 .. 63) {
      my $S1 = (($E >> 6 | $E << 26) ^ ($E >> 11 | $E << 21) ^ ($E >> 25 | $E << 7)) & 0xffffffff;
      my $ch = ($E & $F) ^ ((~$E) & $G & 0xffffffff);
      my $t1 = ($I + $S1 + $ch + $K[$i] + $w[$i]) & 0xffffffff;
      my $S0 = (($A >> 2 | $A << 30) ^ ($A >> 13 | $A << 19) ^ ($A >> 22 | $A << 10)) & 0xffffffff;
      my $maj = ($A & $B) ^ ($A & $C) ^ ($B & $C);
      ($I, $G, $F, $E, $D, $C, $B, $A) = ($G, $F, $E, ($D + $t1) & 0xffffffff, $C, $B, $A, ($t1 + $S0 + $maj) & 0xffffffff);
    }
    my @n = ($A, $B, $C, $D, $E, $F, $G, $I);
    $H[$_] = ($H[$_] + $n[$_]) & 0xffffffff for 0 .. 7;
  }
  return join("", map { sprintf("%08x", $_) } @H);
}
'''

# Watched trees. Left out (inotifywait's --exclude is one regex, matched against each path): the database
# and redis data, caches, the watcher's own /run/secwatch-* dir, Docker's and containerd's state and the
# container root filesystems mounted below them (/var/lib/docker, /var/lib/containerd, /run/docker,
# /run/containerd), the journal (/run/log, constant churn) and systemd's mount-propagation dirs.
WATCH_ROOTS = ("/opt", "/root", "/tmp", "/var/tmp", "/var/backups", "/data",
               "/run", "/dev/shm", "/home", "/etc", "/var/lib")
WATCH_EXCLUDE = (
    r"^/opt/mastodon/(postgres14|redis)/|^/root/\.cache"
    r"|^/run/(secwatch-|containerd|docker|log(/|$)|systemd/(journal|propagate|inaccessible|incoming|mount-rootfs))"
    r"|^/var/lib/(docker|containerd)(/|$)"
)
# key names whose presence in a group/other-readable file is a violation, whatever the file's name
SECRET_CONTENT_KEYS = ("SECRET_KEY_BASE=", "OTP_SECRET=", "VAPID_PRIVATE_KEY=", "ACTIVE_RECORD_ENCRYPTION_",
                       "DB_PASS=", "POSTGRES_PASSWORD=", "SMTP_PASSWORD=")

WATCH_SH = r"""#!/bin/sh
# inotifywait on the watched trees, piped into watch.pl (which looks at each file without forking).
dir=$1
roots=""
# a root the deploy creates (/data on a fresh host) is made first (empty, 0755): inotifywait can only
# watch what exists when it starts
for r in @ROOTS@; do [ -d "$r" ] || mkdir -m 755 "$r"; roots="$roots $r"; done
inotifywait -m -r -e create,moved_to,attrib,close_write,modify --format '%e|%w%f' \
  --exclude '@EXCLUDE@' $roots 2>"$dir/inotify.err" | perl "$dir/watch.pl" "$dir"
"""

WATCH_PL = r"""use strict; use warnings;
# Every event on a regular file: lstat right after the event (no fork in between).
# events.log: the states of secret-bearing names (the name rules below).
# violations.log: a secret-bearing name readable by group/other, or ANY file readable by group/other
#   whose content holds a secret key name (whatever its name).
# digests.log: every file readable by group/other: sha256 of its content at that moment and of each of
#   its lines (tab-separated), compared after the run with the digests of the real secret files.
my $dir = shift;
open(my $ev, ">>", "$dir/events.log") or die; open(my $vi, ">>", "$dir/violations.log") or die;
open(my $dg, ">>", "$dir/digests.log") or die;
for my $fh ($ev, $vi, $dg) { my $old = select($fh); $| = 1; select($old); }
my $keys = qr/(@KEYS@)/;
@SHA@
while (my $line = <STDIN>) {
  chomp $line; my ($e, $p) = split(/\|/, $line, 2);
  my @s = lstat($p);
  next unless @s && -f _;
  my $mode = $s[2] & 07777;
  my $rec = sprintf("%s %s %04o %d:%d %d", $e, $p, $mode, $s[4], $s[5], $s[7]);
  my $base = $p; $base =~ s{.*/}{};
  my $sensitive = ($base =~ /^\.env\.(production|db)/ || $base =~ /mastodon-admin-password/
    || $base =~ /pre-migration-/ || $base =~ /pyinfra/i || $base =~ /\.tmp$/
    || $p =~ m{^/var/backups/mastodon/} || $p =~ m{^/(tmp|var/tmp)/} || $p =~ m{^/root/}
    || $p =~ m{^/data/nginx/local_ca/});
  # world/group-readable local CA *certificate* files are public by design
  my $public = $p =~ m{^/data/nginx/local_ca/.*(Cert|\.crt|\.srl)};
  if ($sensitive) {
    print $ev "$rec\n";
    print $vi "$rec\n" if ($mode & 077) && !$public;
  }
  next unless $mode & 044;
  # readable by group/other: look at the content, whatever the name
  next if $s[7] > 4194304;
  my $data = "";
  if (open(my $fh, "<", $p)) { binmode $fh; local $/; $data = <$fh>; close $fh; $data = "" unless defined $data; }
  else { next; }
  my %hit; $hit{$1} = 1 while $data =~ /$keys/g;
  print $vi "$rec content:" . join(",", sort keys %hit) . "\n" if %hit;
  next if length($data) > 262144;
  my @lines = length($data) <= 65536 ? split(/\n/, $data) : ();
  @lines = @lines[0 .. 1999] if @lines > 2000;
  print $dg join("\t", $rec, sha256_hex($data), join(",", map { sha256_hex($_) } grep { length($_) >= 8 } @lines)) . "\n";
}
"""

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
    """inotify watcher on the sandbox, run as a transient systemd unit (stopped by its unit name).

    Rules (see WATCH_PL): a secret-bearing NAME (env files, owner password, dumps, temp copies, anything in
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
        sh = (WATCH_SH.replace("@ROOTS@", " ".join(WATCH_ROOTS)).replace("@EXCLUDE@", WATCH_EXCLUDE))
        pl = WATCH_PL.replace("@KEYS@", "|".join(re.escape(k) for k in SECRET_CONTENT_KEYS)).replace("@SHA@", _SHA256_PL)
        sh64 = base64.b64encode(sh.encode()).decode()
        pl64 = base64.b64encode(pl.encode()).decode()
        self.box.out(
            f"systemctl stop {self.unit} 2>/dev/null; rm -rf {self.dir}; mkdir -m 700 {self.dir} && "
            f"echo {sh64} | base64 -d > {self.dir}/watch.sh && echo {pl64} | base64 -d > {self.dir}/watch.pl && "
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
        keys = "|".join((*SECRET_KEYS[:3], *SECRET_KEYS[4:], "DB_PASS", "POSTGRES_PASSWORD", "SMTP_PASSWORD"))
        files = " ".join((ENV_PRODUCTION, ENV_DB, ADMIN_PASSWORD_FILE, *extra_files))
        out = self.box.out("sleep 0.5; " + _DIGEST_MATCH.format(dir=self.dir, files=files, keys=keys)).splitlines()
        assert out != ["NO-SECRET-FILES"], "no secret file on the host to compare digests with: the check would be vacuous"
        return out

    def public_copies(self, public: str = "/opt/mastodon/docker-compose.yml /data/nginx/user_conf.d/*.conf") -> set[str]:
        """Records (as in violations.log) of readable files whose content at that moment was empty or
        byte-identical to one of the public files the deploy writes: e.g. pyinfra's /tmp upload of
        docker-compose.yml as a sudo user. Such a state shows no secret, whatever the file's name."""
        empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        out = self.box.out(
            f"p=$(for f in {public}; do [ -f \"$f\" ] && sha256sum < \"$f\" | cut -c1-64; done); "
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
