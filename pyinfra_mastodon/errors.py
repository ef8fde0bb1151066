"""Errors that stop a run before any change, with one line naming the host and what is wrong."""

from pyinfra.api.exceptions import PyinfraError


class DeployRefused(PyinfraError):
    """Raised while preparing (before any host is changed): the whole run stops, nothing changes."""
