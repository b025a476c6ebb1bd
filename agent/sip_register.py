"""What :class:`~agent.sip_server.SipEndpoint` needs to register (``server.sip.register``):
the registrar's address, the :class:`~transports.sip.registration.Registration` for the
endpoint's socket, and the log lines its events make. The protocol is all in
:mod:`transports.sip.registration`; the endpoint feeds it.

A registrar whose host does not resolve is tried again with the same backoff the state
machine uses for a failed REGISTER (5 s, doubling, at most 5 minutes), each try logged.
"""

from __future__ import annotations

import logging
import socket

import anyio

from agent.config.schema import SipRegister
from transports.sip.digest import Credentials
from transports.sip.registration import (
    Registered,
    Registration,
    RegistrationEvent,
    RegistrationFailed,
    Unregistered,
)
from transports.sip.transaction import Address
from transports.sip.uri import Target, UriError, parse_target

__all__ = ["UNREGISTER_WAIT_S", "log_registration", "new_registration", "resolve_registrar"]

log = logging.getLogger("voxline.sip")

#: at shutdown, how long the un-REGISTER may take before the socket closes anyway
UNREGISTER_WAIT_S = 4.0
_RETRY_S, _MAX_RETRY_S = 5.0, 300.0


def _target(uri: str) -> Target:
    target = parse_target(uri)
    if isinstance(target, UriError):  # the config's pattern lets only sip: URIs through
        raise ValueError(f"server.sip.register: {target.reason}")
    return target


async def resolve_registrar(config: SipRegister) -> Address:
    """The registrar's IPv4 address and port, tried until its host resolves."""
    target = _target(config.registrar)
    delay = _RETRY_S
    while True:
        try:
            found = await anyio.getaddrinfo(
                target.host, target.port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
            return str(found[0][4][0]), target.port
        except OSError as error:
            log.warning(
                "sip: registrar %s does not resolve (%s); retrying in %.0f s",
                target.host,
                error,
                delay,
            )
            await anyio.sleep(delay)
            delay = min(2 * delay, _MAX_RETRY_S)


def new_registration(
    config: SipRegister,
    peer: Address,
    host: str,
    port: int,
    credentials: Credentials | None,
) -> Registration:
    """The registration of ``config.aor`` with Contact ``sip:USER@host:port``."""
    user = _target(config.aor).user or "voxline"
    return Registration(
        config.registrar,
        config.aor,
        f"<sip:{user}@{host}:{port}>",
        peer,
        via=f"{host}:{port}",
        expires=config.expires,
        credentials=credentials,
        retry_s=_RETRY_S,
        max_retry_s=_MAX_RETRY_S,
    )


def log_registration(events: list[RegistrationEvent], registrar: str) -> None:
    for event in events:
        match event:
            case Registered(expires=expires):
                log.info("sip: registered at %s for %d s", registrar, expires)
            case RegistrationFailed(status=status, reason=reason, retry_in=retry_in):
                hint = " (check server.sip.credentials)" if status in (401, 403, 407) else ""
                log.warning(
                    "sip: registration at %s failed: %d %s%s; retrying in %.0f s",
                    registrar,
                    status,
                    reason[:80],
                    hint,
                    retry_in,
                )
            case Unregistered(status=status):
                log.info("sip: unregistered at %s (%d)", registrar, status)
