"""
Env files that hold secrets, compared and written without a secret ever leaving the host.

The deploy renders an env file from a template in which every secret line reads ``KEY=@@SECRET@@``.
For each such line it decides, per host, where the value comes from:

- ``override``: the operator set it in host data: the value is known here and is written;
- ``keep``: the host already has the key: the value stays on the host and is never read back;
- ``generate``: neither: a new value is generated here, once, and written.

The host reports which keys its file has (``facts.EnvFileKeys``), never a value, nor anything derived
from one. The planned content then goes to the host on standard input (withheld from every log) and the
host compares it with the file (``facts.EnvFileDiff``), reporting only the names of the keys that differ.
When anything differs, the new content goes to the host on the write command's standard input (no
upload, no temporary file outside the target directory) and
``sh/env-file-write.sh`` (``commands.env_file_write``) puts the kept lines back from the old file, writes
the result with umask 077 next to the target and renames it over the target: the content is never
readable by anyone but its owner, not even briefly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

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


@dataclass(frozen=True)
class EnvPlan:
    """
    What writing one env file would do on one host, before the host has compared it.

    + payload: the content to send (kept secrets as ``@@KEEP@@KEY`` lines); holds secrets: never print it
    + generated: secret keys new on the host in this run (generated here, or first given in host data)
    + overridden: secret keys the host has, given in host data too (replaced if the values differ)
    + kept: secret keys whose value stays as it is on the host
    + derived: keys rebuilt on the host from the secret they belong to (a lost VAPID public key)
    """

    payload: str = field(repr=False)
    generated: tuple[str, ...]
    overridden: tuple[str, ...]
    kept: tuple[str, ...]
    derived: tuple[str, ...] = ()


def plan_env_file(
    rendered: str,
    host_keys: Mapping[str, bool] | None,
    overrides: Mapping[str, str],
    generate: Callable[[set[str]], Mapping[str, str]],
    pairs: Mapping[str, str] | None = None,
) -> EnvPlan:
    """
    Decide the content of an env file from its rendered template and the keys the host's file has.

    + rendered: template output; secret lines read ``KEY=@@SECRET@@``
    + host_keys: key -> whether it has a value (``EnvFileKeys``), or None when the file is missing;
      a key whose only lines are empty (``KEY=``, ``KEY=""``, ``KEY=''``) has no value to keep
    + overrides: secret values set by the operator (env key -> value)
    + generate: called with the set of secret keys that need a new value; returns key -> value
    + pairs: dependent key -> the key it is derived from (VAPID public -> private): generated together
    """
    kept_on_host = {key for key, has_value in (host_keys or {}).items() if has_value}

    lines = rendered.splitlines()
    secret_keys = [m.group(1) for m in map(_ENV_LINE.match, lines) if m and m.group(2) == SECRET_PLACEHOLDER]
    missing = {key for key in secret_keys if key not in overrides and key not in kept_on_host}
    derive: set[str] = set()
    for dependent, primary in (pairs or {}).items():
        if dependent not in secret_keys or dependent in overrides:
            continue
        if primary in missing:
            missing.add(dependent)  # a new private key needs its own public key
        elif dependent in missing:
            # The private key stays on the host: rebuild its public key there (env-file-write.sh).
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
            (overridden if key in kept_on_host else generated).append(key)
        elif key in missing:
            out_lines.append(f"{key}={quote_env_value(new_values[key])}")
            generated.append(key)
        elif key in derive:
            out_lines.append(f"{DERIVE_MARKER}{key}")
        else:
            out_lines.append(f"{KEEP_MARKER}{key}")
            kept.append(key)
    return EnvPlan(
        payload="\n".join(out_lines) + "\n",
        generated=tuple(generated),
        overridden=tuple(overridden),
        kept=tuple(kept),
        derived=tuple(sorted(derive)),
    )


def converged_payload(rendered: str, overrides: Mapping[str, str]) -> str:
    """
    The payload ``plan_env_file`` makes for a host whose file has a value for every secret: what the
    file holds on a converged host (``facts.Converged`` checks that each kept key has a value).
    Holds the overrides' values: never print it.
    """
    lines = rendered.splitlines()
    secrets = {m.group(1): True for m in map(_ENV_LINE.match, lines) if m and m.group(2) == SECRET_PLACEHOLDER}

    def nothing_new(missing: set[str]) -> dict[str, str]:
        return {}

    return plan_env_file(rendered, secrets, overrides, nothing_new).payload


def planned_keys(payload: str) -> list[str]:
    """The keys of a payload, in order (kept and derived ones included): for a file that does not exist yet."""
    keys = []
    for line in payload.splitlines():
        for marker in (KEEP_MARKER, DERIVE_MARKER):
            if line.startswith(marker):
                line = line[len(marker) :] + "="
        match = _ENV_LINE.match(line)
        if match:
            keys.append(match.group(1))
    return keys


class Withheld(list):
    """
    Standard input for a fact that must never be printed: pyinfra logs a fact's arguments, ``_stdin``
    included, with ``-vv``. This is the list of lines pyinfra's connectors write, shown as
    ``<withheld>`` wherever it is formatted.
    """

    def __init__(self, text: str):
        super().__init__(text.splitlines(keepends=True))

    def readlines(self) -> list[str]:
        return list(self)

    def __repr__(self) -> str:
        return "<withheld>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<withheld>"
