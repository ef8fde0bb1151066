"""`node ./streaming/index.js`: health endpoint and a WebSocket handshake (no Redis, no auth, no events)."""

import base64
import hashlib
import json
import select
import socket
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler

from .server import serve

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key.strip() + WS_GUID).encode()).digest()).decode()


def ws_frame(opcode, payload=b""):
    header = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        header += bytes([n])
    elif n < 65536:
        header += bytes([126]) + struct.pack("!H", n)
    else:
        header += bytes([127]) + struct.pack("!Q", n)
    return header + payload


def read_frame(sock):
    """Read one client frame (masked). Returns (opcode, payload) or None on EOF."""

    def recv_exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    head = recv_exact(2)
    if head is None:
        return None
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", recv_exact(2) or b"\0\0")[0]
    elif length == 127:
        length = struct.unpack("!Q", recv_exact(8) or b"\0" * 8)[0]
    mask = recv_exact(4) if head[1] & 0x80 else b"\0\0\0\0"
    payload = recv_exact(length) if length else b""
    if mask is None or payload is None:
        return None
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Handler(BaseHTTPRequestHandler):
    server_version = "mastodon-streaming-standin"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if "/health" not in self.path:
            sys.stdout.write("[stand-in streaming] %s %s\n" % (self.address_string(), fmt % args))
            sys.stdout.flush()

    def send(self, status, body, content_type="text/plain", extra=None):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "private, no-store")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/api/v1/streaming/health":
            self.send(200, "OK")
            return
        if path == "/api/v1/streaming" or path.startswith("/api/v1/streaming/"):
            upgrade = (self.headers.get("Upgrade") or "").lower()
            key = self.headers.get("Sec-WebSocket-Key")
            if upgrade == "websocket" and key:
                self.websocket(key)
                return
            self.send(401, json.dumps({"error": "Missing access token"}), "application/json; charset=utf-8")
            return
        self.send(404, json.dumps({"error": "Not found"}), "application/json; charset=utf-8")

    def websocket(self, key):
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        sock = self.connection
        hold = float(self.server.env.get("STANDIN_WS_HOLD_SECONDS", "3"))
        deadline = time.monotonic() + hold
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                readable, _, _ = select.select([sock], [], [], remaining)
                if not readable:
                    break
                frame = read_frame(sock)
                if frame is None:
                    return
                opcode, payload = frame
                if opcode == 0x8:  # close: echo it
                    sock.sendall(ws_frame(0x8, payload[:2]))
                    return
                if opcode == 0x9:  # ping -> pong
                    sock.sendall(ws_frame(0xA, payload))
            sock.sendall(ws_frame(0x8, struct.pack("!H", 1000)))
        except OSError:
            pass
        finally:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def main(argv):
    if argv != ["./streaming/index.js"] and argv != ["streaming/index.js"] and argv != ["streaming"]:
        sys.stderr.write(f"[stand-in] node: only `node ./streaming/index.js` is emulated, got {argv!r}\n")
        return 1
    return serve(
        Handler,
        4000,
        started="Streaming API now listening on {bind}:{port} (mastodon-streaming stand-in {version})",
        stopping="Stopping streaming server\n",
        event="streaming-start",
    )
