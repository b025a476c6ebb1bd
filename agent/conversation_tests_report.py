"""Conversation test results for people (:func:`text_report`) and for CI (:func:`junit_xml`:
one ``<testsuite>`` per file, one ``<testcase>`` per conversation, its ``<failure>`` text the
same diff the text report shows; a skipped file's conversations are ``<skipped>``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from agent.conversation_tests_check import Mismatch
from agent.conversation_tests_run import ConversationResult, FileResult, TurnResult

__all__ = ["failure_summary", "failure_text", "junit_xml", "text_report"]


def text_report(results: Sequence[FileResult]) -> str:
    """Per turn: the caller's line (or keys), what was heard (audio mode), intent, slots set,
    reply; under a failed turn, each field expected and got."""
    lines: list[str] = []
    for result in results:
        test = result.test
        lines.append(f"{test.path}: agent {test.agent.name!r} ({test.agent_path.name})")
        if result.skipped is not None:
            lines.append(f"  SKIPPED: {result.skipped}")
            continue
        for conversation in result.conversations:
            lines += _conversation_lines(conversation)
    passed = sum(c.passed for r in results for c in r.conversations)
    failed = sum(not c.passed for r in results for c in r.conversations)
    skipped = sum(len(r.test.conversations) for r in results if r.skipped is not None)
    lines.append(f"{passed} passed, {failed} failed, {skipped} skipped")
    return "\n".join(lines)


def _conversation_lines(result: ConversationResult) -> list[str]:
    conversation = result.conversation
    mark = "PASS" if result.passed else "FAIL"
    lines = [f"  {mark} {conversation.name} [{conversation.mode}, {result.seconds:.1f} s]"]
    if result.greeting:
        lines.append(f"      agent: {result.greeting}")
    lines += [f"      ! {line}" for line in _diff(result.greeting_mismatches)]
    for turn in result.turns:
        lines += [f"    {line}" for line in _turn_lines(turn, conversation.mode)]
    return lines


def _turn_lines(turn: TurnResult, mode: str) -> list[str]:
    said = (
        f"caller: {turn.turn.caller}" if turn.turn.caller is not None else f"keys: {turn.turn.keys}"
    )
    lines = [f"{turn.index}. {said}"]
    outcome = turn.outcome
    if outcome is not None:
        if mode == "audio" and turn.turn.caller is not None:
            lines.append(f"   heard: {outcome.heard}")
        lines.append(f"   intent: {outcome.intent or '-'}")
        changed = {**outcome.changes}
        changed.update((name, outcome.values.get(name)) for name in turn.turn.expect.slots)
        if changed:
            shown = ", ".join(f"{name}={value!r}" for name, value in changed.items())
            lines.append(f"   slots: {shown}")
        lines.append(f"   agent: {outcome.reply}")
        for call in outcome.tool_calls:
            lines.append(f"   tool call: {call.tool} {call.arguments}")
        if outcome.transfer is not None:
            lines.append(f"   transfer: {outcome.transfer}")
        if outcome.ended is not None:
            lines.append(f"   end_call: {outcome.ended}")
    if turn.error is not None:
        lines.append(f"   ! error: {turn.error}")
    lines += [f"   ! {line}" for line in _diff(turn.mismatches)]
    return lines


def _diff(mismatches: Sequence[Mismatch]) -> list[str]:
    lines: list[str] = []
    for mismatch in mismatches:
        lines.append(f"{mismatch.field}: expected {mismatch.expected}")
        lines.append(f"{' ' * len(mismatch.field)}       got {mismatch.got}")
    return lines


def failure_text(result: ConversationResult) -> str:
    """What failed in a conversation: turn number, field, expected and got."""
    lines = [f"greeting: {line}" for line in _diff(result.greeting_mismatches)]
    for turn in result.turns:
        if turn.passed:
            continue
        said = turn.turn.caller if turn.turn.caller is not None else f"keys {turn.turn.keys}"
        lines.append(f"turn {turn.index} ({said!r}):")
        if turn.error is not None:
            lines.append(f"  error: {turn.error}")
        lines += [f"  {line}" for line in _diff(turn.mismatches)]
    return "\n".join(lines)


def failure_summary(result: ConversationResult) -> str:
    """One line: the turns that failed and their fields (``turn 3: reply, slots.time``)."""
    parts = ["greeting"] if result.greeting_mismatches else []
    for turn in result.turns:
        if not turn.passed:
            fields = [m.field for m in turn.mismatches] + (["error"] if turn.error else [])
            parts.append(f"turn {turn.index}: {', '.join(fields)}")
    return "; ".join(parts)


def junit_xml(results: Sequence[FileResult]) -> bytes:
    """JUnit XML (the schema CI servers read): suites per file, cases per conversation."""
    root = ET.Element("testsuites", name="voxline conversations")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for result in results:
        test = result.test
        suite = ET.SubElement(root, "testsuite", name=str(test.path))
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        seconds = 0.0
        if result.skipped is not None:
            for conversation in test.conversations:
                case = ET.SubElement(
                    suite, "testcase", name=conversation.name, classname=test.agent.name
                )
                ET.SubElement(case, "skipped", message=result.skipped)
                counts["tests"] += 1
                counts["skipped"] += 1
        for outcome in result.conversations:
            case = ET.SubElement(
                suite,
                "testcase",
                name=outcome.conversation.name,
                classname=test.agent.name,
                time=f"{outcome.seconds:.3f}",
            )
            seconds += outcome.seconds
            counts["tests"] += 1
            if not outcome.passed:
                counts["failures"] += 1
                text = failure_text(outcome)
                failure = ET.SubElement(case, "failure", message=failure_summary(outcome))
                failure.text = text
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("errors", "0")
        suite.set("time", f"{seconds:.3f}")
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    ET.indent(root)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml
