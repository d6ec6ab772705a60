"""The engine's typed errors. The gRPC server maps each class to a status code in one table (``server.py``);
nothing matches message text."""

from __future__ import annotations


class EngineError(ValueError):
    """Base class: something the engine refuses or cannot do for one request or one call."""


class BadRequest(EngineError):
    """The request itself is malformed or out of range (prompt, sampling values, token ids, names).
    ``param`` names the request field at fault when one is (the gRPC server sends it as trailing metadata,
    so the gateway's 400 can name it too)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class UnknownAdapter(EngineError, KeyError):
    """The request names an adapter the engine does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AdapterExists(EngineError):
    """An adapter of that name is already loaded."""


class AdapterInUse(EngineError):
    """The adapter cannot be removed now: requests waiting for a prefill still need it."""


class EngineStopped(EngineError):
    """The engine no longer takes requests: it is shutting down, or its loop failed and left it inconsistent
    (the worker then exits, so that its supervisor starts a fresh one)."""


class ConfigError(EngineError):
    """An engine configuration that cannot work."""
