"""What every transport protocol returns for bad peer input ("their error").

:class:`PeerError` is an event, never raised: a protocol that meets a message it cannot take
returns one to the session, for its logs and metrics, and the connection goes on. Whether the
peer hears about it is the protocol's business: the native and realtime protocols have already
queued an ``error`` event with the same code; Twilio has no error message, so nothing is sent.
"""

from __future__ import annotations

import msgspec

__all__ = ["LANGUAGE_WITHOUT_ROOM", "PeerError"]

#: a call that names the language it speaks but no room (an interpreter's two-party room,
#: agent/rooms.py): refused by every transport that takes both
LANGUAGE_WITHOUT_ROOM = "language: is for a room only (name the room too)"


class PeerError(msgspec.Struct, frozen=True):
    """The peer sent something wrong: ``code`` names the problem, ``message`` describes it."""

    code: str
    message: str
