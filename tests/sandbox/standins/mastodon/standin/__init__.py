"""Test double of the Mastodon container images (ghcr.io/mastodon/mastodon and mastodon-streaming).

Only the interface the pyinfra-mastodon deploy relies on is emulated; see ../README.md.
"""

import os
import re

# The image's version is baked at build time (Dockerfile `ARG VERSION`) into this file.
VERSION_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "VERSION")

SIDEKIQ_VERSION = "8.1.6"  # Sidekiq pinned by Mastodon 4.6.x (Gemfile.lock)


def image_version():
    """The image tag this stand-in was built for, e.g. ``v4.6.5``."""
    try:
        with open(VERSION_FILE, encoding="utf-8") as fh:
            value = fh.read().strip()
    except OSError:
        value = ""
    return value or "v0.0.0"


def plain_version(version=None):
    """``v4.6.5`` -> ``4.6.5`` (what Mastodon reports in /api/v1/instance)."""
    version = image_version() if version is None else version
    return version[1:] if version.startswith("v") else version


def version_tuple(version):
    """``v4.6.5`` -> ``(4, 6, 5)``; suffixes such as ``-beta.1`` are ignored."""
    nums = re.findall(r"\d+", plain_version(version).split("-")[0])
    return tuple(int(n) for n in nums[:3]) + (0,) * (3 - len(nums[:3]))
