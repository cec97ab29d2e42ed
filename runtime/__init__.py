"""The runtime side: wire formats, storage, the client, aliases and the runtime service."""

__version__ = "0.1.0"
