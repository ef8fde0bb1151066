"""
Stage 11: the maintenance timers (``layout.TIMERS``): systemd units for those turned on, none for
the others. Each job runs under the host's lock (``sh/run-job.sh``), so it never overlaps a deploy.
"""

from __future__ import annotations

from pyinfra.operations import systemd

from .. import desired, layout
from ..operations import remove_timers, systemd_reload
from . import Outcome, create_folder, put_file


def apply(cfg, done: Outcome) -> Outcome:
    """Install, update or remove each timer; nothing at all while none is turned on."""
    wanted = desired.wanted_timers(cfg)
    for folder in desired.timer_folders(cfg):
        create_folder(folder)
    off = [t.unit for t in layout.TIMERS if t not in wanted]
    changed = [remove_timers(name="Remove the maintenance timers turned off", units=off)]
    for file in desired.timer_files(cfg):
        changed.append(put_file(file))
    systemd_reload(name="Reload systemd after a timer's units changed", after=changed)
    for timer in wanted:
        systemd.service(
            name=f"Enable and start {timer.unit}.timer",
            service=f"{timer.unit}.timer",
            running=True,
            enabled=True,
        )
    return done
