"""Every exception Voxline raises on purpose, in one tree.

::

    VoxlineError
    ├── ClientError              the peer or the developer erred (4xx, an ``error`` event)
    │   ├── ProtocolError        a malformed or out-of-order message from a peer
    │   ├── InvalidAudio         wrong rate, odd byte count, oversized frame, undecodable file
    │   ├── ConfigError          a broken config file: ``path`` names the key, ``reason`` says why
    │   └── InvalidSSML          unusable SSML: ``line`` and ``column`` say where, ``reason`` why
    └── ServerError              our side failed (5xx, the session closes; details stay in the log)
        ├── Overloaded           an executor's queue is full: admission control refused the work
        ├── ExecutorClosed       work submitted to an executor that has shut down
        ├── StageFailed          a pipeline stage raised; wraps the original exception
        └── ModelError           a model could not be loaded or failed while running

``ClientError`` messages are safe to send to the peer. ``ServerError`` messages are not: send a
generic message and log the details.
"""

from __future__ import annotations


class VoxlineError(Exception):
    """Base class of every exception Voxline raises on purpose."""


class ClientError(VoxlineError):
    """The peer or the developer did something wrong; the message may be shown to them."""


class ProtocolError(ClientError):
    """A malformed or out-of-order message from a peer."""


class InvalidAudio(ClientError):
    """Audio that Voxline cannot accept (rate, size, encoding)."""


class ConfigError(ClientError):
    """A config file that does not decode; ``path`` is the key (``$.dialogue.intents[2].name``)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class InvalidSSML(ClientError):
    """SSML that cannot be spoken: ``line`` and ``column`` (1-based) locate it, ``reason`` says
    why (malformed XML, a forbidden construct such as a DTD, a limit, an unknown element or value).
    """

    def __init__(self, reason: str, line: int, column: int) -> None:
        super().__init__(f"SSML line {line}, column {column}: {reason}")
        self.reason = reason
        self.line = line
        self.column = column


class ServerError(VoxlineError):
    """Our side failed. Do not send the message to the peer."""


class Overloaded(ServerError):
    """Admission control refused work because a queue is full."""

    def __init__(self, resource: str, depth: int, limit: int) -> None:
        super().__init__(f"{resource} is overloaded: {depth} requests queued (limit {limit})")
        self.resource = resource
        self.depth = depth
        self.limit = limit


class ExecutorClosed(ServerError):
    """Work was submitted to an executor that has shut down."""


class StageFailed(ServerError):
    """A pipeline stage raised; ``__cause__`` holds the original exception."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"stage {stage!r} failed")
        self.stage = stage


class ModelError(ServerError):
    """A model could not be loaded, or failed while running."""
