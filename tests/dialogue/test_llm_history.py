"""A session's LLM history: kept to what the caller heard, rendered for the chat API."""

from __future__ import annotations

from agent.dialogue.llm_history import History, join_text
from agent.dialogue.llm_tools import ToolCall, ToolResult

CALL = ToolCall(id="call_1", name="book_table", arguments='{"party_size": 2}')
TEXT_CALL = ToolCall(id="call_2", name="lookup", arguments="{}", as_text=True)


def history_with_reply(*assistant: str) -> History:
    history = History("Be brief.")
    history.add_user("Hello?")
    for text in assistant:
        history.add_assistant(text)
    return history


def test_renders_system_prompt_turns_and_native_tool_calls() -> None:
    history = History("Be brief.")
    history.add_user("Book for two.")
    history.add_assistant("One moment.", [CALL])
    history.add_tool_result(CALL, ToolResult(content="booked"))
    history.add_assistant("Done, you're booked.")
    assert history.render() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Book for two."},
        {
            "role": "assistant",
            "content": "One moment.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "book_table", "arguments": '{"party_size": 2}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "name": "book_table", "content": "booked"},
        {"role": "assistant", "content": "Done, you're booked."},
    ]


def test_calls_written_as_text_come_back_as_a_note() -> None:
    history = History()
    history.add_user("When do you open?")
    history.add_assistant("", [TEXT_CALL])
    history.add_tool_result(TEXT_CALL, ToolResult(content="6pm"))
    assert history.render(tool_result_note="{name} said {result}") == [
        {"role": "user", "content": "When do you open?"},
        {"role": "system", "content": "lookup said 6pm"},
    ]


def test_truncation_keeps_the_heard_prefix_and_marks_it() -> None:
    history = history_with_reply("We open at six. We close at eleven.")
    assert history.truncate_last_assistant("We open at six.")
    [message] = [m for m in history.messages if m.role == "assistant"]
    assert (message.content, message.interrupted) == ("We open at six.", True)
    assert history.render(interrupted_suffix=" [cut]")[-1] == {
        "role": "assistant",
        "content": "We open at six. [cut]",
    }


def test_heard_text_that_is_not_a_prefix_is_matched_by_words() -> None:
    history = history_with_reply("It costs $5, sir. Anything else?")
    assert history.truncate_last_assistant("it costs\n$5")
    assert history.messages[-1].content == "It costs $5,"


def test_nothing_heard_leaves_an_empty_interrupted_turn() -> None:
    history = history_with_reply("We open at six.")
    assert history.truncate_last_assistant("")
    assert history.messages[-1].content == ""
    assert history.render()[-1] == {"role": "assistant", "content": "…"}


def test_all_heard_is_no_interruption() -> None:
    history = history_with_reply("We open at six.")
    assert not history.truncate_last_assistant("We open at six.")
    assert not history.messages[-1].interrupted


def test_without_a_reply_there_is_nothing_to_cut() -> None:
    history = History()
    history.add_user("Hi")
    assert not history.truncate_last_assistant("anything")


def test_a_cut_in_a_later_round_keeps_the_tool_exchange() -> None:
    history = History()
    history.add_user("Book for two.")
    history.add_assistant("One moment.", [CALL])
    history.add_tool_result(CALL, ToolResult(content="booked"))
    history.add_assistant("You're booked. See you tonight.")
    assert history.reply_text() == "One moment. You're booked. See you tonight."
    assert history.truncate_last_assistant("One moment. You're booked.")
    first, tool, last = history.messages[1:]
    assert (first.content, first.interrupted, first.tool_calls) == ("One moment.", False, (CALL,))
    assert tool.content == "booked"
    assert (last.content, last.interrupted) == ("You're booked.", True)


def test_a_cut_in_the_first_round_empties_the_later_ones() -> None:
    history = History()
    history.add_user("Book for two.")
    history.add_assistant("One moment please.", [CALL])
    history.add_tool_result(CALL, ToolResult(content="booked"))
    history.add_assistant("You're booked.")
    assert history.truncate_last_assistant("One moment")
    first, _, last = history.messages[1:]
    assert (first.content, first.interrupted, first.tool_calls) == ("One moment", True, (CALL,))
    assert (last.content, last.interrupted) == ("", True)


def test_earlier_replies_are_not_touched() -> None:
    history = history_with_reply("First answer.")
    history.add_user("And then?")
    history.add_assistant("Second answer, longer.")
    assert history.truncate_last_assistant("Second")
    assert [m.content for m in history.messages if m.role == "assistant"] == [
        "First answer.",
        "Second",
    ]


def test_the_window_keeps_whole_turns() -> None:
    history = History("sys", max_messages=3)
    for i in range(3):
        history.add_user(f"q{i}")
        history.add_assistant("", [CALL])
        history.add_tool_result(CALL, ToolResult(content=f"r{i}"))
        history.add_assistant(f"a{i}")
    rendered = history.render()
    assert rendered[0] == {"role": "system", "content": "sys"}
    assert [m.get("content") for m in rendered[1:]] == ["q2", "", "r2", "a2"]


def test_rounds_are_joined_by_one_space_unless_there_is_one() -> None:
    assert join_text(["One moment.", "Done."]) == "One moment. Done."
    assert join_text(["One moment. ", "Done."]) == "One moment. Done."
    assert join_text(["", "Done.", ""]) == "Done."


def test_a_long_call_keeps_at_most_twice_the_window_and_renders_the_same() -> None:
    history = History("be brief", max_messages=4)
    for turn in range(1000):
        history.add_user(f"question {turn}")
        history.add_assistant(f"answer {turn}")
        assert len(history.messages) <= 2 * 4 + 1
    rendered = history.render()
    assert [m["content"] for m in rendered] == [
        "be brief",
        "question 998",
        "answer 998",
        "question 999",
        "answer 999",
    ]
