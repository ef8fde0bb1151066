"""`bundle exec puma -C config/puma.rb`: the web process (health, host authorization, force_ssl, a few routes)."""

import json
import os
import sys
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler

from . import image_version, plain_version
from .boot import boot_rails
from .db import connect, connect_reading, table_exists
from .redis import RedisError
from .server import serve
from .storage import (
    PUBLIC_DIR,
    SYSTEM_DIR,
    S3Settings,
    StorageError,
    local_put,
    media_filename,
    media_path,
    s3_enabled,
    s3_put,
    snowflake_id,
)

MAX_UPLOAD = 64 * 1024 * 1024
# Api::ErrorHandling: rescue_from Seahorse::Client::NetworkingError (the storage server unreachable)
STORAGE_UNAVAILABLE = "There was a temporary problem serving your request, please try again"


def uploaded_file(content_type_header, body):
    """(data, filename, content type) of the request's `file` param (multipart/form-data, as
    clients send it). Any other body is taken whole as the file (stand-in leniency: upstream answers
    422 without a `file` param)."""
    if content_type_header.lower().startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type_header.encode("latin-1") + b"\r\n\r\n" + body
        )
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                return (
                    part.get_payload(decode=True) or b"",
                    part.get_filename() or "",
                    part.get_content_type(),
                )
    return body, "", content_type_header.split(";")[0].strip().lower()


def media_type(content_type):
    """MediaAttachment#type from the file's content type (gif is `gifv`, as upstream converts it)."""
    if content_type == "image/gif":
        return "gifv"
    return {"image": "image", "video": "video", "audio": "audio"}.get(content_type.split("/")[0], "unknown")


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
        if path == "/api/v1/directory":
            self.directory(env)
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

    def directory(self, env):
        """
        Api::V1::DirectoriesController#show: the local accounts, read inside with_read_replica (on the
        replica when config/database.yml enables it). The X-Standin-Database header (stand-in only)
        says which database answered.
        """
        try:
            conn, used = connect_reading(env)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT username FROM accounts WHERE domain IS NULL ORDER BY id LIMIT 40")
                    rows = [{"username": name, "acct": name} for (name,) in cur.fetchall()]
                    cur.execute("SELECT pg_is_in_recovery()")
                    (recovering,) = cur.fetchone()
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001
            sys.stderr.write(f"[stand-in web] 500 on /api/v1/directory: {exc}\n")
            self.send_json(500, {"error": "We're sorry, but something went wrong on our end."})
            return
        if used == "replica" and not recovering:
            sys.stderr.write("[stand-in web] the replica database is not in recovery: it is a primary\n")
        self.send(
            200,
            json.dumps(rows),
            "application/json; charset=utf-8",
            headers={"X-Standin-Database": "replica-in-recovery" if used == "replica" and recovering else used},
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
            self.create_media(path, body)
            return
        self.send_json(404, {"error": "Record not found"})

    def create_media(self, path, body):
        """Api::V2::MediaController#create (v1: always 200): store the file (storage.py), then for
        larger media formats push PostProcessMediaWorker and answer 202."""
        env = self.server.env
        data, filename, content_type = uploaded_file(self.headers.get("Content-Type") or "", body)
        media_id = snowflake_id()
        rel = media_path(media_id, media_filename(filename, content_type))
        try:
            if s3_enabled(env):
                cfg = S3Settings.from_env(env)
                s3_put(cfg, rel, data, content_type)
                url = cfg.url(rel)
            else:
                local_put(rel, data)
                url = f"https://{env['LOCAL_DOMAIN']}/system/{rel}"
        except StorageError as exc:
            sys.stderr.write(f"[stand-in web] {exc}\n")
            if exc.kind == "networking":
                self.send_json(503, {"error": STORAGE_UNAVAILABLE})
            else:  # no rescue_from matches: Rails answers 500 (stand-in: the exception in the body)
                self.send_json(500, {"error": str(exc)})
            return
        # app/controllers/api/v2/media_controller.rb creates with delay_processing: true; for video,
        # gifv and audio (MediaAttachment#larger_media_format?) the model then calls
        # PostProcessMediaWorker.perform_async (media_attachment.rb:435, after the file is stored): a
        # Sidekiq push to Redis, and the answer is 202 (not processed yet). Redis down: the push
        # raises, the answer is 500.
        status = 200
        kind = media_type(content_type)
        if path == "/api/v2/media" and kind in ("video", "gifv", "audio"):
            from .tootctl import enqueue

            try:
                enqueue([("default", "PostProcessMediaWorker", [str(media_id)])])
            except RedisError as exc:
                sys.stderr.write(f"[stand-in web] RedisClient::CannotConnectError: {exc}\n")
                self.send_json(500, {"error": "We're sorry, but something went wrong on our end."})
                return
            status = 202
        # REST::MediaAttachmentSerializer: url is null while the attachment is not processed
        self.send_json(
            status,
            {"id": str(media_id), "type": kind, "url": None if status == 202 else url, "size": len(data)},
        )


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
