"""Where an uploaded media file goes, as upstream's config/initializers/paperclip.rb decides it.

S3 (``S3_ENABLED`` exactly ``true``) through a real S3 client (Debian's python3-boto3), reading the
same variables with the same defaults; otherwise the filesystem below public/system. The object key
and the URL follow Paperclip (kt-paperclip ``lib/paperclip/storage/s3.rb``); the failures are the
exceptions upstream would raise, named as in Ruby, for the web to answer as upstream's controllers do.
"""

import ipaddress
import mimetypes
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

PUBLIC_DIR = "/opt/mastodon/public"
SYSTEM_DIR = os.path.join(PUBLIC_DIR, "system")
# paperclip.rb: 'Cache-Control' => 'public, max-age=315576000, immutable' on every object
CACHE_CONTROL = "public, max-age=315576000, immutable"
MULTIPART_THRESHOLD = 15 * 1024 * 1024  # paperclip.rb: S3_MULTIPART_THRESHOLD, 15.megabytes


class StorageError(Exception):
    """An upload that upstream would fail. ``kind``: how upstream's controller answers it.

    + ``networking``: Seahorse::Client::NetworkingError, rescued by Api::ErrorHandling (503)
    + ``unhandled``: any other exception (Aws::S3::Errors::*, ArgumentError, Errno::EACCES...): no
      rescue_from matches it, Rails' exceptions app answers 500
    """

    def __init__(self, kind: str, ruby_class: str, message: str):
        super().__init__(f"{ruby_class}: {message}")
        self.kind = kind
        self.ruby_class = ruby_class
        self.message = message


# ------------------------------------------------------------------ ids, paths, file names

_SEQ = threading.Lock()
_LAST = [0]


def snowflake_id() -> int:
    """A Mastodon-like id (lib/mastodon/snowflake.rb: milliseconds << 16 | a sequence): 18 digits."""
    with _SEQ:
        value = (int(time.time() * 1000) << 16) | secrets.randbelow(1 << 16)
        value = max(value, _LAST[0] + 1)
        _LAST[0] = value
    return value


def id_partition(record_id: int) -> str:
    """Paperclip's :id_partition of an Integer id: ``("%09d" % id).scan(/\\d{3}/).join("/")``."""
    digits = "%09d" % record_id
    return "/".join(digits[i : i + 3] for i in range(0, len(digits) - len(digits) % 3, 3))


def media_filename(original: str, content_type: str) -> str:
    """Attachmentable: obfuscate_file_name (SecureRandom.hex(8) + the original extension), then
    set_file_extension (the original extension when the MIME type lists it, else the type's first)."""
    ext = os.path.splitext(original or "")[1].lstrip(".").lower()
    known = [e.lstrip(".") for e in mimetypes.guess_all_extensions(content_type or "", strict=False)]
    if ext not in known:
        ext = known[0] if known else ""
    ext = "jpeg" if ext == "jpe" else ext
    return secrets.token_hex(8) + (f".{ext}" if ext else "")


def media_path(record_id: int, filename: str, style: str = "original") -> str:
    """paperclip.rb: path ':class/:attachment/:id_partition/:style/:filename'."""
    return f"media_attachments/files/{id_partition(record_id)}/{style}/{filename}"


def ruby_to_i(value: str) -> int:
    """Ruby's String#to_i: the leading integer, 0 when there is none."""
    match = re.match(r"\s*([+-]?\d+)", value or "")
    return int(match.group(1)) if match else 0


# ------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class S3Settings:
    """The variables paperclip.rb reads, with its defaults (ENV.fetch: a default only when absent)."""

    bucket: str | None
    region: str
    protocol: str
    hostname: str
    endpoint: str | None  # None: S3_ENDPOINT absent (ENV.has_key?), AWS's endpoint
    force_path_style: bool
    alias_host: str | None
    permission: str
    signature_version: str
    open_timeout: int
    read_timeout: int
    multipart_threshold: int
    access_key_id: str | None
    secret_access_key: str | None

    @classmethod
    def from_env(cls, env) -> "S3Settings":
        region = env.get("S3_REGION", "us-east-1")
        endpoint = env["S3_ENDPOINT"] if "S3_ENDPOINT" in env else None
        if "S3_ALIAS_HOST" in env:
            alias = env["S3_ALIAS_HOST"]
        else:
            alias = env.get("S3_CLOUDFRONT_HOST")
        return cls(
            bucket=env.get("S3_BUCKET"),
            region=region,
            protocol=env.get("S3_PROTOCOL", "https"),
            hostname=env.get("S3_HOSTNAME", f"s3-{region}.amazonaws.com"),
            endpoint=endpoint,
            # only with S3_ENDPOINT; without it the SDK's own default (virtual hosts) applies
            force_path_style=endpoint is not None and env.get("S3_OVERRIDE_PATH_STYLE") != "true",
            alias_host=alias,
            permission=env.get("S3_PERMISSION", "public-read"),
            signature_version=env.get("S3_SIGNATURE_VERSION", "v4"),
            open_timeout=ruby_to_i(env.get("S3_OPEN_TIMEOUT", "5")),
            read_timeout=5,
            multipart_threshold=ruby_to_i(env.get("S3_MULTIPART_THRESHOLD", str(MULTIPART_THRESHOLD))),
            access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        )

    def url(self, path: str) -> str:
        """The file's URL: ':s3_alias_url' with S3_ALIAS_HOST/S3_CLOUDFRONT_HOST, else ':s3_path_url'
        (also Paperclip's S3 default without S3_ENDPOINT). An empty protocol gives '//host/...'."""
        proto = f"{self.protocol}:" if self.protocol else ""
        if self.alias_host is not None:
            return f"{proto}//{self.alias_host}/{path}"
        return f"{proto}//{self.hostname}/{self.bucket}/{path}"


def s3_enabled(env) -> bool:
    return env.get("S3_ENABLED") == "true"


# ------------------------------------------------------------------ the S3 client

# The stand-in never leaves the sandbox: an endpoint outside it (AWS's, without S3_ENDPOINT) is
# treated as unreachable instead of being contacted.
_SANDBOX_SUFFIXES = (".test", ".localhost")


def _inside_sandbox(host: str) -> bool:
    host = (host or "").strip("[]").lower()
    if host == "localhost" or host.endswith(_SANDBOX_SUFFIXES):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.is_private or addr.is_loopback


def _client(cfg: S3Settings):
    import boto3
    from botocore.config import Config

    if cfg.endpoint is not None:
        parts = urlsplit(cfg.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # aws-sdk-core: Seahorse::Client::Configuration validates :endpoint when the client is built
            raise StorageError("unhandled", "ArgumentError", "expected :endpoint to be a HTTP or HTTPS endpoint")
        host = parts.hostname
    else:
        host = "s3.amazonaws.com" if cfg.region == "us-east-1" else f"s3.{cfg.region}.amazonaws.com"
    if not _inside_sandbox(host):
        raise StorageError(
            "networking",
            "Seahorse::Client::NetworkingError",
            f"[stand-in] not contacting {host}: outside the sandbox (set S3_ENDPOINT to the sandbox's S3 server)",
        )
    # The SDK's credential chain would go on to ~/.aws and the instance metadata service; the
    # stand-in stops at the environment, where upstream would fail anyway in a container without them.
    if not cfg.access_key_id or not cfg.secret_access_key:
        raise StorageError(
            "unhandled", "Aws::Errors::MissingCredentialsError", "unable to sign request without credentials set"
        )
    signature = {"v4": "s3v4", "v2": "s3"}.get(cfg.signature_version)
    if signature is None:
        raise StorageError("unhandled", "ArgumentError", f"unsupported signature version {cfg.signature_version!r}")
    config = Config(
        signature_version=signature,
        connect_timeout=cfg.open_timeout,
        read_timeout=cfg.read_timeout,
        retries={"total_max_attempts": 1},  # retry_limit: 0
        s3={"addressing_style": "path" if cfg.force_path_style else "virtual"},
    )
    return boto3.client(
        "s3",
        endpoint_url=cfg.endpoint,
        region_name=cfg.region,
        aws_access_key_id=cfg.access_key_id,
        aws_secret_access_key=cfg.secret_access_key,
        config=config,
    )


def _ruby_error(exc) -> StorageError:
    from botocore import exceptions as bx

    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, bx.ClientError):
        code = exc.response.get("Error", {}).get("Code") or "ServiceError"
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        return StorageError("unhandled", f"Aws::S3::Errors::{code}", message)
    if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError)):
        return StorageError("networking", "Seahorse::Client::NetworkingError", str(exc))
    return StorageError("unhandled", type(exc).__name__, str(exc))


def s3_put(cfg: S3Settings, path: str, data: bytes, content_type: str) -> None:
    """Paperclip's flush_writes: upload with ACL S3_PERMISSION, Content-Type and Cache-Control; a
    NoSuchBucket makes it create the bucket and try again (create_bucket; retry)."""
    if not cfg.bucket:
        raise StorageError("unhandled", "ArgumentError", "missing required :bucket option")
    try:
        client = _client(cfg)
        extra = {"ContentType": content_type or "application/octet-stream", "CacheControl": CACHE_CONTROL}
        if cfg.permission:
            extra["ACL"] = cfg.permission
        for attempt in (1, 2):
            try:
                if len(data) >= max(cfg.multipart_threshold, 1):
                    import io

                    from boto3.s3.transfer import TransferConfig

                    transfer = TransferConfig(multipart_threshold=max(cfg.multipart_threshold, 1), use_threads=False)
                    client.upload_fileobj(io.BytesIO(data), cfg.bucket, path, ExtraArgs=extra, Config=transfer)
                else:
                    client.put_object(Bucket=cfg.bucket, Key=path, Body=data, **extra)
                return
            except Exception as exc:  # noqa: BLE001
                error = _ruby_error(exc)
                if error.ruby_class != "Aws::S3::Errors::NoSuchBucket" or attempt == 2:
                    raise error from None
                client.create_bucket(Bucket=cfg.bucket)
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _ruby_error(exc) from None


def local_put(path: str, data: bytes) -> str:
    """The filesystem storage: public/system/PATH (paperclip.rb's else branch)."""
    target = os.path.join(SYSTEM_DIR, path)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(data)
    except PermissionError as exc:
        # Ruby's wording: dir_s_mkdir for a directory, rb_sysopen for the file itself
        where = "rb_sysopen" if exc.filename == target else "dir_s_mkdir"
        raise StorageError("unhandled", "Errno::EACCES", f"Permission denied @ {where} - {exc.filename}") from None
    except OSError as exc:
        raise StorageError("unhandled", type(exc).__name__, str(exc)) from None
    return target
