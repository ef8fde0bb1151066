"""What every Rails process of the real image checks while booting (config/initializers)."""

import os
import sys
import time

AR_KEYS = (
    "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
    "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
    "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
)

AR_MISSING_MESSAGE = """
Mastodon now requires that these variables are set:

  - ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY
  - ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT
  - ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY

Run `bin/rails db:encryption:init` to generate new secrets and then assign the environment variables.
Do not change the secrets once they are set, as doing so may cause data loss and other issues that will be difficult or impossible to recover from.
"""

AR_TEST_VALUE_MESSAGE = """It looks like you are trying to run Mastodon in production with a {key} value from the test environment.
Please generate fresh secrets using `bin/rails db:encryption:init` and use them instead.
"""

SECRET_KEY_BASE_MESSAGE = (
    "Missing `secret_key_base` for 'production' environment, set this string with "
    "`bin/rails credentials:edit` (ArgumentError)"
)

# config/initializers/deprecations.rb (v4.6.5): `abort message` when REDIS_NAMESPACE is set at all.
REDIS_NAMESPACE_MESSAGE = """ERROR: the REDIS_NAMESPACE environment variable is no longer supported, and a migration is required.

Please see documentation at https://github.com/mastodon/redis_namespace_migration
"""

REDIS_NAMESPACE_ES_MESSAGE = """
In addition, as REDIS_NAMESPACE is being used as a prefix for Elasticsearch, please do not forget to set ES_PREFIX to "{namespace}".
"""

LOCAL_DOMAIN_MESSAGE = (
    "[stand-in] LOCAL_DOMAIN is not set. Real Mastodon silently falls back to localhost:$PORT "
    "(config/initializers/1_hosts.rb), which is always a deployment error; the stand-in refuses to boot."
)


def boot_errors(env):
    """Return the abort message a Rails process would print with this environment, or None."""
    for key in AR_KEYS:
        if not env.get(key, "").strip():
            return AR_MISSING_MESSAGE
    if "REDIS_NAMESPACE" in env:  # Ruby's `if ENV['REDIS_NAMESPACE']`: "" is truthy too
        return redis_namespace_message(env)
    if env.get("RAILS_ENV", "production") == "production":
        for key in AR_KEYS:
            if env[key].strip().endswith("DO_NOT_USE_IN_PRODUCTION"):
                return AR_TEST_VALUE_MESSAGE.format(key=key)
        if not env.get("SECRET_KEY_BASE", "").strip():
            return SECRET_KEY_BASE_MESSAGE
    if not env.get("LOCAL_DOMAIN", "").strip():
        return LOCAL_DOMAIN_MESSAGE
    return None


def redis_namespace_message(env):
    es_configured = (
        env.get("ES_ENABLED") == "true"
        or env.get("ES_HOST", "localhost") != "localhost"
        or env.get("ES_PORT", "9200") != "9200"
        or env.get("ES_PASS", "password") != "password"
    )
    message = REDIS_NAMESPACE_MESSAGE
    if es_configured and not env.get("ES_PREFIX"):
        message += REDIS_NAMESPACE_ES_MESSAGE.format(namespace=env["REDIS_NAMESPACE"])
    return message


def boot_command(env=None):
    """The command line being booted, as the shim received it (``bundle exec rails db:prepare``)."""
    env = os.environ if env is None else env
    return env.get("STANDIN_BOOT_COMMAND") or " ".join(sys.argv)


def record_boot(env):
    """One ``rails-boot`` row in standin_events per Rails boot (best effort: one try, logged on failure)."""
    from . import image_version
    from .db import connect, record_event

    try:
        conn = connect(dict(env, STANDIN_DB_CONNECT_TIMEOUT=env.get("STANDIN_DB_CONNECT_TIMEOUT", "3")))
        try:
            record_event(conn, "rails-boot", image_version(), boot_command(env))
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - counting must never change what the command does
        sys.stderr.write(f"[stand-in] rails-boot not recorded: {exc}\n")


def boot_seconds(env):
    try:
        return max(0.0, float(env.get("STANDIN_BOOT_SECONDS") or 0))
    except ValueError:
        return 0.0


def boot_rails(env=None, count=True):
    """A Rails boot: STANDIN_BOOT_SECONDS of "loading", one ``rails-boot`` event, then the initializers'
    checks, which abort like Ruby's ``abort`` (message on stderr, exit status 1).
    ``count=False`` only checks (the sidekiq stand-in checks before re-executing itself, then boots)."""
    env = os.environ if env is None else env
    if count:
        time.sleep(boot_seconds(env))
        record_boot(env)
    message = boot_errors(env)
    if message:
        sys.stderr.write(message if message.endswith("\n") else message + "\n")
        sys.stderr.flush()
        sys.exit(1)


def skip_post_deployment_migrations(env=None):
    """Mastodon tests presence only: ``SKIP_POST_DEPLOYMENT_MIGRATIONS=false`` or ``=`` still skips."""
    env = os.environ if env is None else env
    return "SKIP_POST_DEPLOYMENT_MIGRATIONS" in env
