"""What every Rails process of the real image checks while booting (config/initializers)."""

import os
import sys

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

LOCAL_DOMAIN_MESSAGE = (
    "[stand-in] LOCAL_DOMAIN is not set. Real Mastodon silently falls back to localhost:$PORT "
    "(config/initializers/1_hosts.rb), which is always a deployment error; the stand-in refuses to boot."
)


def boot_errors(env):
    """Return the abort message a Rails process would print with this environment, or None."""
    for key in AR_KEYS:
        if not env.get(key, "").strip():
            return AR_MISSING_MESSAGE
    if env.get("RAILS_ENV", "production") == "production":
        for key in AR_KEYS:
            if env[key].strip().endswith("DO_NOT_USE_IN_PRODUCTION"):
                return AR_TEST_VALUE_MESSAGE.format(key=key)
        if not env.get("SECRET_KEY_BASE", "").strip():
            return SECRET_KEY_BASE_MESSAGE
    if not env.get("LOCAL_DOMAIN", "").strip():
        return LOCAL_DOMAIN_MESSAGE
    return None


def boot_rails(env=None):
    """Abort like Ruby's ``abort``: message on stderr, exit status 1."""
    message = boot_errors(os.environ if env is None else env)
    if message:
        sys.stderr.write(message if message.endswith("\n") else message + "\n")
        sys.stderr.flush()
        sys.exit(1)


def skip_post_deployment_migrations(env=None):
    """Mastodon tests presence only: ``SKIP_POST_DEPLOYMENT_MIGRATIONS=false`` or ``=`` still skips."""
    env = os.environ if env is None else env
    return "SKIP_POST_DEPLOYMENT_MIGRATIONS" in env
