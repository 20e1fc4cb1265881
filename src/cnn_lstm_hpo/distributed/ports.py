"""A port to listen on, checked before a server (the dashboard, the storage proxy) starts."""

from __future__ import annotations

import errno
import socket

from ..errors import HPOError


def bindable_port(host: str, port: int) -> int:
    """Fail early, in one line, when the port is taken (and resolve port 0 to a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the servers themselves do: a port left in TIME-WAIT by the last run is free; one that
        # a server listens on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise HPOError(f"port {port} on {host} is already in use; pass another --port") from None
            raise HPOError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
        return probe.getsockname()[1]
