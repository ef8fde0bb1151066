"""Helpers of the host suite (imported by the test modules and conftest). Paths and names: tests/contract.py.

Secrets: never bring a secret value into the test process. Use `count_matching_lines` /
`sha256` style checks computed on the host, and narrow `docker inspect` templates (a full
`docker inspect` contains Config.Env, i.e. every secret of `.env.production`).
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field

from contract import BASE_DIR, container_name


@dataclass
class HttpResponse:
    rc: int  # curl's exit status (0 = transfer OK)
    status: int  # final HTTP status, 0 when there was no HTTP answer
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names, last block
    body: str = ""
    redirect_url: str = ""
    stderr: str = ""

    def describe(self) -> str:
        body = self.body if len(self.body) < 300 else self.body[:300] + "..."
        return (
            f"curl rc={self.rc} status={self.status} redirect={self.redirect_url!r} "
            f"headers={self.headers} body={body!r} stderr={self.stderr.strip()[:300]!r}"
        )


_META = "\n__CURL_META__ "


def _parse_curl(rc: int, out: str, err: str) -> HttpResponse:
    meta_at = out.rfind(_META)
    meta = out[meta_at + len(_META) :].strip().split(" ", 1) if meta_at >= 0 else ["000"]
    out = out[:meta_at] if meta_at >= 0 else out
    status = int(meta[0]) if meta[0].isdigit() else 0
    redirect = meta[1] if len(meta) > 1 else ""
    headers: dict[str, str] = {}
    rest = out
    # `-i` prints every header block (1xx interim answers first): keep the last one.
    while rest.startswith("HTTP/"):
        head, sep, tail = rest.partition("\r\n\r\n")
        if not sep:
            head, sep, tail = rest.partition("\n\n")
        headers = {}
        for line in head.splitlines()[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        rest = tail
        first = head.split(None, 2)
        if len(first) > 1 and first[1].startswith("1") and first[1] != "101" and rest.startswith("HTTP/"):
            continue
        break
    return HttpResponse(rc=rc, status=status, headers=headers, body=rest, redirect_url=redirect, stderr=err)


def curl(
    host,
    url: str,
    *args: str,
    resolve: str | None = None,
    ca_file: str | None = None,
    insecure: bool = False,
    max_time: int = 20,
) -> HttpResponse:
    """Run curl ON the host; never follows redirects. `resolve` is curl's `--resolve` value."""
    cmd = ["curl", "-sS", "-i", "--max-time", str(max_time), "-w", _META + "%{http_code} %{redirect_url}"]
    if resolve:
        cmd += ["--resolve", resolve]
    if insecure:
        cmd.append("-k")
    elif ca_file:
        cmd += ["--cacert", ca_file]
    cmd += list(args)
    cmd.append(url)
    result = host.run(" ".join(shlex.quote(c) for c in cmd))
    # bytes: an upgraded connection (websocket) may send binary frames before --max-time
    out = result.stdout_bytes.decode("utf-8", "replace")
    err = result.stderr_bytes.decode("utf-8", "replace")
    return _parse_curl(result.rc, out, err)


class Site:
    """HTTP(S) access to DOMAIN through the host's nginx (127.0.0.1), from the host itself."""

    def __init__(self, host, domain: str, ca_file: str | None):
        self.host, self.domain, self.ca_file = host, domain, ca_file

    def https(self, path: str, *args: str, **kw) -> HttpResponse:
        return curl(
            self.host,
            f"https://{self.domain}{path}",
            *args,
            resolve=f"{self.domain}:443:127.0.0.1",
            ca_file=self.ca_file,
            **kw,
        )

    def http(self, path: str, *args: str, **kw) -> HttpResponse:
        return curl(self.host, f"http://{self.domain}{path}", *args, resolve=f"{self.domain}:80:127.0.0.1", **kw)


def inspect(host, service: str, template: str) -> str:
    """`docker inspect --format TEMPLATE` of one container.

    Always use a narrow template: a full `docker inspect` holds Config.Env, i.e. every secret.
    """
    result = host.run(f"docker inspect --format {shlex.quote(template)} {container_name(service)}")
    assert result.rc == 0, f"docker inspect {container_name(service)} failed: {result.stderr.strip()}"
    return result.stdout.strip()


def inspect_json(host, service: str, template: str):
    return json.loads(inspect(host, service, "{{json " + template + "}}"))


def health_status(host, service: str, wait: float = 90.0) -> str:
    """Health of a container; waits (bounded) while it is still `starting`."""
    deadline = time.monotonic() + wait
    while True:
        status = inspect(host, service, "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}")
        if status != "starting" or time.monotonic() > deadline:
            return status
        time.sleep(3)


def psql(host, sql: str) -> str:
    """Run SQL in the db container (trust auth); returns `-tA` output."""
    result = host.run(
        f"docker exec {container_name('db')} psql -U postgres -d postgres -v ON_ERROR_STOP=1 -tAc {shlex.quote(sql)}"
    )
    assert result.rc == 0, f"psql failed ({sql}): {result.stderr.strip()}"
    return result.stdout.strip()


def compose_psql(host, sql: str) -> str:
    """SQL through `docker compose exec db psql` in the project directory (how an operator reaches it)."""
    result = host.run(
        f"cd {BASE_DIR} && docker compose exec -T db psql -U postgres -d postgres "
        f"-v ON_ERROR_STOP=1 -tAqc {shlex.quote(sql)}"
    )
    assert result.rc == 0, f"docker compose exec db psql failed: {result.stderr.strip()[-500:]}"
    return result.stdout.strip()


def count_matching_lines(host, path: str, regex: str) -> int:
    """Number of lines of PATH matching the ERE `regex`, computed on the host (no content leaves it)."""
    result = host.run(f"grep -cE -- {shlex.quote(regex)} {shlex.quote(path)}")
    assert result.rc in (0, 1), f"grep on {path} failed (rc={result.rc}): {result.stderr.strip()}"
    return int(result.stdout.strip() or 0)
