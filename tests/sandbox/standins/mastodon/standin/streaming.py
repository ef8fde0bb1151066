"""`node ./streaming/index.js`: health, authenticated WebSocket upgrades and the user stream from Redis.

Follows upstream's streaming/index.js (v4.6.5): every upgrade is authenticated first
(`accountFromRequest` -> `accountFromToken`); a refused one gets a bare HTTP answer with
`X-Error-Message`; an accepted one is subscribed to `timeline:access_token:<token id>` and
`timeline:system:<account id>`, and to the stream named by `?stream=` or by `{"type":"subscribe"}` messages.
Messages published on Redis as `{"event": ..., "payload": ...}` reach the client as
`{"stream": [name], "event": ..., "payload": <payload, JSON-encoded when it is an object>}`.
"""

import base64
import hashlib
import json
import socket
import struct
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from .db import connect
from .redis import Redis, RedisError
from .server import serve

# accountFromToken's query, verbatim
ACCOUNT_FROM_TOKEN_SQL = (
    "SELECT oauth_access_tokens.id, oauth_access_tokens.resource_owner_id, users.account_id, "
    "users.chosen_languages, oauth_access_tokens.scopes, COALESCE(user_roles.permissions, 0) AS permissions "
    "FROM oauth_access_tokens INNER JOIN users ON oauth_access_tokens.resource_owner_id = users.id "
    "INNER JOIN accounts ON accounts.id = users.account_id "
    "LEFT OUTER JOIN user_roles ON user_roles.id = users.role_id "
    "WHERE oauth_access_tokens.token = %s AND oauth_access_tokens.revoked_at IS NULL "
    "AND users.disabled IS FALSE AND accounts.suspended_at IS NULL LIMIT 1"
)
UNEXPECTED_ERROR_MESSAGE = "An unexpected error occurred"  # streaming/errors.js
HTTP_REASONS = {400: "Bad Request", 401: "Unauthorized", 500: "Internal Server Error"}
SUBSCRIPTION_TTL = 6 * 60 * 3  # subscriptionHeartbeat: SET subscribed:<channel> 1 EX interval*3


class AuthenticationError(Exception):
    status = 401


def token_from_request(headers, query):
    """accountFromRequest: Authorization (minus `Bearer `), else ?access_token=, else Sec-WebSocket-Protocol."""
    authorization = headers.get("Authorization")
    access_token = (query.get("access_token") or [None])[0] or headers.get("Sec-WebSocket-Protocol")
    if not authorization and not access_token:
        raise AuthenticationError("Missing access token")
    if authorization:
        return authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else authorization
    return access_token


def account_from_token(token, env=None):
    """accountFromToken: dict(access_token_id, account_id, scopes, chosen_languages, permissions)."""
    conn = connect(env)
    try:
        with conn.cursor() as cur:
            cur.execute(ACCOUNT_FROM_TOKEN_SQL, (token,))
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        raise AuthenticationError("Invalid access token")
    return {
        "access_token_id": row[0],
        "account_id": row[2],
        "chosen_languages": row[3],
        "scopes": (row[4] or "").split(" "),
        "permissions": row[5],
    }


def channels_for(name, account):
    """channelNameToIds for the streams the stand-in knows; None for the others."""
    aid = account["account_id"]
    if name == "user":
        ids = [f"timeline:{aid}"]
        if any(s in ("read", "read:notifications") for s in account["scopes"]):
            ids.append(f"timeline:{aid}:notifications")
        return ids
    if name == "user:notification":
        return [f"timeline:{aid}:notifications"]
    if name == "direct":
        return [f"timeline:direct:{aid}"]
    if name == "public":
        return ["timeline:public"]
    if name == "public:local":
        return ["timeline:public:local"]
    return None


def scopes_allow(name, account):
    """checkScopes: `read`, or `read:notifications` for user:notification, else `read:statuses`."""
    required = ["read", "read:notifications" if name == "user:notification" else "read:statuses"]
    return any(s in required for s in account["scopes"])


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
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/api/v1/streaming/health":
            self.send(200, "OK")
            return
        if (self.headers.get("Upgrade") or "").lower() == "websocket":
            self.upgrade(query)
            return
        if path == "/api/v1/streaming" or path.startswith("/api/v1/streaming/"):
            # the EventSource side: authenticationMiddleware answers JSON errors
            try:
                account_from_token(token_from_request(self.headers, query), self.server.env)
                status, message = 400, "Unknown stream type"  # EventSource streams are not emulated
            except AuthenticationError as exc:
                status, message = 401, str(exc)
            except Exception as exc:  # noqa: BLE001
                sys.stderr.write(f"[stand-in streaming] {type(exc).__name__}: {exc}\n")
                status, message = 500, UNEXPECTED_ERROR_MESSAGE
            self.send(status, json.dumps({"error": message}), "application/json")
            return
        self.send(404, json.dumps({"error": "Not found"}), "application/json; charset=utf-8")

    def refuse(self, status, message, request_id):
        """server.on('upgrade') catch: the HTTP answer is written by hand on the socket, then closed."""
        headers = {
            "Connection": "close",
            "Content-Type": "text/plain",
            "Content-Length": 0,
            "X-Request-Id": request_id,
            "X-Error-Message": message,
        }
        head = (
            f"HTTP/1.1 {status} {HTTP_REASONS.get(status, '')}\r\n"
            + "\r\n".join(f"{k}: {v}" for k, v in headers.items())
            + "\r\n\r\n"
        )
        self.wfile.write(head.encode())
        self.wfile.flush()
        self.close_connection = True
        sys.stdout.write(f"[stand-in streaming] upgrade refused: {status} {message}\n")
        sys.stdout.flush()

    def upgrade(self, query):
        request_id = str(uuid.uuid4())
        try:
            account = account_from_token(token_from_request(self.headers, query), self.server.env)
        except AuthenticationError as exc:
            self.refuse(401, str(exc), request_id)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. the database is down
            sys.stderr.write(f"[stand-in streaming] {type(exc).__name__}: {exc}\n")
            self.refuse(500, UNEXPECTED_ERROR_MESSAGE, request_id)
            return
        key = self.headers.get("Sec-WebSocket-Key")
        if not key or self.headers.get("Sec-WebSocket-Version") != "13":
            # ws' handleUpgrade: a bad handshake is a 400
            body = "Bad Request"
            self.wfile.write(
                (
                    f"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/html\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n{body}"
                ).encode()
            )
            self.close_connection = True
            return
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        protocols = [p.strip() for p in (self.headers.get("Sec-WebSocket-Protocol") or "").split(",") if p.strip()]
        if protocols:  # ws without handleProtocols selects the first one offered
            self.send_header("Sec-WebSocket-Protocol", protocols[0])
        self.send_header("X-Request-Id", request_id)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        Session(self.connection, account, self.server.env).run((query.get("stream") or [None])[0])


class Session:
    """One WebSocket client: its Redis subscriptions and the frames sent to it."""

    def __init__(self, sock, account, env):
        self.sock, self.account, self.env = sock, account, env
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.streams = {}  # redis channel -> stream name list
        self.redis = None
        self.redis_lock = threading.Lock()
        self.pending = []  # channels to subscribe once Redis answers

    def send_frame(self, opcode, payload=b""):
        with self.lock:
            try:
                self.sock.sendall(ws_frame(opcode, payload))
            except OSError:
                self.closed.set()

    def send_json(self, obj):
        self.send_frame(0x1, json.dumps(obj, separators=(",", ":")).encode())

    def subscribe(self, channels, stream):
        for channel in channels:
            self.streams[channel] = stream
        with self.redis_lock:
            self.pending += channels
            self.flush_pending()

    def flush_pending(self):
        if self.redis is None or not self.pending:
            return
        try:
            self.redis.send("SUBSCRIBE", *self.pending)
            with Redis(self.env, default_host="127.0.0.1") as setter:
                for channel in self.pending:
                    if channel in self.streams and self.streams[channel] != ["system"]:
                        setter.call("SET", f"subscribed:{channel}", "1", "EX", SUBSCRIPTION_TTL)
            self.pending = []
        except RedisError as exc:
            sys.stderr.write(f"[stand-in streaming] redis: {exc}\n")

    def subscribe_stream(self, name):
        if not name:
            return
        if not scopes_allow(name, self.account):
            self.send_json({"error": "Access token does not have the required scopes", "status": 401})
            return
        channels = channels_for(name, self.account)
        if channels is None:
            self.send_json({"error": "Unknown stream type", "status": 400})
            return
        self.subscribe(channels, [name])

    def redis_loop(self):
        """The subscriber connection; reconnects like ioredis while the client is connected."""
        while not self.closed.is_set():
            conn = Redis(self.env, timeout=None, default_host="127.0.0.1")
            try:
                conn.connect()
                with self.redis_lock:
                    self.redis = conn
                    self.pending = list(self.streams)
                    self.flush_pending()
                while not self.closed.is_set():
                    message = conn.read()
                    if isinstance(message, list) and len(message) == 3 and message[0] == b"message":
                        self.deliver(message[1].decode(), message[2].decode("utf-8", "replace"))
            except (RedisError, OSError) as exc:
                sys.stderr.write(f"[stand-in streaming] redis subscriber: {exc}\n")
            finally:
                with self.redis_lock:
                    self.redis = None
                conn.close()
            self.closed.wait(1.0)

    def deliver(self, channel, raw):
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if not isinstance(message, dict) or not message.get("event"):
            return
        stream = self.streams.get(channel)
        if stream == ["system"]:  # createSystemMessageListener: `kill` closes the connection
            if message["event"] == "kill":
                self.send_frame(0x8, struct.pack("!H", 1000))
                self.closed.set()
            return
        if stream is None or not message.get("payload"):
            return
        payload = message["payload"]
        self.send_json(
            {
                "stream": stream,
                "event": message["event"],
                "payload": payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":")),
            }
        )

    def run(self, stream):
        aid, tid = self.account["account_id"], self.account["access_token_id"]
        self.streams[f"timeline:access_token:{tid}"] = ["system"]
        self.streams[f"timeline:system:{aid}"] = ["system"]
        threading.Thread(target=self.redis_loop, daemon=True).start()
        self.subscribe_stream(stream)
        try:
            while not self.closed.is_set():
                frame = read_frame(self.sock)
                if frame is None:
                    break
                opcode, payload = frame
                if opcode == 0x8:  # close: echo it
                    self.send_frame(0x8, payload[:2])
                    break
                if opcode == 0x9:  # ping -> pong
                    self.send_frame(0xA, payload)
                elif opcode == 0x2:
                    reason = b"The mastodon streaming server does not support binary messages"
                    self.send_frame(0x8, struct.pack("!H", 1003) + reason)
                    break
                elif opcode == 0x1:
                    try:
                        msg = json.loads(payload.decode("utf-8", "replace"))
                    except ValueError:
                        continue
                    if isinstance(msg, dict) and msg.get("type") == "subscribe":
                        name = msg.get("stream")
                        self.subscribe_stream(name[0] if isinstance(name, list) else name)
        except OSError:
            pass
        finally:
            self.closed.set()
            with self.redis_lock:
                if self.redis is not None:
                    try:
                        self.redis.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            try:
                self.sock.shutdown(socket.SHUT_WR)
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
