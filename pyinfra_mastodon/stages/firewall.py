"""
Stage 1b: the opt-in host firewall (``mastodon_firewall``, off by default): nftables from the archive,
one table of its own (``layout.FIREWALL_TABLE``) that drops input but SSH, 80 and 443. Turned off
after it was on, it is taken away again.

SSH stays open on every port the deploy may be using: the ``ssh_port`` it connects to (pyinfra's
host data, 22 by default) and every port sshd listens on (a port forwarded or translated on the way,
as in the sandbox, reaches sshd on its own port), so the run never locks itself out. Established
connections are accepted before any rule, the deploy's own included.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.operations import apt, systemd

from .. import desired, layout, preflight
from ..facts import InstalledPackages
from ..operations import remove_firewall, systemd_reload
from . import Outcome, create_folder, put_file


def apply(cfg, done: Outcome) -> Outcome:
    """Install nftables if missing, write the ruleset and its unit, load it; or remove it all when off."""
    if not cfg.firewall:
        remove_firewall(name="Remove the firewall (mastodon_firewall is off)")
        return done
    if layout.FIREWALL_PACKAGE not in host.get_fact(InstalledPackages, packages=[layout.FIREWALL_PACKAGE]):
        # only on the run that installs it: a converged host gets no apt operation at all
        apt.update(name="Update the package lists")
        apt.packages(
            name=f"Install {layout.FIREWALL_PACKAGE} from the distribution's archive",
            packages=[layout.FIREWALL_PACKAGE],
            no_recommends=True,
        )
    for folder in desired.firewall_folders(cfg):
        create_folder(folder)
    rules, unit = (put_file(file) for file in desired.firewall_files(cfg, preflight.firewall_ports(cfg)))
    systemd_reload(name="Reload systemd after the firewall's unit changed", after=[unit])
    started = systemd.service(
        name=f"Enable and start {layout.FIREWALL_UNIT}",
        service=f"{layout.FIREWALL_UNIT}.service",
        running=True,
        enabled=True,
    )
    # A new ruleset on a firewall already running: load it (one atomic nft transaction).
    systemd.service(
        name=f"Load the changed ruleset into {layout.FIREWALL_TABLE}",
        service=f"{layout.FIREWALL_UNIT}.service",
        reloaded=True,
        _if=lambda: rules.did_change() and not started.did_change(),
    )
    return done
