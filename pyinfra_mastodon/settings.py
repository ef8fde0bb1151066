"""
Every setting of the deploy, in one typed and documented place, plus the fixed facts (paths, uid).

Settings live in pyinfra data (``group_data/*.py``, inventory host data, ``--data``), all prefixed
``mastodon_``. ``load_config(host.name, host.data.dict())`` validates one host's data and resolves it to a
``MastodonConfig``; ``load_inventory_configs`` does it for every host before any change is made. Bad data
raises ``SettingsError`` whose message is one line naming the host and the key, and never a secret.

``python -m pyinfra_mastodon.settings --markdown`` prints the README settings table.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import secrets as _secrets
from .envfile import EnvFileError, quote_env_value

# Fixed facts (docs/architecture.md)
#

BASE_DIR = "/opt/mastodon"
MASTODON_USER = "mastodon"
MASTODON_GROUP = "mastodon"
MASTODON_UID = 991
MASTODON_GID = 991
COMPOSE_PROJECT = "mastodon"
COMPOSE_FILE = f"{BASE_DIR}/docker-compose.yml"
ENV_DB_FILE = f"{BASE_DIR}/.env.db"
ENV_PRODUCTION_FILE = f"{BASE_DIR}/.env.production"
POSTGRES_DIR = f"{BASE_DIR}/postgres14"
# The real PostgreSQL data dir lives below postgres14 so its 0700 never fights postgres14's 0755.
PGDATA_CONTAINER = "/var/lib/postgresql/data/pgdata"
REDIS_DIR = f"{BASE_DIR}/redis"
PUBLIC_SYSTEM_DIR = f"{BASE_DIR}/public/system"
NGINX_CONF_DIR = "/data/nginx/user_conf.d"
# First line of every file the deploy writes: how it tells its own nginx server blocks from others.
MANAGED_HEADER = "# Managed by pyinfra-mastodon"
LETSENCRYPT_DIR = "/etc/letsencrypt"
LOCAL_CA_DIR = "/data/nginx/local_ca"
LOCAL_CA_CONTAINER_DIR = "/etc/local_ca"
ADMIN_PASSWORD_FILE = "/root/mastodon-admin-password"
BACKUP_DIR = "/var/backups/mastodon"
DB_HOST = "db"
DB_PORT = 5432
DB_NAME = "postgres"
DB_USER = "postgres"
REDIS_HOST = "redis"
REDIS_PORT = 6379
SERVICES = ("nginx", "db", "redis", "web", "streaming", "sidekiq")

PREFIX = "mastodon_"

# Secret env var -> the setting that overrides it.
SECRET_ENV_KEYS: dict[str, str] = {
    key: f"{PREFIX}{key.lower()}" for key in _secrets.SECRET_KEYS
}

# Env vars the deploy writes itself: mastodon_extra_env may not set them (a duplicate key in an env
# file is silently "last one wins" in one parser and "first one wins" in another).
MANAGED_ENV_KEYS: frozenset[str] = frozenset(
    (
        *_secrets.SECRET_KEYS,
        "LOCAL_DOMAIN",
        "WEB_DOMAIN",
        "DB_HOST",
        "DB_PORT",
        "DB_NAME",
        "DB_USER",
        "DB_PASS",
        "DATABASE_URL",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_URL",
        "SMTP_SERVER",
        "SMTP_PORT",
        "SMTP_LOGIN",
        "SMTP_PASSWORD",
        "SMTP_FROM_ADDRESS",
        # Present with any value means "skip": the deploy passes it per command, never in the file.
        "SKIP_POST_DEPLOYMENT_MIGRATIONS",
        # Set by the image; the docs say they cannot be defined in dotenv files.
        "RAILS_ENV",
        "NODE_ENV",
        "PORT",
        "BIND",
        "SOCKET",
    )
)


class SettingsError(Exception):
    """
    Bad inventory data. ``str()`` is one line: ``host 'HOST': setting 'KEY': PROBLEM``.

    + host: the inventory host name
    + key: the setting (data key) at fault
    + problem: what is wrong; never contains a secret value
    """

    def __init__(self, host: str, key: str, problem: str):
        self.host = host
        self.key = key
        # One line, whatever the callers pass.
        self.problem = " ".join(str(problem).split())
        super().__init__(f"host '{host}': setting '{key}': {self.problem}")


# Validators: take a value (already type-checked), raise ValueError with a human message.
#

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_SERVER_ID_RE = re.compile(r"^[a-z0-9-]{1,63}$")
_PREFIX_RE = re.compile(r"^[a-z0-9-]{0,62}$")
_USERNAME_RE = re.compile(r"^[a-z0-9_]{1,30}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_EMAIL_LOCAL_RE = re.compile(r"^[A-Za-z0-9._%+-]{1,64}$")
_ENV_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[[0-9A-Fa-f:.]+\]$")
_DISPLAY_NAME_RE = re.compile(r"^[A-Za-z0-9 ._'-]{1,64}$")
# Docker image reference (distribution/reference grammar, restricted: no IPv6 registry literal).
# The registry part must look like one (a dot, a port, or localhost), as Docker decides: otherwise
# "Jonasal/nginx-certbot" would be read as registry "Jonasal", a typo that only fails at pull time.
_DOCKER_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOCKER_DOMAIN = (
    rf"(?:{_DOCKER_LABEL}(?:\.{_DOCKER_LABEL})+(?::[0-9]{{1,5}})?"
    rf"|{_DOCKER_LABEL}:[0-9]{{1,5}}|localhost)"
)
_DOCKER_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_RE = re.compile(
    rf"^(?:{_DOCKER_DOMAIN}/)?{_DOCKER_COMPONENT}(?:/{_DOCKER_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[0-9a-f]{64})?$"
)
VERSION_PLACEHOLDER = "{version}"


def _short(value: Any, limit: int = 60) -> str:
    """
    ``repr`` of a (non-secret) bad value, truncated so a huge value cannot flood the message.
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_dns_name(value: str, min_labels: int = 1) -> None:
    """
    A lower-case DNS name without trailing dot: labels ``[a-z0-9-]`` not starting/ending with ``-``,
    each at most 63 characters, at most 253 in total.

    + value: the name; + min_labels: how many labels at least
    """
    if not value:
        raise ValueError("is empty")
    if len(value) > 253:
        raise ValueError(f"{_short(value)} is longer than 253 characters")
    if value.endswith("."):
        raise ValueError(f"{_short(value)} must not end with a dot")
    labels = value.split(".")
    if len(labels) < min_labels:
        raise ValueError(f"{_short(value)} needs at least {min_labels} labels (like example.org)")
    for label in labels:
        if len(label) > 63:
            raise ValueError(f"{_short(value)} has a label longer than 63 characters")
        if not _LABEL_RE.fullmatch(label):
            raise ValueError(
                f"{_short(value)} is not a valid lower-case DNS name "
                "(labels of a-z, 0-9 and '-', not starting or ending with '-')"
            )


def _validate_zone(value: str) -> None:
    check_dns_name(value, min_labels=2)


def _validate_prefix(value: str) -> None:
    if not _PREFIX_RE.fullmatch(value):
        raise ValueError(f"{_short(value)} may only contain a-z, 0-9 and '-' (it starts a DNS label)")


def _validate_server_id(value: str | int) -> None:
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} must not be negative")
        return
    if not _SERVER_ID_RE.fullmatch(value):
        raise ValueError(
            f"{_short(value)} may only contain a-z, 0-9 and '-' (no spaces, slashes or dots): "
            "it becomes part of a DNS label"
        )


def _validate_email(value: str) -> None:
    local, at, domain = value.rpartition("@")
    if not at or not _EMAIL_LOCAL_RE.fullmatch(local):
        raise ValueError(f"{_short(value)} does not look like an email address (local@domain)")
    try:
        check_dns_name(domain.lower(), min_labels=2)
    except ValueError:
        raise ValueError(
            f"{_short(value)} does not look like an email address (local@domain)"
        ) from None


def _validate_from_address(value: str) -> None:
    # Either a bare address or "Display Name <address>" (both are valid SMTP_FROM_ADDRESS values).
    match = re.fullmatch(r"(.*) <([^<>]*)>", value)
    if match:
        if not _DISPLAY_NAME_RE.fullmatch(match.group(1)):
            raise ValueError(
                f"{_short(value)}: the display name may only contain letters, digits, spaces and ._'-"
            )
        _validate_email(match.group(2))
    else:
        _validate_email(value)


def _validate_username(value: str) -> None:
    if not _USERNAME_RE.fullmatch(value):
        raise ValueError(f"{_short(value)} must match ^[a-z0-9_]{{1,30}}$")


def _validate_version(value: str) -> None:
    if not _VERSION_RE.fullmatch(value):
        raise ValueError(
            f"{_short(value)} is not a valid image tag (letters, digits, '.', '_' and '-', "
            "at most 128, starting with a letter or digit)"
        )


def check_image_ref(value: str) -> None:
    """
    A Docker image reference: ``[registry[:port]/]path[:tag][@sha256:digest]``, nothing else.
    """
    if len(value) > 512 or not _IMAGE_RE.fullmatch(value):
        raise ValueError(
            f"{_short(value)} is not a valid image reference "
            "([registry/]name[:tag][@sha256:<64 hex>], lower-case name)"
        )


def _validate_image(value: str) -> None:
    # The real version is substituted (and the result checked again) in load_config.
    check_image_ref(value.replace(VERSION_PLACEHOLDER, "v0"))


def _validate_smtp_server(value: str) -> None:
    if value and not _HOSTNAME_RE.fullmatch(value):
        raise ValueError(f"{_short(value)} is not a host name or IP address")


def _validate_port(value: int) -> None:
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a port number (1-65535)")


def _int_range(low: int, high: int) -> Callable[[int], None]:
    def validate(value: int) -> None:
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range ({low}-{high})")

    return validate


def _validate_env_value(value: str) -> None:
    # The message describes the problem, never the value (it may be a password).
    try:
        quote_env_value(value)
    except EnvFileError as error:
        raise ValueError(f"cannot be written to .env.production: {error}") from None


def _validate_extra_env(value: dict) -> None:
    # Values are never quoted back: extra env often holds credentials (S3 keys...).
    for key, item in value.items():
        if not isinstance(key, str) or not _ENV_KEY_RE.fullmatch(key):
            raise ValueError(f"key {_short(key)} must match ^[A-Z][A-Z0-9_]*$")
        if key in MANAGED_ENV_KEYS:
            raise ValueError(f"key '{key}' is managed by the deploy and cannot be set here")
        if isinstance(item, bool) or isinstance(item, (int, str)):
            if isinstance(item, str) and _CONTROL_RE.search(item):
                raise ValueError(f"the value of '{key}' contains a newline or control character")
            if isinstance(item, str):
                try:
                    _validate_env_value(item)
                except ValueError as error:
                    raise ValueError(f"the value of '{key}' {error}") from None
        else:
            raise ValueError(
                f"the value of '{key}' must be a str, int or bool (got {type(item).__name__})"
            )


def _secret_validator(env_key: str) -> Callable[[str], None]:
    check = _secrets.VALIDATORS[env_key]
    fmt = _secrets.FORMATS[env_key]

    def validate(value: str) -> None:
        # Describe the expected format; never the value.
        if not check(value):
            raise ValueError(f"is not in the expected format: {fmt}")

    return validate


# The settings
#

_NONE = type(None)


@dataclass(frozen=True)
class Setting:
    """
    One setting: ``name`` (data key, ``mastodon_*``), accepted ``type`` (a type or a tuple of types),
    ``default``, one-line ``doc``, ``required``, ``secret`` (never printed) and ``validate`` (raises
    ``ValueError`` with a human message, or None). ``default_text`` overrides the README default column.
    """

    name: str
    type: type | tuple[type, ...]
    default: Any
    doc: str
    required: bool = False
    secret: bool = False
    validate: Callable[[Any], None] | None = None
    default_text: str | None = None

    @property
    def short(self) -> str:
        """The name without the ``mastodon_`` prefix (the ``MastodonConfig`` attribute)."""
        return self.name[len(PREFIX) :]


def _secret_override(env_key: str) -> Setting:
    return Setting(
        SECRET_ENV_KEYS[env_key],
        (str, _NONE),
        None,
        f"`{env_key}` to use instead of the generated one (kept forever once set)",
        secret=True,
        validate=_secret_validator(env_key),
        default_text="(generated)",
    )


SETTINGS: tuple[Setting, ...] = (
    # identity
    Setting(
        "mastodon_prefix",
        str,
        "social",
        "first part of the domain: `{prefix}{server_id}.{zone}`",
        validate=_validate_prefix,
    ),
    Setting(
        "mastodon_server_id",
        (str, int),
        None,
        "per-host id in the domain (a-z, 0-9, '-'), e.g. `42` → `social42.example.org`",
        required=True,
        validate=_validate_server_id,
    ),
    Setting(
        "mastodon_zone",
        str,
        None,
        "DNS zone the domain lives in, lower case, no trailing dot, e.g. `example.org`",
        required=True,
        validate=_validate_zone,
    ),
    Setting(
        "mastodon_admin_email",
        str,
        None,
        "email of the owner account the deploy creates",
        required=True,
        validate=_validate_email,
    ),
    Setting(
        "mastodon_admin_username",
        str,
        "admin",
        "username of the owner account (`^[a-z0-9_]{1,30}$`)",
        validate=_validate_username,
    ),
    # images / versions
    Setting(
        "mastodon_version",
        str,
        "v4.6.5",
        "Mastodon image tag; changing it performs an upgrade",
        validate=_validate_version,
    ),
    Setting(
        "mastodon_web_image",
        str,
        "ghcr.io/mastodon/mastodon:{version}",
        "image of web and sidekiq (`{version}` is replaced)",
        validate=_validate_image,
    ),
    Setting(
        "mastodon_streaming_image",
        str,
        "ghcr.io/mastodon/mastodon-streaming:{version}",
        "image of streaming (`{version}` is replaced)",
        validate=_validate_image,
    ),
    Setting(
        "mastodon_postgres_image",
        str,
        "postgres:14-alpine",
        "image of db (PostgreSQL 14: the data dir is `postgres14`)",
        validate=_validate_image,
    ),
    Setting(
        "mastodon_redis_image",
        str,
        "redis:7-alpine",
        "image of redis",
        validate=_validate_image,
    ),
    Setting(
        "mastodon_nginx_image",
        str,
        "jonasal/nginx-certbot:latest",
        "image of the nginx + certbot proxy",
        validate=_validate_image,
    ),
    # TLS
    Setting(
        "mastodon_certbot_email",
        (str, _NONE),
        None,
        "Let's Encrypt account email",
        validate=_validate_email,
        default_text="admin email",
    ),
    Setting(
        "mastodon_certbot_staging",
        bool,
        False,
        "use the Let's Encrypt staging CA (untrusted test certificates)",
    ),
    Setting(
        "mastodon_certbot_local_ca",
        bool,
        False,
        "sign certificates with a local CA instead of Let's Encrypt (nginx-certbot `USE_LOCAL_CA`; sandbox/Vagrant)",
    ),
    # mail
    Setting(
        "mastodon_smtp_server",
        str,
        "",
        "SMTP server host name (empty: no mail)",
        validate=_validate_smtp_server,
    ),
    Setting(
        "mastodon_smtp_port",
        int,
        587,
        "SMTP port",
        validate=_validate_port,
    ),
    Setting(
        "mastodon_smtp_login",
        str,
        "",
        "SMTP user name",
        validate=_validate_env_value,
    ),
    Setting(
        "mastodon_smtp_password",
        str,
        "",
        "SMTP password (keep it out of the repo: use `--data` or an untracked data file)",
        secret=True,
        validate=_validate_env_value,
        default_text="(none)",
    ),
    Setting(
        "mastodon_smtp_from_address",
        (str, _NONE),
        None,
        "sender address of notification mails",
        validate=_validate_from_address,
        default_text="`notifications@<domain>`",
    ),
    # misc
    Setting(
        "mastodon_extra_env",
        dict,
        {},
        "extra `.env.production` variables (`{\"KEY\": value}`; not the ones the deploy manages)",
        validate=_validate_extra_env,
    ),
    Setting(
        "mastodon_postgres_wait_timeout",
        int,
        120,
        "seconds to wait for PostgreSQL to accept connections",
        validate=_int_range(5, 3600),
    ),
    Setting(
        "mastodon_healthy_timeout",
        int,
        300,
        "seconds to wait for all services to be healthy",
        validate=_int_range(5, 7200),
    ),
    Setting(
        "mastodon_backup_before_upgrade",
        bool,
        True,
        "dump the database to `/var/backups/mastodon/` before a version change",
    ),
    # secret overrides
    *(_secret_override(key) for key in _secrets.SECRET_KEYS),
)

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
_BY_SHORT: dict[str, Setting] = {setting.short: setting for setting in SETTINGS}

# Lowest-priority data for @deploy(data_defaults=DEFAULTS).
DEFAULTS: dict[str, Any] = {
    setting.name: setting.default for setting in SETTINGS if not setting.required
}

_IMAGE_SETTINGS = ("web_image", "streaming_image", "postgres_image", "redis_image", "nginx_image")


@dataclass(frozen=True)
class MastodonConfig:
    """
    One host's resolved settings: every setting without the ``mastodon_`` prefix, plus ``host``,
    ``domain``, images with ``{version}`` substituted, resolved ``certbot_email`` /
    ``smtp_from_address`` and ``secret_overrides`` (env key -> value, only those given).
    Secret values are kept out of ``repr()``.
    """

    host: str
    prefix: str
    server_id: str
    zone: str
    admin_email: str
    admin_username: str
    version: str
    web_image: str
    streaming_image: str
    postgres_image: str
    redis_image: str
    nginx_image: str
    certbot_email: str
    certbot_staging: bool
    certbot_local_ca: bool
    smtp_server: str
    smtp_port: int
    smtp_login: str
    smtp_from_address: str
    postgres_wait_timeout: int
    healthy_timeout: int
    backup_before_upgrade: bool
    domain: str
    # Extra env often carries credentials (S3 keys...): out of repr like the secrets.
    extra_env: dict = field(repr=False, hash=False)
    smtp_password: str = field(repr=False)
    secret_key_base: str | None = field(default=None, repr=False)
    otp_secret: str | None = field(default=None, repr=False)
    vapid_private_key: str | None = field(default=None, repr=False)
    vapid_public_key: str | None = field(default=None, repr=False)
    active_record_encryption_deterministic_key: str | None = field(default=None, repr=False)
    active_record_encryption_key_derivation_salt: str | None = field(default=None, repr=False)
    active_record_encryption_primary_key: str | None = field(default=None, repr=False)
    secret_overrides: dict = field(default_factory=dict, repr=False, hash=False)

    @property
    def images(self) -> dict[str, str]:
        """Compose service -> image reference."""
        return {
            "nginx": self.nginx_image,
            "db": self.postgres_image,
            "redis": self.redis_image,
            "web": self.web_image,
            "streaming": self.streaming_image,
            "sidekiq": self.web_image,
        }


# Loading
#

_MISSING = object()


def _type_name(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join("None" if t is _NONE else t.__name__ for t in types)


def _check_type(setting: Setting, value: Any) -> None:
    types = setting.type if isinstance(setting.type, tuple) else (setting.type,)
    # bool is a subclass of int, but True is not a port number: types are strict.
    ok = any(
        type(value) is t or (t not in (int, bool) and t is not _NONE and isinstance(value, t))
        for t in types
    )
    if not ok:
        raise ValueError(f"must be {_type_name(setting.type)} (got {type(value).__name__})")
    if isinstance(value, str) and _CONTROL_RE.search(value):
        raise ValueError("contains a newline, NUL or other control character")


def _check_setting(host_name: str, setting: Setting, value: Any) -> None:
    try:
        _check_type(setting, value)
        if setting.validate is not None and value is not None:
            setting.validate(value)
    except ValueError as e:
        problem = str(e)
        if setting.secret:
            # Belt and braces: a validator message must never carry the value.
            if isinstance(value, str) and len(value) >= 8:
                problem = problem.replace(value, "<secret>")
        raise SettingsError(host_name, setting.name, problem) from None


def _check_unknown_keys(host_name: str, data: Mapping[str, Any]) -> None:
    for key in sorted(k for k in data if isinstance(k, str)):
        if key in SETTINGS_BY_NAME:
            continue
        if key.lower().startswith(PREFIX):
            # Compare without the shared prefix, which would make everything look close.
            short = key.lower()[len(PREFIX) :]
            close = difflib.get_close_matches(short, list(_BY_SHORT), n=1, cutoff=0.6)
            hint = f"; did you mean '{PREFIX}{close[0]}'?" if close else ""
            raise SettingsError(host_name, key, f"unknown setting{hint}")
        if key in _BY_SHORT:
            raise SettingsError(
                host_name, key, f"unknown setting; did you mean '{_BY_SHORT[key].name}'?"
            )


def _check_domain(host_name: str, domain: str) -> None:
    first, _, _ = domain.partition(".")
    try:
        check_dns_name(first)
    except ValueError as e:
        raise SettingsError(
            host_name, "mastodon_server_id", f"the domain {_short(domain)}: {e}"
        ) from None
    try:
        check_dns_name(domain, min_labels=3)
    except ValueError as e:
        raise SettingsError(host_name, "mastodon_zone", f"the domain: {e}") from None


def load_config(host_name: str, data: Mapping[str, Any]) -> MastodonConfig:
    """
    Validate one host's data and resolve it; raises the first ``SettingsError``.

    Works with or without ``DEFAULTS`` merged into ``data`` (missing optional settings get their
    default here). Keys that are not ours (``ssh_*``, ``_sudo``, the operator's own) are ignored,
    except near-misses: an unknown ``mastodon_*`` key, or a bare setting name such as ``zone``.

    + host_name: the inventory host name, for messages
    + data: the host's merged data, e.g. ``host.data.dict()``
    """
    _check_unknown_keys(host_name, data)

    values: dict[str, Any] = {}
    for setting in SETTINGS:
        value = data.get(setting.name, _MISSING)
        if value is _MISSING or (setting.required and value is None):
            if setting.required:
                raise SettingsError(host_name, setting.name, "is required")
            value = setting.default
        _check_setting(host_name, setting, value)
        values[setting.short] = value

    values["server_id"] = str(values["server_id"])
    domain = f"{values['prefix']}{values['server_id']}.{values['zone']}"
    _check_domain(host_name, domain)

    for short in _IMAGE_SETTINGS:
        ref = values[short].replace(VERSION_PLACEHOLDER, values["version"])
        try:
            check_image_ref(ref)
        except ValueError as e:
            raise SettingsError(host_name, f"{PREFIX}{short}", str(e)) from None
        values[short] = ref

    private, public = values["vapid_private_key"], values["vapid_public_key"]
    if (private is None) != (public is None):
        given, missing = (
            ("mastodon_vapid_private_key", "mastodon_vapid_public_key")
            if public is None
            else ("mastodon_vapid_public_key", "mastodon_vapid_private_key")
        )
        raise SettingsError(
            host_name, missing, f"is required when '{given}' is set (the VAPID keys are a pair)"
        )
    if private is not None and not _secrets.vapid_keys_match(private, public):
        raise SettingsError(
            host_name,
            "mastodon_vapid_public_key",
            "does not belong to 'mastodon_vapid_private_key' (not its P-256 public point)",
        )

    if values["certbot_email"] is None:
        values["certbot_email"] = values["admin_email"]
    if values["smtp_from_address"] is None:
        values["smtp_from_address"] = f"notifications@{domain}"
    values["extra_env"] = dict(values["extra_env"])
    values["secret_overrides"] = {
        env_key: values[SETTINGS_BY_NAME[name].short]
        for env_key, name in SECRET_ENV_KEYS.items()
        if values[SETTINGS_BY_NAME[name].short] is not None
    }
    return MastodonConfig(host=host_name, domain=domain, **values)


def load_inventory_configs(
    hosts: Iterable[tuple[str, Mapping[str, Any]]],
) -> dict[str, MastodonConfig]:
    """
    Validate every host (in the given order) and check that no two share a domain; raises the first
    ``SettingsError``. Returns host name -> ``MastodonConfig``.

    + hosts: ``(host name, data)`` pairs, e.g. ``[(h.name, h.data.dict()) for h in inventory]``
    """
    configs: dict[str, MastodonConfig] = {}
    owners: dict[str, str] = {}
    for host_name, data in hosts:
        config = load_config(host_name, data)
        if config.domain in owners:
            raise SettingsError(
                host_name,
                "mastodon_server_id",
                f"the domain '{config.domain}' is also the domain of host '{owners[config.domain]}'",
            )
        owners[config.domain] = host_name
        configs[host_name] = config
    return configs


# Documentation
#


def _default_text(setting: Setting) -> str:
    if setting.required:
        return "(required)"
    if setting.default_text is not None:
        return setting.default_text
    return f"`{setting.default!r}`"


def settings_markdown_table() -> str:
    """
    The README table of every setting: ``| setting | default | description |``.
    """
    lines = ["| setting | default | description |", "|---|---|---|"]
    for setting in SETTINGS:
        doc = setting.doc.replace("|", "\\|")
        default = _default_text(setting).replace("|", "\\|")
        lines.append(f"| `{setting.name}` | {default} | {doc} |")
    return "\n".join(lines) + "\n"


def group_data_example() -> str:
    """
    The text of ``group_data/all.py``: every setting as a commented-out line with its default and
    doc, so the file documents the data layer without overriding anything.
    """
    out = [
        '"""',
        "Data for every host (pyinfra loads group_data/*.py from the working directory).",
        "",
        "Every setting of the deploy is listed below, commented out, with its default. Uncomment a line",
        "to override it for all hosts; per-host values (mastodon_server_id...) go in the inventory.",
        "Never put secrets here: use `--data KEY=VALUE` or an untracked data file.",
        "Generated by pyinfra_mastodon.settings.group_data_example(); keep them in sync.",
        '"""',
        "",
    ]
    for setting in SETTINGS:
        if setting.required:
            value = "...  # required"
        elif setting.secret:
            value = f"{setting.default!r}  # secret: never commit a value"
        else:
            value = repr(setting.default)
        doc = setting.doc.replace("`", "")
        out.append(f"# {doc}")
        out.append(f"# {setting.name} = {value}")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    """``--markdown``: print the README table; ``--group-data``: print group_data/all.py."""
    if argv == ["--markdown"]:
        sys.stdout.write(settings_markdown_table())
        return 0
    if argv == ["--group-data"]:
        sys.stdout.write(group_data_example())
        return 0
    sys.stderr.write("usage: python -m pyinfra_mastodon.settings --markdown | --group-data\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
