"""
Env files that hold secrets, compared and written without a secret ever leaving the host.

The deploy renders an env file from a template in which every secret line reads ``KEY=@@SECRET@@``.
For each such line it decides, per host, where the value comes from:

- ``override``: the operator set it in host data: the value is known here and is written;
- ``keep``: the host already has the key: the value stays on the host and is never read back;
- ``generate``: neither: a new value is generated here, once, and written.

The host reports one sha256 digest per line (``facts.EnvFileDigests``), never a value, so the file can be
compared line by line: a kept line matches when the host has that key at that position; every other line
matches when its digest is equal. When anything differs, the new content goes to the host on the
command's standard input (no upload, no temporary file outside the target directory) and a small awk
program puts the kept lines back from the old file, writes the result with umask 077 next to the target
and renames it over the target: the content is never readable by anyone but its owner, not even briefly.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

SECRET_PLACEHOLDER = "@@SECRET@@"
KEEP_MARKER = "@@KEEP@@"
DERIVE_MARKER = "@@DERIVE@@"  # only VAPID_PUBLIC_KEY: derived on the host from VAPID_PRIVATE_KEY

_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
# Characters a Compose env_file value may hold unquoted without being interpolated or cut.
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]*$")


class EnvFileError(ValueError):
    """A rendered env file that cannot be written safely (the message never holds a value)."""


def quote_env_value(value: str) -> str:
    """
    Quote a value for a Docker Compose ``env_file``.

    Compose v2 interpolates ``$`` and strips `` #`` comments in unquoted values; single quotes make
    the value literal. A value with a single quote or a line break cannot be written literally.
    """
    if "\n" in value or "\r" in value or "\0" in value:
        raise EnvFileError("a value contains a line break or NUL")
    if _PLAIN_VALUE.match(value):
        return value
    if "'" in value:
        raise EnvFileError("a value with both special characters and a single quote cannot be quoted")
    return f"'{value}'"


def line_digest(line: str, key: str = "") -> str:
    """
    sha256 of ``key`` + one line without its newline: what ``facts.EnvFileDigests`` reports per line
    when given the same key on its standard input.
    """
    return hashlib.sha256((key + line).encode()).hexdigest()


@dataclass(frozen=True)
class EnvPlan:
    """
    What writing one env file would do on one host.

    + payload: the content to send (kept secrets as ``@@KEEP@@KEY`` lines); holds secrets: never print it
    + changed: whether the content differs from the host's
    + changed_keys: keys whose line is new, different or gone (names only, for messages)
    + generated: secret keys generated in this run
    + overridden: secret keys whose host value is replaced by the one from host data
    + kept: secret keys whose value stays as it is on the host
    + derived: keys rebuilt on the host from the secret they belong to (a lost VAPID public key)
    """

    payload: str = field(repr=False)
    changed: bool
    changed_keys: tuple[str, ...]
    generated: tuple[str, ...]
    overridden: tuple[str, ...]
    kept: tuple[str, ...]
    derived: tuple[str, ...] = ()


def _empty_line_digests(key: str, digest_key: str) -> set[str]:
    return {line_digest(f"{key}={empty}", digest_key) for empty in ("", '""', "''")}


def plan_env_file(
    rendered: str,
    host_lines: Sequence[Sequence] | None,
    overrides: Mapping[str, str],
    generate: Callable[[set[str]], Mapping[str, str]],
    pairs: Mapping[str, str] | None = None,
    digest_key: str = "",
) -> EnvPlan:
    """
    Decide the content of an env file from its rendered template and the host's line digests.

    + rendered: template output; secret lines read ``KEY=@@SECRET@@``
    + host_lines: ``[[key or None, digest], ...]`` from ``EnvFileDigests``, or None when the file is missing
    + overrides: secret values set by the operator (env key -> value)
    + generate: called with the set of secret keys that need a new value; returns key -> value
    + pairs: dependent key -> the key it is derived from (VAPID public -> private): generated together
    + digest_key: the key the host's digests were computed with
    """
    host_lines = [tuple(entry) for entry in (host_lines or [])]
    # A key whose only lines are empty (`KEY=`, `KEY=""`, `KEY=''`) has no value to keep.
    host_keys = {
        key for key, digest in host_lines if key and digest not in _empty_line_digests(key, digest_key)
    }

    lines = rendered.splitlines()
    secret_keys = [
        m.group(1) for m in map(_ENV_LINE.match, lines) if m and m.group(2) == SECRET_PLACEHOLDER
    ]
    missing = {key for key in secret_keys if key not in overrides and key not in host_keys}
    derive: set[str] = set()
    for dependent, primary in (pairs or {}).items():
        if dependent not in secret_keys or dependent in overrides:
            continue
        if primary in missing:
            missing.add(dependent)  # a new private key needs its own public key
        elif dependent in missing:
            # The private key stays on the host: rebuild its public key there (write_command).
            missing.discard(dependent)
            derive.add(dependent)
    new_values = dict(generate(missing)) if missing else {}
    if set(new_values) != missing:
        raise EnvFileError("the secret generator did not return exactly the missing keys")

    out_lines: list[str] = []
    generated, overridden, kept = [], [], []
    for line in lines:
        match = _ENV_LINE.match(line)
        if not match or match.group(2) != SECRET_PLACEHOLDER:
            out_lines.append(line)
            continue
        key = match.group(1)
        if key in overrides:
            out_lines.append(f"{key}={quote_env_value(overrides[key])}")
            if key in host_keys:
                overridden.append(key)
            else:
                generated.append(key)  # first written from host data: new on the host
        elif key in missing:
            out_lines.append(f"{key}={quote_env_value(new_values[key])}")
            generated.append(key)
        elif key in derive:
            out_lines.append(f"{DERIVE_MARKER}{key}")
        else:
            out_lines.append(f"{KEEP_MARKER}{key}")
            kept.append(key)

    changed_keys = _changed_keys(out_lines, host_lines, digest_key)
    # An override equal to the host's value is no change: only report real replacements.
    overridden = [key for key in overridden if key in changed_keys]
    changed = bool(changed_keys) or len(out_lines) != len(host_lines)
    if not changed:
        for (host_key, host_digest), line in zip(host_lines, out_lines):
            if line.startswith(KEEP_MARKER):
                if host_key != line[len(KEEP_MARKER):]:
                    changed = True
            elif host_digest != line_digest(line, digest_key):
                changed = True
    return EnvPlan(
        payload="\n".join(out_lines) + "\n",
        changed=changed,
        changed_keys=tuple(changed_keys),
        generated=tuple(generated),
        overridden=tuple(overridden),
        kept=tuple(kept),
        derived=tuple(sorted(derive)),
    )


def _changed_keys(out_lines: list[str], host_lines: list[tuple], digest_key: str) -> list[str]:
    """Names of keys whose line differs between the planned content and the host (order-insensitive)."""
    host_by_key = {key: digest for key, digest in host_lines if key}
    planned_keys = []
    changed = []
    for line in out_lines:
        if line.startswith(KEEP_MARKER):
            planned_keys.append(line[len(KEEP_MARKER):])
            continue
        if line.startswith(DERIVE_MARKER):
            planned_keys.append(line[len(DERIVE_MARKER):])
            changed.append(line[len(DERIVE_MARKER):])
            continue
        match = _ENV_LINE.match(line)
        if not match:
            continue
        key = match.group(1)
        planned_keys.append(key)
        if host_by_key.get(key) != line_digest(line, digest_key):
            changed.append(key)
    changed.extend(key for key in host_by_key if key not in planned_keys)
    return changed


# awk reads the current env file (or /dev/null) in BEGIN, then the new content from stdin.
# A "@@KEEP@@KEY" line is replaced by the current line of KEY; a missing one is an error (exit 3),
# which cannot happen unless the file changed between the fact and the write.
_MERGE_AWK = (
    "BEGIN { while ((getline line < current) > 0) "
    "if (match(line, /^[A-Za-z_][A-Za-z0-9_]*=/)) old[substr(line, 1, RLENGTH - 1)] = line } "
    "/^@@KEEP@@/ { k = substr($0, 9); if (!(k in old)) { missing = k; exit 3 } print old[k]; next } "
    "/^@@DERIVE@@/ { print substr($0, 11) \"=\" derived; next } "
    "{ print } "
    "END { if (missing != \"\") print \"pyinfra-mastodon: \" missing \" vanished from the env file during the run\" > \"/dev/stderr\" }"
)


# Rebuilds VAPID_PUBLIC_KEY from the VAPID_PRIVATE_KEY in "$old", on the host: the raw 32-byte
# scalar goes into an RFC 5915 ECPrivateKey (prime256v1) for openssl, which prints the public point;
# its last 65 bytes (0x04 || X || Y), URL-safe base64 with padding, are what the webpush gem writes.
# The private key only passes through a pipe; the public key is no secret.
_DERIVE_VAPID_PUBLIC = (
    "command -v openssl >/dev/null || { echo 'pyinfra-mastodon: openssl is needed to rebuild "
    "VAPID_PUBLIC_KEY from VAPID_PRIVATE_KEY' >&2; exit 4; }; "
    "key() { sed -n 's/^VAPID_PRIVATE_KEY=//p' \"$old\" | tr -d \"'\" | tr -- '-_' '+/'; }; "
    "n=$(key | base64 -d | wc -c); "
    "derived=$({ printf '\\060\\061\\002\\001\\001\\004\\040'; "
    "if [ \"$n\" -eq 31 ]; then printf '\\000'; fi; key | base64 -d; "
    "printf '\\240\\012\\006\\010\\052\\206\\110\\316\\075\\003\\001\\007'; } "
    "| openssl ec -inform DER -pubout -outform DER -conv_form uncompressed 2>/dev/null "
    "| tail -c 65 | base64 -w0 | tr -- '+/' '-_'); "
    "if [ ${#derived} -ne 88 ]; then echo 'pyinfra-mastodon: could not rebuild VAPID_PUBLIC_KEY "
    "from VAPID_PRIVATE_KEY' >&2; exit 4; fi; "
)


def write_command(
    path: str, user: str, group: str, mode: str = "600", derive_vapid_public: bool = False
) -> str:
    """
    The shell command that writes the payload (given on stdin) to ``path`` atomically.

    It holds no secret: the content travels on standard input.

    + derive_vapid_public: the payload has a ``@@DERIVE@@VAPID_PUBLIC_KEY`` line to rebuild
    """
    q = shlex.quote
    tmp = f"{path}.pyinfra-tmp"
    script = (
        "set -e; umask 077; "
        f"old=/dev/null; if [ -f {q(path)} ]; then old={q(path)}; fi; "
        'derived=""; '
        + (_DERIVE_VAPID_PUBLIC if derive_vapid_public else "")
        + f"awk -v current=\"$old\" -v derived=\"$derived\" {q(_MERGE_AWK)} > {q(tmp)}; "
        f"chown {q(user)}:{q(group)} {q(tmp)}; chmod {q(mode)} {q(tmp)}; "
        f"mv -f {q(tmp)} {q(path)}"
    )
    return f"sh -c {q(script)}"
