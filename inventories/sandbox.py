"""pyinfra inventory of the local sandbox server (``scripts/sandbox up``).

One host, ``sandbox``: root over SSH on 127.0.0.1 (port 2222, or ``SANDBOX_PORT``) with the key the
sandbox script generates in ``.sandbox/ssh/id_ed25519`` (or below ``SANDBOX_CACHE``).
Domain: ``social1.sandbox.test``; certificates come from nginx-certbot's local CA.
"""

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
_cache = Path(os.environ.get("SANDBOX_CACHE") or (_REPO / ".sandbox"))
if not _cache.is_absolute():
    _cache = Path.cwd() / _cache

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
            "mastodon_certbot_local_ca": True,
        },
    ),
]
