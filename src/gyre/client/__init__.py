"""The SDK: ``gyre.connect()`` (explicit client over local stores or a server) and the
fluent layer (``gyre.start_run()``) that delegates to a default client."""

from gyre.client.client import Client, connect
from gyre.client.run import ActiveRun

__all__ = ["ActiveRun", "Client", "connect"]
