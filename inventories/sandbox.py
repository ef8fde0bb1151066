"""pyinfra inventory of the local sandbox server (``scripts/sandbox up``).

One host, ``sandbox``: root over SSH on 127.0.0.1 (port 2222, or ``SANDBOX_PORT``) with the key the
sandbox script generates in ``.sandbox/ssh/id_ed25519`` (or below ``SANDBOX_CACHE``).
Domain: ``social1.sandbox.test``. Certificates come from the sandbox's ACME server (pebble, instance
``production`` at https://acme.sandbox.test:14000/dir, validating HTTP-01 over port 80), as a real
server gets them from Let's Encrypt; certbot trusts the ACME API's CA, ``/etc/pebble/acme-ca.pem`` on
the server. ``SANDBOX_CERTS=local-ca`` gives nginx-certbot's local CA instead (no ACME, the Vagrant
path); ``SANDBOX_ACME_DIRECTORY`` names another ACME directory (e.g. the ``staging`` instance on 14001).
"""

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
_cache = Path(os.environ.get("SANDBOX_CACHE") or (_REPO / ".sandbox"))
if not _cache.is_absolute():
    _cache = Path.cwd() / _cache

_certs = os.environ.get("SANDBOX_CERTS") or "acme"
if _certs not in ("acme", "local-ca"):
    raise ValueError(f"SANDBOX_CERTS={_certs!r}: use 'acme' (the sandbox's pebble, the default) or 'local-ca'")
if _certs == "local-ca":
    _cert_data = {"mastodon_certbot_local_ca": True}
else:
    _cert_data = {
        "mastodon_certbot_local_ca": False,
        "mastodon_acme_directory": os.environ.get("SANDBOX_ACME_DIRECTORY") or "https://acme.sandbox.test:14000/dir",
        "mastodon_acme_ca_bundle": "/etc/pebble/acme-ca.pem",
    }

sandbox = [
    (
        "sandbox",
        {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": int(os.environ.get("SANDBOX_PORT") or 2222),
            "ssh_user": "root",
            "ssh_key": str(_cache / "ssh" / "id_ed25519"),
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "off",
            "mastodon_prefix": "social",
            "mastodon_server_id": "1",
            "mastodon_zone": "sandbox.test",
            "mastodon_admin_email": "admin@sandbox.test",
            **_cert_data,
        },
    ),
]
