"""The hub's WebSocket server: connections, authentication and remote workers."""

from novelgen_desktop.server.hub import Hub, Session
from novelgen_desktop.server.remote_worker import RemoteWorker

__all__ = ["Hub", "RemoteWorker", "Session"]
