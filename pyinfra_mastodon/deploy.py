"""
The Mastodon deploy: ``pyinfra INVENTORY deploys/mastodon.py``.

It reads top to bottom: validate every host's settings, check each host, then run ``STAGES`` in
order. The operator tasks (``tasks.py``) run a ``select``ion of the same stages.
"""

from __future__ import annotations

from pyinfra import host, inventory
from pyinfra.api import deploy

from . import cluster_secrets, connection, preflight
from .errors import DeployRefused
from .operations import nothing_to_do
from .settings import DEFAULTS, MastodonConfig, SettingsError, load_inventory_configs
from .stages import Outcome, Stage, configuration, database, docker, firewall, services, system, timers

# The order of a deploy. Each stage adds its operations and passes on what later ones react to.
STAGES: tuple[Stage, ...] = (
    system.apply,  # 1. the mastodon user and the directories
    firewall.apply,  # ...and the opt-in firewall (or its removal), before anything listens
    configuration.apply,  # 2. env files with secrets, compose file, nginx server block
    services.start_data_services,  # 3-4. images, db and redis up, PostgreSQL ready
    database.migrate_before,  # 5. a new database, or pre-deployment migrations
    services.start_all,  # 6. (re)start what changed: the new version
    database.migrate_after,  # 7. post-deployment migrations
    database.seed,  # 8. the seed...
    database.owner,  # ...and the owner account
    services.restart_after,  # 9. restart the application only if 7 or 8 changed something
    services.reload_proxy,  # ...and reload nginx only if its configuration changed
    services.ensure_certificate_served,  # 10. 443 serves the domain's certificate, or the run fails
    timers.apply,  # 11. the maintenance timers turned on, under the host's lock
)


def select(*stages: Stage) -> tuple[Stage, ...]:
    """Some of ``STAGES``, in deploy order whatever the order given (for the operator tasks)."""
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise ValueError(f"not a deploy stage: {unknown}")
    return tuple(stage for stage in STAGES if stage in stages)


def run_stages(cfg: MastodonConfig, stages: tuple[Stage, ...], done: Outcome | None = None) -> Outcome:
    """Run ``stages`` for this host, each given what the ones before it did."""
    done = done if done is not None else Outcome()
    for stage in stages:
        # pyinfra tells operations apart by the line numbers of their call stack, not by file: an
        # operation at line 31 of one stage's module and one at line 31 of another's would be one to
        # it, which on hosts that run different stages' operations orders them in a cycle. The
        # stage's place in STAGES (the same in every run) keeps them apart.
        host.loop_position.append(STAGES.index(stage))
        try:
            done = stage(cfg, done)
        finally:
            host.loop_position.pop()
    return done


# Where the inventory keeps its configurations, validated once per run by the first host that
# prepares, not once per host: with a fleet of N hosts that would be N x N validations in a row.
_VALIDATED = "_pyinfra_mastodon_configs"


def inventory_configs() -> dict[str, MastodonConfig]:
    """Every host's configuration, once ``validated_config`` has validated the inventory."""
    found = getattr(inventory._get_module(), _VALIDATED, None)
    if not isinstance(found, dict):
        validated_config()
        found = getattr(inventory._get_module(), _VALIDATED)
    return found


def validated_config() -> MastodonConfig:
    """
    Validate the data of every host in the inventory, then return this host's configuration.

    The first host to prepare checks the whole inventory, before any operation runs anywhere, so
    one bad value stops the whole run with one line naming the host and the setting; the other
    hosts reuse that answer.
    """
    found = getattr(inventory._get_module(), _VALIDATED, None)
    if found is None:
        try:
            found = load_inventory_configs((h.name, h.data.dict()) for h in inventory)
        except SettingsError as error:
            found = DeployRefused(str(error))
        setattr(inventory._get_module(), _VALIDATED, found)
    if isinstance(found, DeployRefused):
        raise DeployRefused(str(found)) from None
    return found[host.name]


@deploy("Mastodon", data_defaults=DEFAULTS)
def mastodon() -> None:
    """
    Take a Debian/Ubuntu host to a running Mastodon behind nginx, installing Docker and Compose v2
    from the archive first when it has none (``mastodon_install_docker``).
    A second run on a converged host changes nothing and restarts nothing.
    """
    cfg = validated_config()
    if cfg.ssh_nodelay:
        connection.set_nodelay(host)
    shared = cluster_secrets.for_instance(cfg)  # {} on a whole server
    if preflight.converged(cfg, shared):
        nothing_to_do(
            name="Check the host: files, services, database and certificate",
            reason="the host is as this deploy leaves it: nothing to do",
        )
        return
    # 0. before the checks that need Docker: they accept a host that gets it from this run
    installing_docker = docker.install_when_missing(cfg)
    existing = preflight.check(cfg, installing_docker=installing_docker)
    run_stages(cfg, STAGES, Outcome(existing=existing, instance_secrets=shared))
