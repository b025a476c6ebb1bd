"""A call on a line without echo cancellation, end to end: the real server and a real
`websockets` client that plays the reply and sends it back 150 ms later, 12 dB quieter, mixed
with its own speech (as a speakerphone with echo cancellation off does).

The bot must not be interrupted by its own voice, and a caller who speaks as soon as the reply
(and its echo) has ended must be heard: the echo's stretch of "speech" is not glued to theirs.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from agent.caller import Utterance, call
from tests.audio import espeak
from tests.server import RunningServer, running_server

ECHO = (150.0, -12.0)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.mark.anyio
async def test_the_bots_echo_neither_interrupts_it_nor_swallows_the_next_question(
    server: RunningServer,
) -> None:
    question = Utterance.of("What can you do?", espeak("What can you do?"))
    with anyio.fail_after(120):
        async with call(server.ws, ECHO) as caller:
            assert await caller.wait(lambda: any(r.ended for r in caller.replies.values()), 60)
            answers = []
            for _ in range(2):
                # the caller speaks the moment the echo of the last reply has died away
                assert await caller.wait(lambda: not caller.echoing, 10)
                seen = caller.latest()
                caller.speak(question)

                def answered(seen: int = seen) -> bool:
                    replies = [r for g, r in caller.replies.items() if g > seen]
                    return any(r.ended or r.interrupted for r in replies)

                assert await caller.wait(answered, 40), "the question was not answered"
                answers.append(caller.replies[caller.latest()])
    assert all(a.interrupted is None for a in answers), [a.interruption for a in answers]
    assert all("message" in a.text for a in answers)  # the default agent's `help` reply
    finals = [e["text"].lower() for e in caller.events if e["type"] == "transcript.final"]
    assert sum("what can you do" in f for f in finals) == 2, finals
    interrupted = [e for e in caller.events if e["type"] == "interrupted"]
    assert not interrupted, (
        f"interrupted by rule {[e.get('rule') for e in interrupted]}: {interrupted}"
    )
    # the echo was heard as speech, and recognised as the bot's (notices, not errors)
    notices = [e for e in caller.errors() if e["code"].startswith("ignored.")]
    assert any(e["code"] == "ignored.echo" for e in notices)
    assert len(notices) == len(caller.errors())
