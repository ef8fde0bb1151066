"""The HTTP server loop shared by the puma and streaming stand-ins."""

import os
import signal
import sys
import threading
from http.server import ThreadingHTTPServer

from . import image_version
from .db import record_event_with_retry


def serve(handler, default_port: int, started: str, stopping: str, event: str) -> int:
    """
    Listen on $BIND:$PORT until SIGTERM/SIGINT (exit 0 at once, like a container should), after
    printing ``started`` (formatted with bind, port, env) and recording ``event`` in the database.
    """
    env = dict(os.environ)
    bind = env.get("BIND", "127.0.0.1")
    port = int(env.get("PORT", str(default_port)))
    server = ThreadingHTTPServer((bind, port), handler)
    server.daemon_threads = True
    server.env = env

    def stop(signum, frame):
        sys.stdout.write(stopping)
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(started.format(bind=bind, port=port, env=env, version=image_version()), flush=True)
    threading.Thread(target=record_event_with_retry, args=(event, image_version()), daemon=True).start()
    server.serve_forever()
    return 0
