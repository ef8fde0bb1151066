"""
Can this e-mail domain receive mail, as Mastodon decides it (app/validators/email_mx_validator.rb)?

Run on the host as ``python3 -c SOURCE DOMAIN``, standard library only. It asks the DNS servers of
/etc/resolv.conf, as Ruby's Resolv::DNS does (never /etc/hosts): the domain's MX records; a lone
null MX (RFC 7505, exchange ".") means the domain rejects mail; then the A and AAAA records of the
domain and of every MX host. Prints one line: ``reachable``, ``unreachable no-records``,
``unreachable null-mx`` or ``unreachable no-answer`` (no DNS server answered, which Resolv::DNS also
takes for "no records"). Always exits 0.
"""

import random
import socket
import struct
import sys

MX, A, AAAA = 15, 1, 28
PORT = 53
TIMEOUT = 5  # seconds per query, as Mastodon's dns.timeouts = 5


def nameservers():
    servers = []
    try:
        with open("/etc/resolv.conf") as conf:
            for line in conf:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    servers.append(parts[1])
    except OSError:
        pass
    return servers or ["127.0.0.1"]  # Resolv::DNS's default too


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode("idna")
    return out + b"\0"


def read_name(msg, offset):
    """The name at ``offset`` (compression pointers followed) and the offset after it."""
    labels, end, jumps = [], None, 0
    while True:
        length = msg[offset]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | msg[offset + 1]
            jumps += 1
            if jumps > 32:
                raise ValueError("name loop")
            continue
        if length == 0:
            return ".".join(labels), (end if end is not None else offset + 1)
        labels.append(msg[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length


def query(name, qtype):
    """Answer records ``(type, rdata offset, rdlength, message)`` of one query; None if no server answered."""
    ident = random.randrange(65536)
    packet = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack(">HH", qtype, 1)
    for server in nameservers():
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            try:
                sock.sendto(packet, (server, PORT))
                msg, _ = sock.recvfrom(4096)
            except OSError:
                continue
        if len(msg) < 12 or struct.unpack(">H", msg[:2])[0] != ident:
            continue
        flags, qdcount, ancount = struct.unpack(">HHH", msg[2:8])
        if flags & 0x000F not in (0, 3):  # NOERROR or NXDOMAIN are answers; others: next server
            continue
        offset = 12
        for _ in range(qdcount):
            _, offset = read_name(msg, offset)
            offset += 4
        answers = []
        for _ in range(ancount):
            _, offset = read_name(msg, offset)
            rtype, _, _, rdlength = struct.unpack(">HHIH", msg[offset : offset + 10])
            offset += 10
            answers.append((rtype, offset, rdlength, msg))
            offset += rdlength
        return answers
    return None


def main(domain):
    mx = query(domain, MX)
    if mx is None:
        return "unreachable no-answer"
    exchanges = [read_name(msg, off + 2)[0] for rtype, off, _, msg in mx if rtype == MX]
    if exchanges == [""]:
        return "unreachable null-mx"
    ips = 0
    for hostname in dict.fromkeys([domain, *exchanges]):
        for qtype in (A, AAAA):
            answers = query(hostname, qtype) or []
            ips += sum(1 for rtype, _, _, _ in answers if rtype == qtype)
    return "reachable" if ips else "unreachable no-records"


if __name__ == "__main__":
    try:
        print(main(sys.argv[1]))
    except Exception as error:  # a malformed answer: say so, never a traceback
        print(f"unknown {type(error).__name__}")
