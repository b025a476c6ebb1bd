"""Scripted conversations through the intent engine: text in, replies and actions out.

The receptionist agent of configs/receptionist.yaml, real sentence embeddings, and a real
local HTTP server as its booking system.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import msgspec
import pytest

from agent.config import load_config
from agent.dialogue.decision import DialogueDecision, EndCall, Transfer
from agent.dialogue.embeddings import SentenceEmbedder
from agent.dialogue.engine import IntentEngine, IntentSession
from tests.dialogue.webhook_server import WebhookServer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TODAY = dt.date(2025, 3, 5)  # a Wednesday


@pytest.fixture
def server() -> Iterator[WebhookServer]:
    with WebhookServer() as running:
        yield running


@asynccontextmanager
async def receptionist(
    embedder: SentenceEmbedder, url: str, timeout_s: float = 4.0
) -> AsyncIterator[IntentSession]:
    config = load_config(CONFIGS / "receptionist.yaml")
    hook = msgspec.structs.replace(config.tools.webhooks[0], url=url, timeout_s=timeout_s)
    tools = msgspec.structs.replace(config.tools, webhooks=(hook,))
    config = msgspec.structs.replace(config, tools=tools)
    async with await IntentEngine.load(config, embedder=embedder) as engine:
        yield engine.conversation(today=TODAY)


async def say(session: IntentSession, *lines: str) -> list[DialogueDecision]:
    return [await session.handle(line, final=True) for line in lines]


@pytest.mark.anyio
async def test_a_booking_given_all_at_once_with_a_correction(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            assert (
                session.opening().text == "Hello, this is Chez Voxline. How can I help you today?"
            )
            start, seating, name, fix, yes = await say(
                session,
                "Hi, I'd like to book a table for four tomorrow at 8pm",
                "inside please",
                "It's Maria Lopez",
                "no, make it three people",
                "yes",
            )
    assert start.intent == "book_table"
    assert start.changes == {"party_size": 4, "date": "2025-03-06", "time": "20:00"}
    assert start.text == (
        "I'd be happy to book a table for you. Would you like to sit inside or on the terrace?"
    )
    assert seating.changes == {"seating": "inside"}
    assert name.stage == "confirming"
    assert name.text == (
        "So that's a table for 4 on Thursday, March 6 at 8 PM, inside, under the name "
        "Maria Lopez. Shall I book it?"
    )
    assert fix.changes == {"party_size": 3}
    assert fix.text.startswith("So that's a table for 3 on Thursday")
    assert fix.stage == "confirming"
    (booked,) = yes.replies
    assert booked.ssml
    assert booked.emotion == "happy"
    assert 'reference is <say-as interpret-as="characters">B-1</say-as>' in booked.text
    assert yes.stage == "idle"
    assert yes.flow is None
    (request,) = server.requests
    assert request["arguments"] == {
        "party_size": 3,
        "date": "2025-03-06",
        "time": "20:00",
        "seating": "inside",
        "name": "Maria Lopez",
    }


@pytest.mark.anyio
async def test_a_booking_slot_by_slot(embedder: SentenceEmbedder, server: WebhookServer) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            turns = await say(
                session,
                "Can I make a reservation?",
                "four",
                "on friday",
                "half past seven",
                "outside",
                "Smith",
                "yes please",
            )
    asked = [turn.replies[-1].text for turn in turns[:6]]
    assert asked == [
        "For how many people?",
        "For which day?",
        "At what time?",
        "Would you like to sit inside or on the terrace?",
        "And what name should I put the booking under?",
        "So that's a table for 4 on Friday, March 7 at 7:30 PM, terrace, under the name Smith. "
        "Shall I book it?",
    ]
    assert [turn.stage for turn in turns] == [*["collecting"] * 5, "confirming", "idle"]
    assert "You're all set" in turns[6].text
    assert server.requests[0]["arguments"]["time"] == "19:30"


@pytest.mark.anyio
async def test_a_bare_no_asks_what_to_change_then_asks_again(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            *_, no, which, new_time = await say(
                session,
                "book a table for 2 tomorrow at 7pm on the terrace under the name Kim",
                "no",
                "the time",
                "9pm",
            )
    assert no.text == "What would you like to change?"
    assert no.stage == "changing"
    assert which.text == "At what time?"
    assert which.changes == {"time": None}
    assert new_time.changes == {"time": "21:00"}
    assert new_time.text.startswith("So that's a table for 2 on Thursday, March 6 at 9 PM")


@pytest.mark.anyio
async def test_questions_in_the_middle_of_a_booking_are_answered_then_it_goes_on(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            _, hours, where = await say(
                session,
                "I'd like to book a table for 2 tomorrow at 8 inside",
                "what time do you close?",
                "where are you located?",
            )
    assert hours.intent == "opening_hours"
    assert hours.text.endswith("last orders at 10. And what name should I put the booking under?")
    assert where.intent == "location"
    assert where.flow == "booking"
    assert where.stage == "collecting"


@pytest.mark.anyio
async def test_values_that_are_not_allowed_are_explained(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            big, ok, early = await say(
                session, "a table for 20 people please", "6", "friday at 7 in the morning"
            )
    assert big.text == (
        "I'd be happy to book a table for you. Sorry, we can seat between 1 and 12 guests at "
        "one table. How many of you will there be?"
    )
    assert big.changes == {}
    assert ok.changes == {"party_size": 6}
    assert early.changes == {"date": "2025-03-07"}
    assert early.text == "We take bookings between noon and 10 PM. What time would suit you?"


@pytest.mark.anyio
async def test_a_big_party_is_transferred_to_the_events_team(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            _, name, after = await say(
                session, "book a table for 10 on friday at 8pm inside", "Jones", "hello?"
            )
    assert name.events == (Transfer(target="events"),)
    assert name.text.startswith("For groups of more than eight")
    assert (name.flow, name.stage) == (None, "idle")  # the flow ends, not the conversation
    assert after.replies  # should the transfer fail, the conversation goes on
    assert server.requests == []


@pytest.mark.anyio
async def test_a_full_slot_is_asked_for_again(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            *_, full, new_time, yes = await say(
                session,
                "a table for 2 tomorrow at 9pm inside, the name is Ada",
                "yes",
                "ok, 8pm then",
                "yes",
            )
    assert full.text == "I'm sorry, we're fully booked at 9 PM on Thursday, March 6. At what time?"
    assert full.changes == {"booking": {"available": False}, "time": None}
    assert new_time.text.startswith("So that's a table for 2 on Thursday, March 6 at 8 PM")
    assert "B-2" in yes.text
    assert [r["arguments"]["time"] for r in server.requests] == ["21:00", "20:00"]


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "timeout_s"), [("/fail", 4.0), ("/hang", 0.2)])
async def test_a_failing_booking_system_means_a_transfer(
    embedder: SentenceEmbedder, server: WebhookServer, path: str, timeout_s: float
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url(path), timeout_s) as session:
            *_, yes = await say(
                session, "a table for 2 tomorrow at 8pm inside, the name is Ada", "yes"
            )
    (result,) = yes.webhooks
    assert not result.ok
    assert yes.changes == {"booking": {"error": result.error}}
    assert yes.replies[0].emotion == "sad"
    assert yes.events == (Transfer(target="front-desk"),)


@pytest.mark.anyio
async def test_unknown_requests_fall_back_then_go_to_a_person(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            turns = await say(
                session,
                "purple elephants dance in the rain",
                "what's the capital of Mongolia",
                "my cat likes jazz",
            )
    assert [t.understood for t in turns] == [False, False, False]
    assert turns[0].text.startswith("Sorry, I didn't get that. I can book a table")
    assert turns[0].events == ()
    assert (
        turns[2].text == "I'm having trouble understanding. Let me put you through to a colleague."
    )
    assert turns[2].events == (Transfer(target="front-desk"),)


@pytest.mark.anyio
async def test_a_misunderstood_answer_in_a_flow_asks_again(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            _, lost, found = await say(
                session, "I want to book a table", "banana umbrella", "two people"
            )
    assert lost.understood is False
    assert lost.text == "Sorry, I didn't catch that. For how many people?"
    assert found.changes == {"party_size": 2}


@pytest.mark.anyio
async def test_cancelling_drops_the_booking_and_goodbye_ends_the_call(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            _, cancel, bye = await say(
                session, "book a table for 2", "cancel that, never mind", "bye, have a nice day"
            )
    assert cancel.intent == "cancel"
    assert (cancel.flow, cancel.stage) == (None, "idle")
    assert cancel.text.startswith("No problem, I've cancelled that.")
    assert bye.events == (EndCall(reason="caller said goodbye"),)
    assert bye.text == "Thank you for calling Chez Voxline. Goodbye!"
    assert bye.ended


@pytest.mark.anyio
async def test_a_transfer_request_is_decided_by_its_pattern(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            (human,) = await say(session, "I need to speak to the manager")
    assert (human.intent, human.score) == ("human", 1.0)
    assert human.events == (Transfer(target="front-desk"),)


@pytest.mark.anyio
async def test_an_unambiguous_partial_is_previewed_and_the_final_keeps_its_intent(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            partials = [
                await session.handle(text, final=False)
                for text in ("I'd", "I'd like to", "I'd like to book", "I'd like to book a table")
            ]
            assert session.conversation.flow is None  # a preview commits nothing
            final = await session.handle("I'd like to book a table for two", final=True)
    assert partials[:3] == [None, None, None]
    preview = partials[3]
    assert preview is not None
    assert (preview.intent, preview.early) == ("book_table", True)
    assert preview.text == "I'd be happy to book a table for you. For how many people?"
    assert session.reused_preview
    assert final.intent == "book_table"
    assert final.changes == {"party_size": 2}  # slots come from the final transcript
    assert final.text == "I'd be happy to book a table for you. For which day?"


@pytest.mark.anyio
async def test_a_final_that_says_something_else_is_decided_again(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            for text in ("I'd like to book", "I'd like to book a table"):
                await session.handle(text, final=False)
            final = await session.handle("I'd like to know your opening hours", final=True)
    assert not session.reused_preview
    assert final.intent == "opening_hours"


@pytest.mark.anyio
async def test_ambiguous_partials_and_partials_inside_a_flow_give_no_preview(
    embedder: SentenceEmbedder, server: WebhookServer
) -> None:
    with anyio.fail_after(30):
        async with receptionist(embedder, server.url("/book")) as session:
            vague = [await session.handle(t, final=False) for t in ("can I", "can I", "hmm")]
            await session.handle("hmm", final=True)
            await session.handle("book a table", final=True)
            inside = [await session.handle(t, final=False) for t in ("what time", "what time")]
    assert vague == [None, None, None]
    assert inside == [None, None]
