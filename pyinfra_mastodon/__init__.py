"""
pyinfra-mastodon: a pyinfra deploy from bare Ubuntu/Debian servers to running Mastodon instances.

Entry points: ``pyinfra INVENTORY pyinfra_mastodon.deploy.mastodon`` (installed package) or
``deploys/mastodon.py`` (a checkout); the operator tasks are ``pyinfra_mastodon.tasks.*``.
"""

# The one place the version is written: pyproject.toml reads it (setuptools dynamic version).
__version__ = "0.1.0"
