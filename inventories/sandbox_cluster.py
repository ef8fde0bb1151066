"""pyinfra inventory of the local sandbox cluster (``scripts/sandbox up --cluster``): one instance
across four servers on one private network.

Groups, with the roles their hosts run (``mastodon_roles``):

- ``db_servers``: ``db`` (PostgreSQL and Redis);
- ``app_servers``: ``app1`` and ``app2`` (web, streaming, sidekiq; app2 also the read replica, ``db_replica``);
- ``edge_servers``: ``edge`` (the proxy, nginx-certbot).

Each host: root over SSH on 127.0.0.1, port ``SANDBOX_CLUSTER_PORT`` (2241) plus 0 to 3 in the order
db, app1, app2, edge, and ``mastodon_private_address``, its fixed address on the cluster's network
(``SANDBOX_CLUSTER_SUBNET``, 10.213.0.0/24: .11, .21, .22, .31), the same variables and table as
``scripts/sandbox``. Everything else is the single sandbox's host data (inventories/sandbox.py, with
its ``SANDBOX_CACHE``, ``SANDBOX_CERTS`` and ``SANDBOX_ACME_DIRECTORY``): the key, the domain
``social1.sandbox.test``, certificates from the ACME server at ``acme.sandbox.test``, which in the
cluster is the edge's pebble: every server's DNS points the zone's names at the edge.
"""

import os
import re
import runpy
from pathlib import Path

# The single sandbox's host data (connection, domain, owner, ACME), read from its inventory so that
# the two cannot drift apart; each server gets its own port below.
_SANDBOX = runpy.run_path(str(Path(__file__).with_name("sandbox.py")))["sandbox"][0][1]

_subnet = os.environ.get("SANDBOX_CLUSTER_SUBNET") or "10.213.0.0/24"
_match = re.fullmatch(r"(\d{1,3}\.\d{1,3}\.\d{1,3})\.0/24", _subnet)
if _match is None:
    raise ValueError(f"SANDBOX_CLUSTER_SUBNET={_subnet!r}: give a /24 such as 10.213.0.0/24 (as scripts/sandbox)")
_port = int(os.environ.get("SANDBOX_CLUSTER_PORT") or 2241)

# (server, last octet of its private address), in the order of their SSH ports (scripts/sandbox)
_SERVERS = (("db", 11), ("app1", 21), ("app2", 22), ("edge", 31))


# Media are written on both app hosts: they go to the edge's S3 server (sandbox-s3.service, moto,
# plain http), whose keys are made at each start of the service: `scripts/sandbox ssh --cluster edge
# 'sandbox-s3 credentials'` prints them; give them in SANDBOX_S3_ACCESS_KEY_ID / _SECRET_ACCESS_KEY.
_S3 = {
    "mastodon_s3_bucket": "mastodon-media",
    "mastodon_s3_endpoint": "http://s3.sandbox.test:9000",
    "mastodon_s3_protocol": "http",
}
for _key, _variable in (
    ("mastodon_s3_access_key_id", "SANDBOX_S3_ACCESS_KEY_ID"),
    ("mastodon_s3_secret_access_key", "SANDBOX_S3_SECRET_ACCESS_KEY"),
):
    if os.environ.get(_variable):
        _S3[_key] = os.environ[_variable]


def _host(name: str) -> tuple[str, dict]:
    index = [server for server, _octet in _SERVERS].index(name)
    return (
        name,
        {
            **_SANDBOX,
            **_S3,
            "ssh_port": _port + index,
            "mastodon_private_address": f"{_match.group(1)}.{_SERVERS[index][1]}",
        },
    )


# app2's Sidekiq works every upstream queue but the scheduler, which exactly one Sidekiq of an
# instance may work (its periodic jobs would otherwise run twice): app1's, with upstream's list.
_APP2 = _host("app2")
_APP2[1]["mastodon_sidekiq_queues"] = ["default,8", "push,6", "ingress,4", "mailers,2", "pull", "fasp"]
# app2 also carries the read replica of db's PostgreSQL (a real instance would give it a host of its
# own: the sandbox cluster keeps to four servers); its firewall admits the other hosts' application.
_APP2[1]["mastodon_roles"] = ["web", "streaming", "sidekiq", "db_replica"]

# The hosts that serve the others (PostgreSQL, Redis, web, streaming) admit only the instance's own
# (mastodon_firewall). The edge serves nothing to them; its firewall stays off here because the
# sandbox's S3 server (port 9000) runs on it too, which a real edge would not carry.
db_servers = ([_host("db")], {"mastodon_roles": ["db", "redis"], "mastodon_firewall": True})
app_servers = ([_host("app1"), _APP2], {"mastodon_roles": ["web", "streaming", "sidekiq"], "mastodon_firewall": True})
edge_servers = ([_host("edge")], {"mastodon_roles": ["proxy"]})
