"""`bundle exec puma -C config/puma.rb`: the web process (health, host authorization, force_ssl, a few routes)."""

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler

from . import image_version, plain_version
from .boot import boot_rails
from .db import connect, table_exists
from .redis import RedisError
from .server import serve

PUBLIC_DIR = "/opt/mastodon/public"
SYSTEM_DIR = os.path.join(PUBLIC_DIR, "system")
MAX_UPLOAD = 64 * 1024 * 1024


def allowed_hosts(env):
    hosts = [env.get("LOCAL_DOMAIN", ""), env.get("WEB_DOMAIN", "")]
    hosts += env.get("ALTERNATE_DOMAINS", "").split(",")
    return {h.strip().lower() for h in hosts if h.strip()}


def host_without_port(host_header):
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


class Handler(BaseHTTPRequestHandler):
    server_version = "Puma"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # Rails-ish one-line log on stdout, /health silenced like upstream
        if not self.path.startswith("/health"):
            sys.stdout.write("[stand-in web] %s %s\n" % (self.address_string(), fmt % args))
            sys.stdout.flush()

    # ------------------------------------------------------------------ plumbing
    def send(self, status, body, content_type="text/plain; charset=utf-8", headers=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "private, no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status, obj):
        self.send(status, json.dumps(obj) + "\n", "application/json; charset=utf-8")

    def path_only(self):
        return self.path.split("?", 1)[0]

    def gate(self):
        """Rails middleware order: HostAuthorization, then ActionDispatch::SSL. True if the request may go on."""
        path = self.path_only()
        if path == "/health":
            return True
        env = self.server.env
        host = host_without_port(self.headers.get("Host"))
        if host not in allowed_hosts(env):
            sys.stderr.write(f"[ActionDispatch::HostAuthorization::DefaultResponseApp] Blocked hosts: {host}\n")
            self.send(
                403,
                f"<!DOCTYPE html><html><body><h1>Blocked hosts: {host}</h1></body></html>\n",
                "text/html; charset=utf-8",
            )
            return False
        proto = (self.headers.get("X-Forwarded-Proto") or "").split(",")[0].strip().lower()
        if proto != "https" and not path.startswith("/health") and not host.endswith(".onion"):
            status = 301 if self.command in ("GET", "HEAD") else 308
            location = f"https://{host}{self.path}"
            self.send(
                status,
                f'<html><body>You are being <a href="{location}">redirected</a>.</body></html>',
                "text/html; charset=utf-8",
                {"Location": location},
            )
            return False
        return True

    # ------------------------------------------------------------------ routes
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path_only()
        if path == "/health":
            self.send(200, "OK")
            return
        if not self.gate():
            return
        env = self.server.env
        if path in ("/api/v1/instance", "/api/v2/instance"):
            try:
                conn = connect(env)
                try:
                    if not table_exists(conn, "schema_migrations"):
                        raise RuntimeError('PG::UndefinedTable: ERROR:  relation "settings" does not exist')
                finally:
                    conn.close()
            except Exception as exc:  # noqa: BLE001
                sys.stderr.write(f"[stand-in web] 500 on {path}: {exc}\n")
                self.send_json(500, {"error": "We're sorry, but something went wrong on our end."})
                return
            domain = env["LOCAL_DOMAIN"]
            body = {
                "domain": domain,
                "title": "Mastodon",
                "version": plain_version(),
                "source_url": "https://github.com/mastodon/mastodon",
            }
            if path == "/api/v1/instance":
                body = {"uri": domain, **body}
            self.send_json(200, body)
            return
        if path == "/":
            self.send(
                200,
                "<!DOCTYPE html><html><head><title>Mastodon</title></head><body>"
                f"<h1>{env['LOCAL_DOMAIN']}</h1><p>Mastodon stand-in {image_version()} "
                "(test double, not Mastodon)</p></body></html>\n",
                "text/html; charset=utf-8",
            )
            return
        if path.startswith("/system/"):  # RAILS_SERVE_STATIC_FILES=true serves public/
            real = os.path.realpath(os.path.join(PUBLIC_DIR, path.lstrip("/")))
            if real.startswith(SYSTEM_DIR + "/") and os.path.isfile(real):
                with open(real, "rb") as fh:
                    self.send(200, fh.read(), "application/octet-stream")
                return
        self.send(
            404,
            "<!DOCTYPE html><html><body><h1>The page you were looking for doesn't exist.</h1></body></html>\n",
            "text/html; charset=utf-8",
        )

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_UPLOAD:
            self.send(413, "Payload Too Large")
            return
        body = self.rfile.read(length) if length else b""
        if not self.gate():
            return
        path = self.path_only()
        if path in ("/api/v2/media", "/api/v1/media"):
            media_id = str(time.time_ns() // 1000)
            rel = os.path.join("media_attachments", "files", media_id, "original", "upload.bin")
            target = os.path.join(SYSTEM_DIR, rel)
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as fh:
                    fh.write(body)
            except PermissionError as exc:
                # Ruby's wording: dir_s_mkdir for a directory, rb_sysopen for the file itself
                where = "rb_sysopen" if str(exc.filename).endswith(".bin") else "dir_s_mkdir"
                message = f"Errno::EACCES: Permission denied @ {where} - {exc.filename}"
                sys.stderr.write(f"[stand-in web] {message}\n")
                self.send_json(500, {"error": message})
                return
            except OSError as exc:
                self.send_json(500, {"error": f"{type(exc).__name__}: {exc}"})
                return
            # app/controllers/api/v2/media_controller.rb creates with delay_processing: true; for video,
            # gifv and audio (MediaAttachment#larger_media_format?) the model then calls
            # PostProcessMediaWorker.perform_async (media_attachment.rb:435): a Sidekiq push to Redis,
            # and the answer is 202 (not processed yet). Redis down: the push raises, the answer is 500.
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            status = 200
            if content_type.startswith(("video/", "audio/")) or content_type == "image/gif":
                from .tootctl import enqueue

                try:
                    enqueue([("default", "PostProcessMediaWorker", [media_id])])
                except RedisError as exc:
                    sys.stderr.write(f"[stand-in web] RedisClient::CannotConnectError: {exc}\n")
                    self.send_json(500, {"error": "We're sorry, but something went wrong on our end."})
                    return
                status = 202
            self.send_json(
                status,
                {
                    "id": media_id,
                    "type": "unknown",
                    "url": f"https://{self.server.env['LOCAL_DOMAIN']}/system/{rel}",
                    "size": len(body),
                },
            )
            return
        self.send_json(404, {"error": "Record not found"})


def main(argv):
    if argv[:2] != ["-C", "config/puma.rb"] and argv:
        sys.stderr.write(f"[stand-in] puma: unsupported arguments {argv!r} (expected: -C config/puma.rb)\n")
        return 1
    boot_rails()
    return serve(
        Handler,
        3000,
        started="Puma starting in single mode...\n* Puma version: 8.0.2 (mastodon stand-in {version})\n"
        "* Environment: {env[RAILS_ENV]}\n* Listening on http://{bind}:{port}\nUse Ctrl-C to stop",
        stopping="- Gracefully stopping, waiting for requests to finish\n=== puma shutdown ===\n",
        event="web-start",
    )
