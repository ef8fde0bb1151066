"""TCP_NODELAY on pyinfra's SSH socket (connection.py), on a real TCP connection."""

from __future__ import annotations

import socket
from types import SimpleNamespace

from pyinfra_mastodon.connection import set_nodelay


def _host_with(sock):
    transport = SimpleNamespace(sock=sock)
    client = SimpleNamespace(get_transport=lambda: transport)
    return SimpleNamespace(connector=SimpleNamespace(client=client))


def test_sets_nodelay_on_the_ssh_socket():
    server = socket.create_server(("127.0.0.1", 0))
    sock = socket.create_connection(server.getsockname())
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        assert set_nodelay(_host_with(sock)) is True
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()
        server.close()


def test_leaves_other_connections_alone():
    a, b = socket.socketpair()  # a Unix socket, like a ProxyCommand's pipe
    try:
        assert set_nodelay(_host_with(a)) is False
    finally:
        a.close()
        b.close()
    assert set_nodelay(SimpleNamespace(connector=SimpleNamespace())) is False  # @local, @docker
