"""`bundle exec sidekiq`: an idle long-running process titled like Sidekiq 8 (`ps aux | grep '[s]idekiq 8'`)."""

import os
import signal
import sys
import threading

from . import SIDEKIQ_VERSION, image_version
from .boot import boot_rails
from .db import record_event_with_retry

TMP_DIR = "/opt/mastodon/tmp"
PROCESS_TITLE = f"sidekiq {SIDEKIQ_VERSION} mastodon [0 of 5 busy]"


def exec_titled(python, argv):
    """Replace the current process so that its command line starts with the Sidekiq process title."""
    os.execv(python, [PROCESS_TITLE, "-u", "-m", "standin", "sidekiq-run", *argv])


def main(argv):
    boot_rails()
    ready = os.path.join(TMP_DIR, os.environ.get(
        "MASTODON_SIDEKIQ_READY_FILENAME", "sidekiq_process_has_started_and_will_begin_processing_jobs"))
    stopping = threading.Event()

    def stop(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"INFO: Booted Rails 8.1.3 application in production environment (mastodon stand-in {image_version()})\n"
          f"INFO: Running in ruby 4.0.5, Sidekiq {SIDEKIQ_VERSION}\nINFO: Starting processing, hit Ctrl-C to stop",
          flush=True)
    threading.Thread(target=record_event_with_retry, args=("sidekiq-start", image_version()), daemon=True).start()
    try:
        with open(ready, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        print(f"WARN: could not touch {ready}: {exc}", file=sys.stderr, flush=True)
    while not stopping.wait(3600):
        pass
    print("INFO: Shutting down\nINFO: Bye!", flush=True)
    try:
        os.unlink(ready)
    except OSError:
        pass
    return 0
