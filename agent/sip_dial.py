"""Outbound SIP calls: ``voxline dial sip:user@host[:port][;transport=tcp]`` and the
:class:`Dialing` setup.

:class:`Dialing` is the outbound :class:`~agent.sip_call.CallSetup` of a
:class:`~agent.sip_call.SipCall`: our offer (PCMU, PCMA, telephone-event; one RTP port of
``server.sip.rtp_ports``) in an INVITE; 180/183 are logged; the 2xx's answer
(:func:`~transports.sip.sdp.accept_answer`) starts the call (the user agent has sent the ACK)
and the agent speaks first, its greeting, exactly as on an inbound call. A final error (busy,
declined, not found, a digest challenge we cannot answer) or no answer in
``server.sip.no_answer_s`` (the user agent CANCELs: 408) is the call's :attr:`failure`. An
answer with no codec we offered is hung up at once (BYE). A call placed for an API key
(``POST /v1/calls``) holds a place among that key's calls (its :attr:`Dialing.claim`) until it
is over, answered or not: :meth:`Dialing.close` gives it back.

The command (:func:`run`) loads the agent's models as ``voxline serve`` does, binds one SIP
endpoint of the target's transport (UDP; TCP for ``;transport=tcp``, RFC 3263 §4.1): the first
``server.sip.listen`` address of that transport, else this host's address toward the callee on
a free port; places the call and waits for its end. Over TCP the INVITE opens a connection to
the callee, and the dialog's requests both ways go on it (agent/sip_tcp.py). Ctrl-C or
SIGTERM ends the call: a CANCEL while it rings (whose 487 is awaited a moment, so it is
ACKed), a BYE once answered. It prints one line for each step and exits 0 after an answered
call, 1 when the call failed (the SIP status and reason on stderr), 2 for a usage error, 130
when interrupted first.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from typing import Any

import anyio

from agent.config import AgentConfig, load_config
from agent.grants import Claim
from agent.sip_call import SipCall
from agent.sip_server import RtpPorts, ServerAdmission, SipEndpoint, parse_listen
from pipeline.errors import ConfigError
from transports.sip.events import CallAnswered, CallFailed, CallProgress
from transports.sip.events import CallEnded as DialogEnded
from transports.sip.sdp import Negotiated, SdpError, accept_answer, make_offer, parse_sdp
from transports.sip.transaction import Address
from transports.sip.uri import Target, UriError, parse_target

__all__ = ["Dialing", "add_parser", "run"]

log = logging.getLogger("voxline.sip")

HELP = """\
Call a SIP phone (sip:user@host[:port]; ;transport=tcp at its end: over TCP) and run the agent
on the call: it speaks first (its greeting). Exit 0 after an answered call, 1 when it failed
(busy, declined, no answer: the SIP status is printed), 2 for a usage error, 130 when
interrupted before the answer (CANCEL sent).
"""

#: after our CANCEL, how long the 487 is awaited (to ACK it) before the endpoint closes
CANCEL_WAIT_S = 4.0


class Dialing:
    """The setup of our call to ``target`` at ``peer`` (see the module doc)."""

    dialled = ""  # we place the call

    def __init__(
        self,
        target: Target,
        peer: Address,
        no_answer: float,
        *,
        caller: str | None = None,
        session_id: str | None = None,
        claim: Claim | None = None,
    ) -> None:
        self.target = target
        self.peer = peer
        self.no_answer = no_answer
        self.caller = caller  # our From (a SIP URI; None: the endpoint's own)
        self.session_id = session_id
        #: the call's place among its placer's key's calls (``max_sessions``), held from
        #: ``POST /v1/calls`` until :meth:`close`; None: no key counts it (``voxline dial``)
        self.claim = claim
        self.ringing = False  # our INVITE has no final response yet

    async def negotiate(self, call: SipCall, port: int) -> Negotiated | None:
        call.peer_host = self.peer[0]
        offer = make_offer(call.origin(), port)
        self.ringing = True
        await call.signalling.invite(
            call, self.target.uri, self.peer, bytes(offer), self.no_answer, self.caller
        )
        log.info("sip call %s: calling", call.name)
        while (event := await call.next_setup_event()) is not None:
            match event:
                case CallProgress(status=status):
                    log.info("sip call %s: %d %s", call.name, status, "ringing")
                case CallAnswered(answer=body):
                    self.ringing = False
                    answer = parse_sdp(body)
                    agreed = (
                        answer if isinstance(answer, SdpError) else accept_answer(offer, answer)
                    )
                    if isinstance(agreed, SdpError):  # finish hangs up (BYE)
                        call.reason, call.failure = "bad_answer", (488, agreed.reason)
                        return None
                    return agreed
                case CallFailed(status=status, reason=reason):
                    self.ringing = False
                    call.reason, call.failure = f"failed_{status}", (status, reason)
                    return None
                case DialogEnded(reason=reason):
                    call.reason = reason
                    return None
                case _:
                    pass
        call.reason = call.reason or "ended"
        return None

    async def refuse(self, call: SipCall, status: int, reason: str) -> None:
        log.info("sip call out not placed (%d): %s", status, reason)
        call.reason, call.failure = f"refused_{status}", (status, reason)

    async def close(self, call: SipCall) -> None:
        try:
            if not self.ringing:
                return
            with anyio.move_on_after(CANCEL_WAIT_S):  # the CANCEL's 487, so it is ACKed
                while (event := await call.next_setup_event()) is not None:
                    if isinstance(event, CallFailed):
                        return
        finally:  # every call's finish closes its setup: the key's place is given back once
            if self.claim is not None:
                self.claim.release()


# -- voxline dial ---------------------------------------------------------------------------------


def add_parser(commands: Any) -> None:
    """Add ``dial`` to the CLI's subcommands (``argparse``'s ``_SubParsersAction``)."""
    parser = commands.add_parser(
        "dial",
        help="call a SIP phone and run the agent on the call",
        description=HELP,
    )
    parser.add_argument("target", help="whom to call: sip:user@host[:port][;transport=tcp]")
    parser.add_argument("--config", default="configs/default.yaml", help="agent file")
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds to ring before giving up (default: the config's server.sip.no_answer_s)",
    )


def run(args: argparse.Namespace) -> int:
    target = parse_target(args.target)
    if isinstance(target, UriError):
        return _usage(target.reason)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        return _usage(f"{args.config}: {error}")
    if args.timeout is not None and args.timeout <= 0:
        return _usage("--timeout must be above 0")
    no_answer = args.timeout or config.server.sip.no_answer_s
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return anyio.run(place_call, config, target, no_answer)
    except OSError as error:
        return _usage(f"{target.host}: {error.strerror or error}")


def _usage(message: str) -> int:
    print(f"voxline dial: {message}", file=sys.stderr)
    return 2


async def resolve(target: Target) -> Address:
    """The IPv4 address and port of ``target``'s host (``OSError`` when it has none)."""
    kind = socket.SOCK_STREAM if target.transport == "tcp" else socket.SOCK_DGRAM
    found = await anyio.getaddrinfo(target.host, target.port, family=socket.AF_INET, type=kind)
    if not found:
        raise OSError(f"no IPv4 address for {target.host}")
    host, port = found[0][4][:2]
    return str(host), int(port)


def local_host(config: AgentConfig, peer: Address, transport: str = "udp") -> tuple[str, int]:
    """Where our SIP endpoint binds: the first listen address of ``transport``, else this
    host's address on the route to ``peer`` and a free port."""
    for listen in config.server.sip.listen:
        kind, host, port = parse_listen(listen)
        if kind == transport:
            return host, port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(peer)  # no datagram is sent: the kernel only picks the route
        return str(probe.getsockname()[0]), 0


async def place_call(config: AgentConfig, target: Target, no_answer: float) -> int:
    from agent.server import ServerState  # the server's own loading, not a copy

    peer = await resolve(target)
    host, port = local_host(config, peer, target.transport)
    state = ServerState(config)
    await state.load()
    if state.failed:
        print(f"voxline dial: the models did not load: {state.failed}", file=sys.stderr)
        return 2
    try:
        sip = config.server.sip
        admission, ports = ServerAdmission(state), RtpPorts(*sip.rtp_ports)
        endpoint = SipEndpoint(host, port, sip, admission, ports, transport=target.transport)
        async with anyio.create_task_group() as tg:
            await tg.start(endpoint.run)
            call = endpoint.dial(Dialing(target, peer, no_answer))
            interrupted = False

            async def on_signal() -> None:
                nonlocal interrupted
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        interrupted = True
                        call.end("interrupted")

            tg.start_soon(on_signal)
            where = f"{target.transport}:{endpoint.host}:{endpoint.port}"
            print(f"calling {target.uri} from {where}", flush=True)
            await call.done.wait()
            tg.cancel_scope.cancel()
    finally:
        await state.close()
    return report(target, call, interrupted)


def report(target: Target, call: SipCall, interrupted: bool) -> int:
    """The last line, and the exit status."""
    if call.answered:
        print(f"call ended: {call.reason}", flush=True)
        return 0
    if interrupted:
        print(f"voxline dial: {target.uri}: cancelled", file=sys.stderr)
        return 130
    if call.failure is not None:
        status, reason = call.failure
        print(f"voxline dial: {target.uri}: {status} {reason}", file=sys.stderr)
        return 1
    print(f"voxline dial: {target.uri}: no call ({call.reason})", file=sys.stderr)
    return 1
