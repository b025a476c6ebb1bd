"""``voxline call``: play a WAV file to a running server as a caller would, and record the reply.

The file (a PCM WAV of any sample width, channel count and rate, or any audio FFmpeg reads) is
decoded by :func:`pipeline.media.decode_audio`: mixed down to mono and resampled to the
protocol's rate (16 kHz native, 24 kHz realtime). It is streamed in 20 ms frames at real-time
pace by :mod:`agent.caller`, then silence, as a phone line does. A greeting, if the agent has
one, is let to play out first, so the caller does not talk over it. Once the reply to the
caller's speech has ended, its audio is written to a WAV file; every turn event is printed as
a line as it arrives, and the latency last.

Usage errors (a WAV that cannot be read, a malformed URL, nothing listening there, no session
opened) are one line on stderr and exit status 2; no reply in time is exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import numpy as np
import websockets

from agent.caller import Caller, Reply, Utterance, call
from agent.caller_audio import read_wav, write_wav
from agent.caller_wires import NATIVE_RATE, REALTIME_RATE
from pipeline.errors import ClientError
from pipeline.events import Pcm

__all__ = ["add_parser", "read_wav", "run"]  # read_wav: how the command reads its --wav

TRAILING_SILENCE_S = 1.5

HELP = """\
Stream a WAV file in real time to a running Voxline server, print the transcript and turn
events, and write the reply to a WAV file. Latency: on the native protocol the server's
per-stage `turn.latency` is printed as it arrives; on both protocols the latency measured
here is printed last: from sending the frame holding the caller's last loud sample to the
arrival of the reply's first audio (on --realtime this is the only measure: the Realtime API
has no latency event).
"""


def add_parser(commands: Any) -> None:
    """Add ``call`` to the CLI's subcommands (``argparse``'s ``_SubParsersAction``)."""
    parser = commands.add_parser(
        "call", help="play a WAV file to a running server", description=HELP
    )
    parser.add_argument("--wav", required=True, type=Path, help="what the caller says (PCM WAV)")
    parser.add_argument(
        "--url", required=True, help="the server: ws://HOST:PORT (or an endpoint's whole URL)"
    )
    parser.add_argument(
        "--realtime", action="store_true", help="speak the OpenAI Realtime protocol (/v1/realtime)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("reply.wav"), help="the reply audio (default: reply.wav)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the reply to end after the caller's audio (default: 30)",
    )
    parser.add_argument(
        "--greeting-wait",
        type=float,
        default=3.0,
        help="native: seconds to wait for a greeting to start, which then plays out before the"
        " caller speaks (default: 3; 0: speak at once)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        check_url(args.url)
        speech, _ = read_wav(args.wav, REALTIME_RATE if args.realtime else NATIVE_RATE)
        return anyio.run(place_call, args, speech)
    except ClientError as error:
        return fail(str(error))
    except OSError as error:  # refused, unreachable, no such host
        return fail(f"cannot reach {args.url}: {error.strerror or error}")
    except TimeoutError:
        return fail(f"{args.url} did not answer")
    except (websockets.InvalidURI, websockets.InvalidHandshake) as error:
        return fail(f"{args.url}: {error}")


def fail(message: str) -> int:
    print(f"voxline call: {message}", file=sys.stderr)
    return 2


def check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a bad port
    except ValueError as error:
        raise ClientError(f"malformed URL {url!r}: {error}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ClientError(f"malformed URL {url!r}: expected ws://HOST:PORT")


async def place_call(args: argparse.Namespace, speech: Pcm) -> int:
    printer = EventPrinter()
    async with call(args.url, realtime=args.realtime, listener=printer) as caller:
        await wait_for_greeting(caller, args.greeting_wait, args.timeout)
        seen = caller.latest()
        silence = np.zeros(round(TRAILING_SILENCE_S * caller.rate), dtype=np.int16)
        spoken = caller.speak(Utterance.of(args.wav.name, np.concatenate([speech, silence])))
        await caller.wait(spoken.done.is_set, len(speech) / caller.rate + 10 + args.timeout)

        def answers() -> list[Reply]:
            return [r for g, r in sorted(caller.replies.items()) if g > seen]

        await caller.wait(lambda: bool(answers()) and all(r.over for r in answers()), args.timeout)
        if not args.realtime:  # the server's latency report follows the end of the reply
            await caller.wait(lambda: all(r.latency or r.interrupted for r in answers()), 2.0)
    replies = [r for r in answers() if r.audio]
    if not replies:
        print(f"voxline call: no reply within {args.timeout:g} s", file=sys.stderr)
        return 1
    first = replies[0].frames[0][0]
    print(
        f"latency: {(first - spoken.end_sent) * 1000:.0f} ms from the end of the caller's speech"
        " to the first reply audio (measured here)"
    )
    audio = np.frombuffer(b"".join(r.audio for r in replies), dtype="<i2")
    args.out.write_bytes(write_wav(audio, caller.rate))
    seconds = sum(len(r.audio) for r in replies) / 2 / caller.rate
    print(f"reply: {seconds:.2f} s of audio written to {args.out}")
    return 0


async def wait_for_greeting(caller: Caller, within: float, at_most: float) -> None:
    """Let a greeting that starts within ``within`` seconds play out (for ``at_most`` s)."""
    if not caller.wire.greets:
        return
    if within > 0 and await caller.wait(lambda: bool(caller.replies), within):
        await caller.wait(lambda: all(r.over for r in caller.replies.values()), at_most)


class EventPrinter:
    """Each transcript and turn event as one line on stdout (either protocol's events)."""

    def __init__(self) -> None:
        self._text: dict[int, str] = {}  # native: the agent's text so far, per generation

    def __call__(self, event: dict[str, Any]) -> None:
        line = self.describe(event)
        if line is not None:
            print(line, flush=True)

    def describe(self, event: dict[str, Any]) -> str | None:
        match event.get("type"):
            case "session.started" | "session.created" as kind:
                protocol = "native" if kind == "session.started" else "realtime"
                return f"connected ({protocol})"
            case "speech.started" | "speech.stopped" as kind:
                return f"{kind.replace('.', ' ')} at {event['at_ms'] / 1000:.2f} s"
            case "input_audio_buffer.speech_started":
                return f"speech started at {event['audio_start_ms'] / 1000:.2f} s"
            case "input_audio_buffer.speech_stopped":
                return f"speech stopped at {event['audio_end_ms'] / 1000:.2f} s"
            case "transcript.final" | "conversation.item.input_audio_transcription.completed":
                return f"caller: {event.get('text', event.get('transcript', ''))}"
            case "agent.text":
                generation = event["generation"]
                self._text[generation] = self._text.get(generation, "") + event["delta"]
            case "audio.end":
                text = self._text.pop(event["generation"], "")
                cut = " (interrupted)" if event["interrupted"] else ""
                return f"agent [{event['generation']}]: {text}{cut}"
            case "response.output_audio_transcript.done":
                return f"agent: {event['transcript']}"
            case "interrupted":
                return (
                    f"interrupted [{event['generation']}] after {event['played_ms']} ms;"
                    f" heard: {event['heard_text']!r}"
                )
            case "response.done" if event["response"].get("status") == "cancelled":
                details = event["response"].get("status_details") or {}
                return f"interrupted ({details.get('reason')})"
            case "turn.latency":
                stages = ", ".join(
                    f"{name.removesuffix('_ms')} {value:.0f} ms"
                    for name, value in event["latency_ms"].items()
                )
                return f"latency [{event['generation']}]: {stages} (server)"
            case "error":
                error = event.get("error", event)  # realtime nests it
                return f"error {error.get('code')}: {error.get('message')}"
            case "session.ended":
                return f"call ended: {event['reason']}"
        return None
