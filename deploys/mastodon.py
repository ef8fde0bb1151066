"""
Deploy Mastodon: ``pyinfra inventories/prod.py deploys/mastodon.py``.

Everything lives in the ``pyinfra_mastodon`` package; this file is only the entry point.
"""

from pyinfra_mastodon.deploy import mastodon

mastodon()
