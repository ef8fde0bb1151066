"""
The Mastodon deploy: ``pyinfra INVENTORY deploys/mastodon.py``.
"""

from __future__ import annotations

from pyinfra import host, inventory
from pyinfra.api import deploy

from .errors import DeployRefused
from .settings import DEFAULTS, MastodonConfig, SettingsError, load_inventory_configs
from .stages import configuration, database, services, system


def validated_config() -> MastodonConfig:
    """
    Validate the data of every host in the inventory, then return this host's configuration.

    Each host checks the whole inventory while preparing, before any operation runs anywhere, so
    one bad value stops the whole run with one line naming the host and the setting.
    """
    try:
        configs = load_inventory_configs((h.name, h.data.dict()) for h in inventory)
    except SettingsError as error:
        raise DeployRefused(str(error)) from None
    return configs[host.name]


@deploy("Mastodon", data_defaults=DEFAULTS)
def mastodon() -> None:
    """
    Take a Debian/Ubuntu host with Docker and Compose v2 to a running Mastodon behind nginx.
    A second run on a converged host changes nothing and restarts nothing.
    """
    cfg = validated_config()
    system.check_prerequisites()
    existing = system.check_existing_instance(cfg)

    system.apply()  # 1. user and directories
    files = configuration.apply(cfg)  # 2. env files with secrets, compose file, nginx conf
    stale = configuration.remove_stale_server_blocks(cfg, existing["nginx_confs"])
    data = services.start_data_services(cfg)  # 3-4. images, db and redis up, PostgreSQL ready
    pre = database.migrate_before(cfg)  # 5. new database, or pre-deployment migrations
    services.start_all(cfg, unchanged_since=[*data, pre])  # 6. (re)start what changed, new version
    post = database.migrate_after()  # 7. post-deployment migrations
    seeded = database.seed()  # 8. seed and owner account
    database.owner(cfg)
    services.restart_after(cfg, [post, seeded])  # 9. restart only if 7 or 8 changed something
    services.reload_proxy([files["nginx"], *stale])
