"""Which Realtime protocol a caller gets: one that refuses overrides when the key's grants do
not allow them (``overrides=no``, :mod:`agent.grants`; a client secret it minted too).

The rule itself is the protocol's (:func:`transports.realtime_requests.override_refusal`,
applied by :class:`~transports.realtime.RealtimeProtocol` made with ``overrides=False`` to every
client event): no code path of the protocol can go around it. Its names are also here for the
routes that check a session given before the connection (a client secret's, a WebRTC offer's).
"""

from __future__ import annotations

from collections.abc import Collection, MutableMapping
from typing import Any

from agent.grants import Grants, caller_of
from transports import realtime_caps as caps
from transports.realtime import RealtimeProtocol
from transports.realtime_conversation import RateLimits
from transports.realtime_events import RealtimeSessionConfig
from transports.realtime_requests import CODE, override_message, spec_override

__all__ = [
    "CODE",
    "LockedProtocol",
    "override_message",
    "protocol_for",
    "realtime_protocol",
    "spec_override",
]


class LockedProtocol(RealtimeProtocol):
    """:class:`RealtimeProtocol` whose client may not override (``overrides=False``)."""

    def __init__(
        self,
        config: RealtimeSessionConfig | None = None,
        *,
        id_seed: str | None = None,
        max_message_chars: int = caps.MAX_MESSAGE_BYTES,
        voices: Collection[str] | None = None,
        rate_limits: RateLimits | None = None,
    ) -> None:
        super().__init__(
            config,
            id_seed=id_seed,
            max_message_chars=max_message_chars,
            voices=voices,
            rate_limits=rate_limits,
            overrides=False,
        )


def protocol_for(grants: Grants) -> type[RealtimeProtocol]:
    """The protocol for a Realtime call with ``grants``: one that refuses overrides when they
    do not allow them."""
    return RealtimeProtocol if grants.overrides else LockedProtocol


def realtime_protocol(scope: MutableMapping[str, Any]) -> type[RealtimeProtocol]:
    """:func:`protocol_for` the caller of the request ``scope``."""
    return protocol_for(caller_of(scope).grants)
