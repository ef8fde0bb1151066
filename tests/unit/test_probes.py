"""
``probes/mail_domain.py`` against a real UDP DNS server (a small one in this process), decided as
Mastodon's ``email_mx_validator.rb`` decides: MX, then A/AAAA of the domain and of each MX host; a
lone null MX rejects mail; no answer at all counts as no records.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading

import pytest

from pyinfra_mastodon.probes import mail_domain

MX, A, AAAA = 15, 1, 28
ZONE = {
    ("sandbox.test", MX): [(10, "mail.sandbox.test")],
    ("mail.sandbox.test", A): ["192.0.2.25"],
    ("a-only.test", A): ["192.0.2.7"],
    ("v6-only.test", AAAA): ["2001:db8::1"],
    ("nullmx.test", MX): [(0, "")],
    ("nullmx.test", A): ["192.0.2.9"],  # an A record does not help: the null MX says "no mail"
    ("mx-nowhere.test", MX): [(10, "gone.test")],
}


def _name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"


def _answer(query: bytes) -> bytes:
    ident = query[:2]
    offset, labels = 12, []
    while query[offset]:
        labels.append(query[offset + 1 : offset + 1 + query[offset]].decode())
        offset += 1 + query[offset]
    qtype = struct.unpack(">H", query[offset + 1 : offset + 3])[0]
    question = query[12 : offset + 5]
    name = ".".join(labels)
    records = ZONE.get((name, qtype), [])
    known = any(key[0] == name for key in ZONE)
    rcode = 0 if known else 3
    body = b""
    for record in records:
        if qtype == MX:
            rdata = struct.pack(">H", record[0]) + _name(record[1])
        elif qtype == A:
            rdata = socket.inet_pton(socket.AF_INET, record)
        else:
            rdata = socket.inet_pton(socket.AF_INET6, record)
        # the owner name as a compression pointer to the question, as real servers do
        body += b"\xc0\x0c" + struct.pack(">HHIH", qtype, 1, 60, len(rdata)) + rdata
    header = ident + struct.pack(">HHHHH", 0x8180 | rcode, 1, len(records), 0, 0)
    return header + question + body


@pytest.fixture
def dns_server(monkeypatch):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except OSError:
                continue
            sock.sendto(_answer(data), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setattr(mail_domain, "PORT", sock.getsockname()[1])
    monkeypatch.setattr(mail_domain, "nameservers", lambda: ["127.0.0.1"])
    yield
    stop.set()
    thread.join()
    sock.close()


@pytest.mark.parametrize(
    "domain, verdict",
    [
        ("sandbox.test", "reachable"),
        ("a-only.test", "reachable"),  # no MX: the domain's own A record receives mail
        ("v6-only.test", "reachable"),
        ("nullmx.test", "unreachable null-mx"),
        ("mx-nowhere.test", "unreachable no-records"),  # an MX host without any address
        ("nowhere.test", "unreachable no-records"),  # NXDOMAIN
    ],
)
def test_verdicts(dns_server, domain, verdict):
    assert mail_domain.main(domain) == verdict


def test_no_server_answers(monkeypatch):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))  # bound, never answers
    monkeypatch.setattr(mail_domain, "PORT", sock.getsockname()[1])
    monkeypatch.setattr(mail_domain, "nameservers", lambda: ["127.0.0.1"])
    monkeypatch.setattr(mail_domain, "TIMEOUT", 0.2)
    try:
        assert mail_domain.main("sandbox.test") == "unreachable no-answer"
    finally:
        sock.close()


def test_runs_as_python_dash_c_with_the_standard_library_only():
    # What the host runs: the file's text as `python3 -c`, its only argument the domain.
    source = open(mail_domain.__file__).read()
    result = subprocess.run(
        [sys.executable, "-I", "-c", source, "invalid..name"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert result.stdout.split()[0] in ("unreachable", "unknown"), result.stdout
