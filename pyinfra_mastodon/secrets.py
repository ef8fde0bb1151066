"""
Secret generators and validators, in the exact formats Mastodon's own generators produce.

Pure functions: nothing here touches a host, a file or the network. The formats (see the Mastodon
reference, "Secret generation"):

+ ``SECRET_KEY_BASE`` / ``OTP_SECRET``: ``SecureRandom.hex(64)``, 128 lowercase hex characters.
+ ``ACTIVE_RECORD_ENCRYPTION_*``: ``SecureRandom.alphanumeric(32)``, 32 characters of ``[A-Za-z0-9]``.
+ ``VAPID_PRIVATE_KEY`` / ``VAPID_PUBLIC_KEY``: a P-256 key pair as the ``webpush`` gem writes it:
  URL-safe base64 **with** ``=`` padding of the raw private scalar (32 bytes, big-endian) and of the
  uncompressed SEC1 public point (65 bytes, ``0x04 || X || Y``).

Generate once, keep forever: the deploy only generates what is missing on the host, and never reads a
secret back to the control machine (``generate_missing``).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import string

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SECRET_KEY_BASE = "SECRET_KEY_BASE"
OTP_SECRET = "OTP_SECRET"
VAPID_PRIVATE_KEY = "VAPID_PRIVATE_KEY"
VAPID_PUBLIC_KEY = "VAPID_PUBLIC_KEY"
AR_DETERMINISTIC_KEY = "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY"
AR_KEY_DERIVATION_SALT = "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT"
AR_PRIMARY_KEY = "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY"

# Every secret env var the deploy manages, in the order they are written to .env.production.
SECRET_KEYS: tuple[str, ...] = (
    SECRET_KEY_BASE,
    OTP_SECRET,
    VAPID_PRIVATE_KEY,
    VAPID_PUBLIC_KEY,
    AR_DETERMINISTIC_KEY,
    AR_KEY_DERIVATION_SALT,
    AR_PRIMARY_KEY,
)

_HEX128_RE = re.compile(r"^[0-9a-f]{128}$")
_ALNUM32_RE = re.compile(r"^[A-Za-z0-9]{32}$")
# URL-safe base64 alphabet, optionally padded: the gem's decode64 re-pads a value without padding.
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_ALNUM = string.ascii_letters + string.digits
_CURVE = ec.SECP256R1()
# Order of the P-256 group: a private scalar must be in [1, n-1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


# Generators
#


def generate_secret_key_base() -> str:
    """
    ``rails secret`` (Rails 8.1: ``SecureRandom.hex(64)``): 128 lowercase hex characters.
    """
    return secrets.token_hex(64)


def generate_otp_secret() -> str:
    """
    ``OTP_SECRET`` had the same generator as ``SECRET_KEY_BASE`` (unused since Mastodon 4.4, but still
    read by one post-deployment migration when upgrading from before 4.3).
    """
    return secrets.token_hex(64)


def generate_active_record_key() -> str:
    """
    Mastodon's ``db:encryption:init`` (``SecureRandom.alphanumeric(32)``): 32 characters of ``[A-Za-z0-9]``.
    """
    return "".join(secrets.choice(_ALNUM) for _ in range(32))


def _b64url(data: bytes) -> str:
    # Ruby's Base64.urlsafe_encode64 pads by default, and so does the webpush gem.
    return base64.urlsafe_b64encode(data).decode("ascii")


def _public_point(private_value: int) -> bytes:
    key = ec.derive_private_key(private_value, _CURVE)
    return key.public_key().public_bytes(
        serialization.Encoding.X962,
        serialization.PublicFormat.UncompressedPoint,
    )


def generate_vapid_keypair() -> tuple[str, str]:
    """
    ``Webpush.generate_key``: a fresh P-256 key pair as ``(private, public)``.

    The private key is the raw scalar as fixed 32 bytes (Ruby reads it back as a big number, so the
    leading zero byte Ruby would drop 1 time in 256 makes no difference), the public key the 65-byte
    uncompressed point; both URL-safe base64 with padding (44 and 88 characters).
    """
    key = ec.generate_private_key(_CURVE)
    private_value = key.private_numbers().private_value
    private = _b64url(private_value.to_bytes(32, "big"))
    return private, _b64url(_public_point(private_value))


def _b64url_decode(value: str) -> bytes:
    """
    Decode like ``Webpush.decode64``: re-pad a value without padding, then URL-safe decode.

    + value: the base64 text; raises ``ValueError`` when it is not URL-safe base64
    """
    if not isinstance(value, str) or not _B64URL_RE.fullmatch(value):
        raise ValueError("not URL-safe base64")
    stripped = value.rstrip("=")
    padded = stripped + "=" * (-len(stripped) % 4)
    if value != stripped and value != padded:
        raise ValueError("wrong base64 padding")
    try:
        return base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError) as e:
        raise ValueError("not URL-safe base64") from e


def vapid_private_value(private: str) -> int:
    """
    The private scalar of a ``VAPID_PRIVATE_KEY``, rebuilt the way the gem does (``BN.new(bin, 2)``).

    + private: the ``VAPID_PRIVATE_KEY`` value; raises ``ValueError`` (without the value) if invalid
    """
    raw = _b64url_decode(private)
    if not 1 <= len(raw) <= 32:
        raise ValueError("does not decode to a 32-byte P-256 private scalar")
    value = int.from_bytes(raw, "big")
    if not 1 <= value < _P256_ORDER:
        raise ValueError("is not a valid P-256 private scalar")
    return value


def vapid_public_key_from_private(private: str) -> str:
    """
    Derive ``VAPID_PUBLIC_KEY`` (padded URL-safe base64 of the uncompressed point) from the private key.

    + private: the ``VAPID_PRIVATE_KEY`` value; raises ``ValueError`` (without the value) if invalid
    """
    return _b64url(_public_point(vapid_private_value(private)))


# Validators: each answers True/False and never echoes the value (callers build error messages).
#


def is_valid_secret_key_base(value: object) -> bool:
    """
    True for 128 lowercase hex characters (``rails secret``).
    """
    return isinstance(value, str) and bool(_HEX128_RE.fullmatch(value))


def is_valid_otp_secret(value: object) -> bool:
    """
    True for 128 lowercase hex characters (same generator as ``SECRET_KEY_BASE``).
    """
    return is_valid_secret_key_base(value)


def is_valid_active_record_key(value: object) -> bool:
    """
    True for 32 characters of ``[A-Za-z0-9]``.
    """
    return isinstance(value, str) and bool(_ALNUM32_RE.fullmatch(value))


def is_valid_vapid_private_key(value: object) -> bool:
    """
    True for a value the webpush gem accepts as a P-256 private key (padding optional, as in the gem).
    """
    try:
        vapid_private_value(value)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def is_valid_vapid_public_key(value: object) -> bool:
    """
    True for a 65-byte uncompressed P-256 point on the curve, URL-safe base64 (padding optional).
    """
    try:
        raw = _b64url_decode(value)  # type: ignore[arg-type]
    except ValueError:
        return False
    if len(raw) != 65 or raw[0] != 0x04:
        return False
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, raw)
    except ValueError:
        return False
    return True


def vapid_keys_match(private: str, public: str) -> bool:
    """
    True when ``public`` is the point of ``private`` (compared as decoded bytes, so padding is ignored).

    + private: ``VAPID_PRIVATE_KEY``; + public: ``VAPID_PUBLIC_KEY``
    """
    try:
        derived = _b64url_decode(vapid_public_key_from_private(private))
        return derived == _b64url_decode(public)
    except ValueError:
        return False


VALIDATORS = {
    SECRET_KEY_BASE: is_valid_secret_key_base,
    OTP_SECRET: is_valid_otp_secret,
    VAPID_PRIVATE_KEY: is_valid_vapid_private_key,
    VAPID_PUBLIC_KEY: is_valid_vapid_public_key,
    AR_DETERMINISTIC_KEY: is_valid_active_record_key,
    AR_KEY_DERIVATION_SALT: is_valid_active_record_key,
    AR_PRIMARY_KEY: is_valid_active_record_key,
}

# What a valid value looks like, for error messages that must not quote the value itself.
FORMATS = {
    SECRET_KEY_BASE: "128 lowercase hex characters (rails secret)",
    OTP_SECRET: "128 lowercase hex characters (rails secret)",
    VAPID_PRIVATE_KEY: "URL-safe base64 of a 32-byte P-256 private scalar (44 characters, '=' padded)",
    VAPID_PUBLIC_KEY: "URL-safe base64 of a 65-byte uncompressed P-256 point (88 characters, '=' padded)",
    AR_DETERMINISTIC_KEY: "32 characters of [A-Za-z0-9] (db:encryption:init)",
    AR_KEY_DERIVATION_SALT: "32 characters of [A-Za-z0-9] (db:encryption:init)",
    AR_PRIMARY_KEY: "32 characters of [A-Za-z0-9] (db:encryption:init)",
}


# What a value given in host data must be: what Mastodon and Rails accept, not the generators' formats,
# so that an instance whose secrets were made another way (YunoHost: 128 alphanumerics) can move here.
# Rails (railties configuration.rb, secret_key_base=) takes any non-blank string; Mastodon's
# config/initializers/active_record_encryption.rb aborts on a blank value or one ending in
# DO_NOT_USE_IN_PRODUCTION; the webpush gem needs real P-256 keys. Compose-safety is checked apart.
#

TEST_ONLY_SUFFIX = "DO_NOT_USE_IN_PRODUCTION"


def _not_blank(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _active_record_override(value: object) -> bool:
    return _not_blank(value) and not str(value).endswith(TEST_ONLY_SUFFIX)


OVERRIDE_VALIDATORS = {
    SECRET_KEY_BASE: _not_blank,
    OTP_SECRET: _not_blank,
    VAPID_PRIVATE_KEY: is_valid_vapid_private_key,
    VAPID_PUBLIC_KEY: is_valid_vapid_public_key,
    AR_DETERMINISTIC_KEY: _active_record_override,
    AR_KEY_DERIVATION_SALT: _active_record_override,
    AR_PRIMARY_KEY: _active_record_override,
}

_ANY_RAILS = "any value that is not blank (Rails accepts any non-blank secret_key_base)"
_ANY_AR = f"any value that is not blank and does not end in {TEST_ONLY_SUFFIX} (Mastodon aborts on those)"
OVERRIDE_FORMATS = {
    SECRET_KEY_BASE: _ANY_RAILS,
    OTP_SECRET: _ANY_RAILS,
    VAPID_PRIVATE_KEY: FORMATS[VAPID_PRIVATE_KEY],
    VAPID_PUBLIC_KEY: FORMATS[VAPID_PUBLIC_KEY],
    AR_DETERMINISTIC_KEY: _ANY_AR,
    AR_KEY_DERIVATION_SALT: _ANY_AR,
    AR_PRIMARY_KEY: _ANY_AR,
}


# Per-key generation
#


def generate(key: str) -> str:
    """
    A fresh value for one secret env var. VAPID keys come as a pair: use ``generate_vapid_keypair``
    (or ``generate_missing``), asking for one half alone raises ``ValueError``.

    + key: one of ``SECRET_KEYS`` except the two VAPID keys
    """
    if key == SECRET_KEY_BASE:
        return generate_secret_key_base()
    if key == OTP_SECRET:
        return generate_otp_secret()
    if key in (AR_DETERMINISTIC_KEY, AR_KEY_DERIVATION_SALT, AR_PRIMARY_KEY):
        return generate_active_record_key()
    if key in (VAPID_PRIVATE_KEY, VAPID_PUBLIC_KEY):
        raise ValueError(f"{key} is half of a key pair: use generate_vapid_keypair()")
    raise ValueError(f"not a secret managed by the deploy: {key!r}")


def generate_missing(present: set[str] | frozenset[str]) -> dict[str, str]:
    """
    Fresh values for every secret env var not in ``present`` (keys already on the host or given as
    overrides), in ``SECRET_KEYS`` order.

    The VAPID rule: the pair is generated (both keys returned) only when ``VAPID_PRIVATE_KEY`` is
    missing; a lone public key left on the host is then replaced, since it cannot belong to the new
    private key. When the private key is present but the public one is missing, nothing is returned for
    VAPID: the public key could only be derived by reading the private key back, which the deploy never
    does (the caller should report that state, or derive the public key on the host).

    + present: names of the secret env vars that already have a value
    """
    out: dict[str, str] = {}
    for key in SECRET_KEYS:
        if key in present or key in (VAPID_PRIVATE_KEY, VAPID_PUBLIC_KEY):
            continue
        out[key] = generate(key)
    if VAPID_PRIVATE_KEY not in present:
        private, public = generate_vapid_keypair()
        out[VAPID_PRIVATE_KEY] = private
        out[VAPID_PUBLIC_KEY] = public
    return {key: out[key] for key in SECRET_KEYS if key in out}
