"""A local stand-in for the Azure Functions host (development and tests only).

Functions Core Tools cannot be installed everywhere; this serves the functions a v2
app indexes, over HTTP on 127.0.0.1 and from Storage queues, as the host would.
"""

from .host import LocalHost

__all__ = ["LocalHost"]
