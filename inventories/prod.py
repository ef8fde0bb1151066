"""Example inventory of a fleet of Mastodon servers. Copy it and replace the example values.

    pyinfra inventories/prod.py deploys/mastodon.py --dry       # what would change, nothing is changed
    pyinfra inventories/prod.py deploys/mastodon.py             # deploy every host
    pyinfra inventories/prod.py deploys/mastodon.py --limit mastodon-b.example.org

How pyinfra reads this file: every module-level list, or (list, dict) tuple, whose name does not
start with "_" is a group of hosts; the dict is data shared by the group. A host is "name" or
("name", {host data}). The file name adds one more group ("prod") holding every host.

Data layers, strongest first:
  1. `--data key=value` on the command line (one run only);
  2. host data (the dict next to a host below);
  3. group data: `group_data/<group>.py` files, then the dict of a group in this file;
     `group_data/all.py` (or a group named `all`) applies to every host;
  4. the defaults of the deploy itself (pyinfra_mastodon/settings.py; see README.md, "Inventory and
     settings").
Every `mastodon_*` key is checked before anything changes on any host: an unknown name or a bad
value stops the run with a message naming the host and the key.

Domains: each host serves `{mastodon_prefix}{mastodon_server_id}.{mastodon_zone}`. With the group
data below: social1.example.org, social2.example.org and social3.example.org. The inventory host name
is only how pyinfra reaches the server over SSH; it does not have to match the domain. Each domain
needs a DNS record (A and/or AAAA) pointing at its host, and ports 80 and 443 open, before the first
deploy, so that Let's Encrypt can issue its certificate.

Secrets (SECRET_KEY_BASE, OTP_SECRET, the VAPID key pair, the three ACTIVE_RECORD_ENCRYPTION_* keys):
never write them in an inventory or in group_data. The first deploy generates them on each host, in
Mastodon's own formats, and keeps them in /opt/mastodon/.env.production (mode 0600); later runs
reuse them and never print them. Back that file up. Set a secret in host data only when you must
reuse an existing value, e.g. when moving an instance that already has keys onto this deploy; take
it from the environment of the machine running pyinfra, and only when it is set (see
`_from_environment` below), so that an unset variable never turns into an empty secret.
The same applies to passwords such as `mastodon_smtp_password`.
Note: `pyinfra INVENTORY debug-inventory` prints all host data, including secrets supplied this way.
"""

import os


def _from_environment(data, key, variable):
    """Set data[key] from the environment variable `variable`, only if that variable is set."""
    value = os.environ.get(variable)
    if value:
        data[key] = value
    return data


mastodon_servers = (
    [
        # Current release, everything from the group data and the deploy's defaults.
        ("mastodon-a.example.org", {"mastodon_server_id": "1"}),
        # Pinned to an older release, e.g. while it waits for its upgrade window. To upgrade,
        # remove the line (or set the new version) and run the deploy again.
        (
            "mastodon-b.example.org",
            {
                "mastodon_server_id": "2",
                "mastodon_version": "v4.6.4",
            },
        ),
        # Sends e-mail through an SMTP relay; reached over SSH by address rather than by name.
        # The SMTP password comes from the environment of the control machine:
        #   MASTODON_SOCIAL3_SMTP_PASSWORD=... pyinfra inventories/prod.py deploys/mastodon.py
        (
            "mastodon-c.example.org",
            _from_environment(
                {
                    "ssh_hostname": "203.0.113.30",
                    "mastodon_server_id": "3",
                    "mastodon_smtp_server": "smtp.example.org",
                    "mastodon_smtp_port": 587,
                    "mastodon_smtp_login": "social3@example.org",
                    "mastodon_smtp_from_address": "notifications@social3.example.org",
                    # Reusing keys of an existing instance (only if set; see the module docstring):
                    # _from_environment(data, "mastodon_secret_key_base", "MASTODON_SOCIAL3_SECRET_KEY_BASE")
                },
                "mastodon_smtp_password",
                "MASTODON_SOCIAL3_SMTP_PASSWORD",
            ),
        ),
    ],
    {
        # Connection: log in as an unprivileged user with sudo rights (key-based SSH).
        "ssh_user": "deploy",
        "_sudo": True,
        # Shared Mastodon settings; any of them can be overridden per host above.
        "mastodon_prefix": "social",
        "mastodon_zone": "example.org",
        "mastodon_admin_email": "admin@example.org",
    },
)
