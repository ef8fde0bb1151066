"""
Secret generators: Mastodon's exact formats, VAPID pairs usable by the webpush gem, no repeats.
"""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pyinfra_mastodon import secrets

N = 300


def gem_decode64(value: str) -> bytes:
    """``Webpush.decode64``: pad if needed, then ``Base64.urlsafe_decode64`` (strict alphabet)."""
    assert re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", value)
    padded = value + "=" * (-len(value) % 4) if not value.endswith("=") else value
    return base64.urlsafe_b64decode(padded)


def gem_key(private: str, public: str) -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey]:
    """Rebuild the key as ``VapidKey#set_keys!`` does: scalar from the private bytes, point from the public."""
    scalar = int.from_bytes(gem_decode64(private), "big")
    private_key = ec.derive_private_key(scalar, ec.SECP256R1())
    public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), gem_decode64(public))
    return private_key, public_key


def test_secret_key_base_format():
    values = {secrets.generate_secret_key_base() for _ in range(N)}
    assert len(values) == N
    assert all(re.fullmatch(r"[0-9a-f]{128}", v) for v in values)
    assert all(secrets.is_valid_secret_key_base(v) for v in values)


def test_otp_secret_format():
    values = {secrets.generate_otp_secret() for _ in range(N)}
    assert len(values) == N and all(re.fullmatch(r"[0-9a-f]{128}", v) for v in values)


def test_active_record_key_format():
    values = {secrets.generate_active_record_key() for _ in range(N)}
    assert len(values) == N
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", v) for v in values)
    # all 62 symbols show up: the alphabet is the full alphanumeric one
    assert set("".join(values)) == set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def test_vapid_pair_format_and_validity():
    seen = set()
    for _ in range(N):
        private, public = secrets.generate_vapid_keypair()
        seen.add(private)
        assert len(private) == 44 and private.endswith("=") and "+" not in private and "/" not in private
        assert len(public) == 88 and public.endswith("=") and not public.endswith("==")
        assert public.startswith("B")
        assert len(gem_decode64(private)) == 32
        raw_public = gem_decode64(public)
        assert len(raw_public) == 65 and raw_public[0] == 4
        private_key, public_key = gem_key(private, public)
        derived = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        assert derived == raw_public
        assert secrets.vapid_public_key_from_private(private) == public
        assert secrets.is_valid_vapid_private_key(private) and secrets.is_valid_vapid_public_key(public)
        assert secrets.vapid_keys_match(private, public)
    assert len(seen) == N


def test_vapid_pair_signs_an_es256_jwt():
    private, public = secrets.generate_vapid_keypair()
    private_key, public_key = gem_key(private, public)
    header = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"ES256"}').rstrip(b"=")
    claims = base64.urlsafe_b64encode(b'{"aud":"https://push.example","sub":"mailto:a@b.c"}').rstrip(b"=")
    message = header + b"." + claims
    signature = private_key.sign(message, ec.ECDSA(hashes.SHA256()))
    public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public_key.verify(signature, message + b"x", ec.ECDSA(hashes.SHA256()))


def test_vapid_accepts_gem_variants():
    private, public = secrets.generate_vapid_keypair()
    # unpadded (as sent in the push header) is accepted, like the gem's decode64
    assert secrets.is_valid_vapid_private_key(private.rstrip("="))
    assert secrets.is_valid_vapid_public_key(public.rstrip("="))
    assert secrets.vapid_keys_match(private.rstrip("="), public.rstrip("="))
    # a 31-byte scalar (Ruby's BN#to_s drops a leading zero byte) is accepted too
    short = base64.urlsafe_b64encode((12345).to_bytes(31, "big")).decode()
    assert secrets.is_valid_vapid_private_key(short)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64!",
        base64.b64encode(b"\xfb" * 32).decode(),  # standard alphabet (+ /)
        base64.urlsafe_b64encode(b"\x00" * 32).decode(),  # scalar 0
        base64.urlsafe_b64encode(b"\xff" * 32).decode(),  # >= group order
        base64.urlsafe_b64encode(b"\x01" * 33).decode(),  # too long
        None,
        123,
    ],
)
def test_invalid_vapid_private(value):
    assert not secrets.is_valid_vapid_private_key(value)


def test_invalid_vapid_public():
    private, public = secrets.generate_vapid_keypair()
    raw = bytearray(gem_decode64(public))
    raw[-1] ^= 1  # off the curve
    assert not secrets.is_valid_vapid_public_key(base64.urlsafe_b64encode(bytes(raw)).decode())
    assert not secrets.is_valid_vapid_public_key(private)
    assert not secrets.vapid_keys_match(secrets.generate_vapid_keypair()[0], public)


@pytest.mark.parametrize(
    "check, bad",
    [
        (secrets.is_valid_secret_key_base, "A" * 128),
        (secrets.is_valid_secret_key_base, "a" * 127),
        (secrets.is_valid_secret_key_base, "a" * 128 + "\n"),
        (secrets.is_valid_active_record_key, "a" * 31),
        (secrets.is_valid_active_record_key, "a" * 31 + "-"),
        (secrets.is_valid_active_record_key, "a" * 32 + "\n"),
    ],
)
def test_invalid_formats(check, bad):
    assert not check(bad)


def test_generate_per_key():
    for key in secrets.SECRET_KEYS:
        if key.startswith("VAPID"):
            with pytest.raises(ValueError):
                secrets.generate(key)
        else:
            assert secrets.VALIDATORS[key](secrets.generate(key))
    with pytest.raises(ValueError):
        secrets.generate("LOCAL_DOMAIN")


def test_generate_missing_all():
    values = secrets.generate_missing(set())
    assert list(values) == list(secrets.SECRET_KEYS)
    assert all(secrets.VALIDATORS[k](v) for k, v in values.items())
    assert secrets.vapid_keys_match(values["VAPID_PRIVATE_KEY"], values["VAPID_PUBLIC_KEY"])
    assert len(set(values.values())) == len(values)


def test_generate_missing_keeps_present():
    present = {"SECRET_KEY_BASE", "VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY"}
    values = secrets.generate_missing(present)
    assert not present & set(values)
    assert secrets.generate_missing(set(secrets.SECRET_KEYS)) == {}


def test_generate_missing_vapid_rule():
    # public present, private missing: a new pair (the old public cannot match a new private key)
    values = secrets.generate_missing({"VAPID_PUBLIC_KEY"})
    assert secrets.vapid_keys_match(values["VAPID_PRIVATE_KEY"], values["VAPID_PUBLIC_KEY"])
    # private present, public missing: nothing for VAPID (deriving would need reading the secret back)
    values = secrets.generate_missing({"VAPID_PRIVATE_KEY"})
    assert "VAPID_PUBLIC_KEY" not in values and "VAPID_PRIVATE_KEY" not in values
