"""Small programs the facts run on the host with its own ``python3`` (read by ``commands.py``)."""
