"""A small Redis client (RESP2 over a socket), configured like Mastodon.

Configuration follows upstream's ``lib/mastodon/redis_configuration.rb`` (Rails side: ``REDIS_URL``
wins; else ``REDIS_HOST`` (default ``localhost``), ``REDIS_PORT`` (6379), ``REDIS_DB`` (0),
``REDIS_USER``, ``REDIS_PASSWORD``) and ``streaming/redis.js`` (Node side: the same names, with host
default ``127.0.0.1``). Sentinel setups are not emulated.
"""

import os
import socket
from urllib.parse import unquote, urlsplit


class RedisError(Exception):
    """Connection refused / timed out / an error reply; ``str()`` is Mastodon-like."""


def config(env=None, default_host="localhost"):
    """(host, port, db, user, password) from the environment."""
    env = os.environ if env is None else env
    url = env.get("REDIS_URL") or ""
    if url:
        parts = urlsplit(url)
        db = (parts.path or "/0").lstrip("/") or "0"
        return (
            parts.hostname or default_host,
            parts.port or 6379,
            int(db),
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
        )
    return (
        env.get("REDIS_HOST") or default_host,
        int(env.get("REDIS_PORT") or 6379),
        int(env.get("REDIS_DB") or 0),
        env.get("REDIS_USER") or None,
        env.get("REDIS_PASSWORD") or None,
    )


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Redis:
    def __init__(self, env=None, timeout=5.0, default_host="localhost"):
        self.host, self.port, self.db, self.user, self.password = config(env, default_host)
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def where(self):
        return f"{self.host}:{self.port}"

    def connect(self):
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except socket.timeout as exc:
            raise RedisError(f"Error connecting to Redis on {self.where()} (Errno::ETIMEDOUT)") from exc
        except ConnectionRefusedError as exc:
            raise RedisError(f"Error connecting to Redis on {self.where()} (Errno::ECONNREFUSED)") from exc
        except OSError as exc:
            raise RedisError(f"Error connecting to Redis on {self.where()} ({type(exc).__name__}: {exc})") from exc
        if self.password:
            self.call(*(("AUTH", self.user, self.password) if self.user else ("AUTH", self.password)))
        if self.db:
            self.call("SELECT", self.db)
        return self

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    def send(self, *args):
        try:
            self.sock.sendall(encode(*args))
        except OSError as exc:
            raise RedisError(f"Connection lost ({type(exc).__name__}) on {self.where()}") from exc

    def _line(self):
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout as exc:
                raise RedisError(
                    f"Waited {self.timeout} seconds (RedisClient::ReadTimeoutError) on {self.where()}"
                ) from exc
            except OSError as exc:
                raise RedisError(f"Connection lost ({type(exc).__name__}) on {self.where()}") from exc
            if not chunk:
                raise RedisError(f"Connection lost (ECONNRESET) on {self.where()}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RedisError(f"Connection lost (ECONNRESET) on {self.where()}")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RedisError(f"protocol error: {line!r}")

    def call(self, *args):
        self.send(*args)
        return self.read()


def ping(env=None, timeout=5.0):
    """Connect and PING; raises RedisError like redis-client would."""
    with Redis(env, timeout) as r:
        reply = r.call("PING")
    if reply != "PONG":
        raise RedisError(f"unexpected PING reply {reply!r}")
