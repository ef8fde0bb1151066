"""`bundle exec sidekiq`: an idle long-running process titled like Sidekiq 8 (`ps aux | grep '[s]idekiq 8'`)."""

import os
import signal
import sys
import threading

from . import SIDEKIQ_VERSION, image_version
from .boot import boot_rails
from .db import record_event_with_retry
from .redis import Redis, RedisError

TMP_DIR = "/opt/mastodon/tmp"
# Upstream's config/sidekiq.yml (v4.6.5): the queues and threads when the command line names none.
DEFAULT_CONCURRENCY = 5
DEFAULT_QUEUES = ("default,8", "push,6", "ingress,4", "mailers,2", "pull", "scheduler", "fasp")


class UsageError(Exception):
    pass


def parse_options(argv):
    """
    Sidekiq's command line (lib/sidekiq/cli.rb `parse_options`, OptionParser): `-c/--concurrency INT`
    and `-q/--queue QUEUE[,WEIGHT]`, repeatable; queues named on the command line replace the config
    file's. Any other option is an OptionParser::InvalidOption: Sidekiq prints it and exits 1.
    Returns (concurrency, queues).
    """
    concurrency, queues, rest = None, [], list(argv)
    while rest:
        word = rest.pop(0)
        name, _, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        if name in ("-c", "--concurrency", "-q", "--queue"):
            value = inline or (rest.pop(0) if rest else None)
            if value is None:
                raise UsageError(f"missing argument: {word}")
            if name in ("-c", "--concurrency"):
                if not value.isdigit():
                    raise UsageError(f"invalid argument: {word} {value}")
                concurrency = int(value)
            else:
                queues.append(value)
        else:
            raise UsageError(f"invalid option: {word}")
    return concurrency or DEFAULT_CONCURRENCY, tuple(queues) or DEFAULT_QUEUES


def process_title(concurrency):
    """Sidekiq's process title (lib/sidekiq/launcher.rb): `sidekiq VERSION TAG [BUSY of CONCURRENCY busy]`."""
    return f"sidekiq {SIDEKIQ_VERSION} mastodon [0 of {concurrency} busy]"


def exec_titled(python, argv):
    """Replace the current process so that its command line starts with the Sidekiq process title."""
    try:
        concurrency, _ = parse_options(argv)
    except UsageError as exc:
        print(f"{exc}\n[stand-in] (Sidekiq::CLI#parse_options)", file=sys.stderr, flush=True)
        sys.exit(1)
    os.execv(python, [process_title(concurrency), "-u", "-m", "standin", "sidekiq-run", *argv])


def redis_version(info):
    for line in info.splitlines():
        if line.startswith("redis_version:"):
            return tuple(int(n) for n in line.split(":", 1)[1].strip().split(".")[:3] if n.isdigit())
    return ()


def check_redis(env=None):
    """Sidekiq 8.1.6 lib/sidekiq/cli.rb `run`: `@config.redis_info` before the :startup event (which
    touches the ready file); Redis older than 7.0.0 is refused. Raises RedisError."""
    with Redis(env) as conn:
        info = conn.call("INFO").decode("utf-8", "replace")
    version = redis_version(info)
    if version < (7, 0, 0):
        raise RedisError(
            f"You are connected to Redis {'.'.join(map(str, version))}, Sidekiq requires Redis 7.0.0 or greater"
        )


def heartbeat(stopping):
    """Sidekiq's launcher beats every 10 s; a lost Redis is logged, the process goes on (as Sidekiq's does)."""
    while not stopping.wait(10):
        try:
            with Redis() as conn:
                conn.call("SET", "standin:sidekiq:heartbeat", str(int(__import__("time").time())), "EX", "60")
        except RedisError as exc:
            print(f"ERROR: heartbeat: {exc}", file=sys.stderr, flush=True)


def main(argv):
    boot_rails()
    ready = os.path.join(
        TMP_DIR,
        os.environ.get("MASTODON_SIDEKIQ_READY_FILENAME", "sidekiq_process_has_started_and_will_begin_processing_jobs"),
    )
    stopping = threading.Event()

    def stop(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"INFO: Booted Rails 8.1.3 application in production environment (mastodon stand-in {image_version()})\n"
        f"INFO: Running in ruby 4.0.5, Sidekiq {SIDEKIQ_VERSION}",
        flush=True,
    )
    try:
        check_redis()
    except RedisError as exc:  # bin/sidekiq: `warn e.message`, backtrace, exit 1
        print(f"{exc}\n[stand-in] (Sidekiq::CLI#run, redis_info)", file=sys.stderr, flush=True)
        return 1
    concurrency, queues = parse_options(argv)
    # What this process works, for the tests: Sidekiq's own process record in Redis holds the same
    # (`processes` set, the hash's `info` field: concurrency, queues).
    print(f"INFO: concurrency {concurrency}, queues {' '.join(queues)}", flush=True)
    print("INFO: Starting processing, hit Ctrl-C to stop", flush=True)
    threading.Thread(target=record_event_with_retry, args=("sidekiq-start", image_version()), daemon=True).start()
    try:
        with open(ready, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        print(f"WARN: could not touch {ready}: {exc}", file=sys.stderr, flush=True)
    threading.Thread(target=heartbeat, args=(stopping,), daemon=True).start()
    while not stopping.wait(3600):
        pass
    print("INFO: Shutting down\nINFO: Bye!", flush=True)
    try:
        os.unlink(ready)
    except OSError:
        pass
    return 0
