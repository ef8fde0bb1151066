"""
The SSH connection pyinfra already holds to each host, made faster for the many small commands a
deploy sends.

pyinfra's SSH connector (paramiko) leaves Nagle's algorithm on. Each command is a few small writes
(the exec request, then stdin) that wait for the server's delayed ACK, about 40 ms every time on
Linux. ``TCP_NODELAY`` on the socket removes that wait; it changes nothing else. The connection is
made before a deploy's code runs, so the deploy sets it on the open socket first thing.
"""

from __future__ import annotations

import socket

from pyinfra.api.host import Host


def set_nodelay(host: Host) -> bool:
    """
    Set ``TCP_NODELAY`` on the host's SSH socket; False when there is none to set (another connector,
    or a ProxyCommand/jump host, whose "socket" is a pipe).

    + host: the pyinfra host, connected
    """
    client = getattr(host.connector, "client", None)
    transport = client.get_transport() if client is not None else None
    sock = getattr(transport, "sock", None)
    if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True
