"""One conversation with the intent engine: a sans-I/O state machine.

Feed it a user turn with :meth:`Conversation.respond` (the text and the intents' scores, or
None when :meth:`Conversation.wants_scores` said they are not needed); it returns a
:class:`~agent.dialogue.decision.DialogueDecision`, or a
:class:`~agent.dialogue.decision.WebhookCall` to make first: make it and pass the result to
:meth:`Conversation.resume`, until a decision comes back. It never reads a clock (``today``
is given) and does no I/O.

Stages, and what a turn does in each::

    idle        match an intent: reply, run its actions, maybe start its flow; else fall back
    collecting  (a flow asks for ``asking``) fill slots from the utterance, then go on;
                nothing filled: match an intent (answered, then the question again), else
                fall back and ask again
    confirming  (the flow read its values back) a correction ("no, make it three people")
                changes slots and confirms again; yes goes on; naming a slot without a value
                ("no, the time") asks for it again; a bare no asks what to change
    changing    (after a bare no) as confirming
    ended       (the call was ended) nothing more

A transfer ends the turn there (what follows it in the turn is not run) and the flow in
progress, and the conversation goes back to idle: if the transfer fails,
:meth:`Conversation.transfer_failed` says so (``dialogue.transfer_failed``) and the call goes on.

"Going on" in a flow: ask for the first missing slot (a rejected value's slot first); once all
are filled, run the first ``check`` that holds; then confirm (unless confirmed); then run the
flow's actions and the first ``branch`` that holds. A branch that ``ask`` s forgets those slots
and goes on collecting; one with ``goto`` starts that flow; any other ends the flow. Starting a
flow forgets its slots, then fills them from the utterance that started it.

A keyed turn (``keyed``: keypad digits) fills only the slot being asked, or chooses an intent
by its ``keys`` (:mod:`agent.dialogue.keypad`). Misunderstood turns in a row are counted: on
``fallback.limit`` the fallback's actions run (a transfer, say). With the ``mixed`` engine a
misunderstood turn is handed to the LLM instead.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.config import (
    Action,
    Branch,
    EndCallAction,
    HandoffAction,
    Reply,
    ReplyConfig,
    SendDtmfAction,
    SetAction,
    TransferAction,
    WebhookAction,
)
from agent.dialogue.decision import (
    DialogueDecision,
    EndCall,
    Event,
    HandOff,
    Say,
    SendDigits,
    Transfer,
    WebhookCall,
    WebhookResult,
)
from agent.dialogue.intents import IntentScores
from agent.dialogue.keypad import read_keys
from agent.dialogue.script import Script, holds
from agent.dialogue.slots import Extraction
from agent.dialogue.templates import json_value

__all__ = ["Conversation", "Stage"]

log = logging.getLogger(__name__)

#: operations one turn may run (a guard against flows that go to each other forever)
_MAX_OPS = 256

Stage = Literal["idle", "collecting", "confirming", "changing", "ended"]


@dataclass(slots=True)
class _State:
    values: dict[str, Any]
    flow: str | None = None
    stage: Stage = "idle"
    asking: str | None = None
    retry: str | None = None  # a slot whose value was rejected: asked for next
    confirmed: bool = False
    misses: int = 0
    turns: int = 0
    next_call: int = 1


# Operations a turn runs in order (a webhook pauses them until its result comes back).
@dataclass(frozen=True, slots=True)
class _Say:
    reply: Reply


@dataclass(frozen=True, slots=True)
class _Act:
    action: Action


@dataclass(frozen=True, slots=True)
class _Then:
    branch: Branch


@dataclass(frozen=True, slots=True)
class _Branches:
    branches: tuple[Branch, ...]


@dataclass(frozen=True, slots=True)
class _GoOn:
    pass


@dataclass(frozen=True, slots=True)
class _Start:
    flow: str
    text: str


@dataclass(frozen=True, slots=True)
class _AskAgain:
    pass


_Op = _Say | _Act | _Then | _Branches | _GoOn | _Start | _AskAgain


@dataclass(slots=True)
class _Turn:
    text: str
    replies: list[Say] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)
    webhooks: list[WebhookResult] = field(default_factory=list)
    intent: str | None = None
    score: float = 0.0
    understood: bool = True
    ops: deque[_Op] = field(default_factory=deque)
    waiting: WebhookCall | None = None
    save_as: str | None = None
    keyed: bool = False  # keypad digits, not words (agent.dialogue.keypad)


class Conversation:
    """The state of one call's dialogue. Not thread-safe; one per session."""

    def __init__(self, script: Script, *, today: dt.date) -> None:
        self.script = script
        self.today = today
        self._state = _State(values={**script.variables, "today": today})
        self._turn: _Turn | None = None
        self._peeked: tuple[str, str | None, Stage, str | None, Extraction] | None = None

    # -- what the session sees ---------------------------------------------------------------

    @property
    def stage(self) -> Stage:
        return self._state.stage

    @property
    def flow(self) -> str | None:
        return self._state.flow

    @property
    def asking(self) -> str | None:
        return self._state.asking

    @property
    def values(self) -> dict[str, Any]:
        """Slots and variables as JSON values."""
        return {k: json_value(v) for k, v in self._state.values.items()}

    def opening(self) -> DialogueDecision:
        """The greeting (no reply when the config has none)."""
        greeting = self.script.config.greeting
        replies: tuple[Say, ...] = ()
        if greeting.text:
            reply = ReplyConfig(text=greeting.text, ssml=greeting.ssml, emotion=greeting.emotion)
            replies = (self.script.say(reply, self._state.values),)
        return DialogueDecision(replies=replies, flow=self.flow, stage=self.stage)

    def transfer_failed(self, target: str, reason: str) -> DialogueDecision:
        """The transfer a turn asked for did not happen (``reason``): the configured
        ``dialogue.transfer_failed`` reply (``{target}`` and ``{reason}`` fill in); the
        conversation is idle, its misunderstood turns forgotten, and it goes on."""
        state = self._state
        if state.stage != "ended":
            self._end_flow()
        state.misses = 0
        values = {**state.values, "target": target, "reason": reason}
        reply = self.script.say(self.script.dialogue.transfer_failed, values)
        return DialogueDecision(replies=(reply,), flow=self.flow, stage=self.stage)

    def snapshot(self) -> object:
        """Everything :meth:`restore` needs to undo the turns after this (for previews)."""
        return copy.deepcopy(self._state)

    def restore(self, snapshot: object) -> None:
        assert isinstance(snapshot, _State)
        self._state = copy.deepcopy(snapshot)
        self._turn = None

    def abandon(self) -> None:
        """Drop a turn left waiting for a webhook (its caller was cancelled)."""
        self._turn = None
        self._peeked = None

    def wants_scores(self, text: str) -> bool:
        """Whether :meth:`respond` needs the intents' scores for ``text``.

        Not when the turn fills a slot, corrects one or answers a confirmation: those never
        look at intents, so the embedding can be skipped.
        """
        state = self._state
        if state.stage == "ended":
            return False
        if state.flow is None:
            return True
        found = self._extract(text)
        if found.any:
            return found.free_text
        return not (state.stage in ("confirming", "changing") and found.yes_no is not None)

    # -- a turn ------------------------------------------------------------------------------

    def respond(
        self, text: str, scores: IntentScores | None, *, keyed: bool = False
    ) -> DialogueDecision | WebhookCall:
        """A user turn: ``text`` said, or (``keyed``) the digits keyed in."""
        if self._turn is not None:
            raise RuntimeError("the previous turn waits for a webhook result: resume() it")
        state = self._state
        turn = self._turn = _Turn(text, keyed=keyed)
        if state.stage == "ended":
            turn.understood = False
            return self._finish()
        state.turns += 1
        if state.turns > self.script.max_turns:
            turn.events.append(EndCall(reason="max_turns"))
            state.stage = "ended"
            return self._finish()
        if not (self._in_flow(text, scores) or self._intent(text, scores)):
            self._miss(text)
        return self._run()

    def resume(self, result: WebhookResult) -> DialogueDecision | WebhookCall:
        turn = self._turn
        if turn is None or turn.waiting is None or turn.waiting.id != result.id:
            raise RuntimeError(f"no webhook call {result.id} is waiting")
        turn.webhooks.append(result)
        if turn.save_as is not None:
            data = result.data if result.ok else {"error": result.error or "failed"}
            self._set(turn.save_as, data)
        turn.waiting = turn.save_as = None
        return self._run()

    # -- deciding what the turn means --------------------------------------------------------

    def _extract(self, text: str) -> Extraction:
        state = self._state
        if self._turn is not None and self._turn.keyed:
            assert state.flow is not None
            slots, asking = self.script.flows[state.flow].slots, state.asking
            return read_keys(self.script, slots, asking, text, self.today)
        key = (text, state.flow, state.stage, state.asking)
        if self._peeked is not None and self._peeked[:4] == key:
            return self._peeked[4]
        assert state.flow is not None
        loose = state.stage in ("confirming", "changing")
        found = self.script.filler.extract(
            text,
            self.script.flows[state.flow].slots,
            today=self.today,
            expected=state.asking if state.stage == "collecting" else None,
            loose=loose,
        )
        self._peeked = (*key, found)
        return found

    def _in_flow(self, text: str, scores: IntentScores | None) -> bool:
        state, turn = self._state, self._turn
        assert turn is not None
        if state.flow is None:
            return False
        found = self._extract(text)
        flow = self.script.flows[state.flow]
        if found.free_text and self._matched(scores):
            return False  # "what time do you close?" asked for a name is a request
        if found.any:
            self._apply(found)
            turn.ops.append(_GoOn())
        elif state.stage in ("confirming", "changing") and found.yes_no is True:
            state.confirmed = True
            turn.ops.append(_GoOn())
        elif state.stage in ("confirming", "changing") and found.mentioned:
            for slot in found.mentioned:  # "no, the time": ask for it again
                self._set(slot, None)
            state.confirmed = False
            turn.ops.append(_GoOn())
        elif state.stage in ("confirming", "changing") and found.yes_no is False:
            state.stage = "changing"
            turn.ops.append(_Say(flow.deny))
        else:
            return False
        state.misses = 0
        return True

    def _matched(self, scores: IntentScores | None) -> bool:
        top = scores.top if scores is not None else None
        if top is None:
            return False
        intent = self.script.intents[top.name]
        threshold = self.script.dialogue.threshold if intent.threshold is None else intent.threshold
        return top.score >= threshold

    def _intent(self, text: str, scores: IntentScores | None) -> bool:
        state, turn = self._state, self._turn
        assert turn is not None
        if not self._matched(scores):
            return False
        assert scores is not None
        top = scores.ranked[0]
        intent = self.script.intents[top.name]
        turn.intent, turn.score = top.name, top.score
        state.misses = 0
        if intent.flow is not None and intent.flow == state.flow:
            turn.ops.append(_GoOn())  # said again what it wants: carry on
            return True
        if intent.reply is not None:
            turn.ops.append(_Say(intent.reply))
        turn.ops.extend(_Act(action) for action in intent.actions)
        if intent.flow is not None:
            turn.ops.append(_Start(intent.flow, text))
        elif state.flow is not None:
            if intent.resume:
                turn.ops.append(_AskAgain())
            else:
                self._end_flow()
        return True

    def _miss(self, text: str) -> None:
        state, turn = self._state, self._turn
        assert turn is not None
        turn.understood = False
        state.misses += 1
        fallback = self.script.dialogue.fallback
        if self.script.mixed:
            pending = self._pending_question()
            turn.events.append(HandOff(utterance=text, values=self.values, pending=pending))
            return
        if state.misses >= fallback.limit and fallback.actions:
            state.misses = 0
            turn.ops.append(_Say(fallback.final_reply or fallback.reply))
            turn.ops.extend(_Act(action) for action in fallback.actions)
        elif state.flow is not None:
            turn.ops.append(_Say(fallback.reprompt))
            turn.ops.append(_AskAgain())
        else:
            turn.ops.append(_Say(fallback.reply))

    # -- running the operations --------------------------------------------------------------

    def _run(self) -> DialogueDecision | WebhookCall:
        turn = self._turn
        assert turn is not None
        budget = _MAX_OPS
        while turn.ops:
            op = turn.ops.popleft()
            budget -= 1
            if self._state.stage == "ended" or any(isinstance(e, Transfer) for e in turn.events):
                turn.ops.clear()
                break
            if budget < 0:  # flows that go to each other without asking anything
                log.error("dialogue: flow %r loops without asking; ending it", self._state.flow)
                turn.ops.clear()
                self._end_flow()
                break
            match op:
                case _Say(reply):
                    turn.replies.append(self.script.say(reply, self._state.values))
                case _Act(action):
                    call = self._act(action)
                    if call is not None:
                        turn.waiting = call
                        return call
                case _GoOn():
                    self._go_on()
                case _Start(name, text):
                    self._start(name, text)
                case _AskAgain():
                    pending = self._pending_question()
                    if pending is not None:
                        turn.replies.append(pending)
                case _Branches(branches):
                    values = self._state.values
                    chosen = next(
                        (b for b in branches if b.when is None or holds(b.when, values)), None
                    )
                    if chosen is None:
                        self._end_flow()
                    else:
                        self._branch(chosen)
                case _Then(branch):
                    self._then(branch)
        return self._finish()

    def _finish(self) -> DialogueDecision:
        turn = self._turn
        assert turn is not None
        self._turn = None
        self._peeked = None
        return DialogueDecision(
            replies=tuple(turn.replies),
            events=tuple(turn.events),
            changes=turn.changes,
            webhooks=tuple(turn.webhooks),
            intent=turn.intent,
            score=turn.score,
            flow=self._state.flow,
            stage=self._state.stage,
            understood=turn.understood,
        )

    def _start(self, name: str, text: str) -> None:
        state = self._state
        flow = self.script.flows[name]
        state.flow, state.stage, state.confirmed = name, "collecting", False
        state.asking = state.retry = None
        for slot in flow.slots:
            if slot in state.values:
                self._set(slot, None)
        self._peeked = None
        if text:
            self._apply(self._extract(text))
        self._go_on()

    def _go_on(self) -> None:
        """Ask for what is missing, check, confirm, or act: the next step of the flow."""
        state, turn = self._state, self._turn
        assert turn is not None
        assert state.flow is not None
        flow = self.script.flows[state.flow]
        missing = [slot for slot in flow.slots if slot not in state.values]
        if missing:
            slot = state.retry if state.retry in missing else missing[0]
            already_told = state.retry == slot and self.script.slots[slot].invalid is not None
            state.stage, state.asking, state.retry = "collecting", slot, None
            if not already_told:
                turn.replies.append(self.script.say(self.script.slots[slot].prompt, state.values))
            return
        state.asking = state.retry = None
        for check in flow.checks:
            assert check.when is not None
            if holds(check.when, state.values):
                self._branch(check)
                return
        if flow.confirm is not None and not state.confirmed:
            state.stage = "confirming"
            turn.replies.append(self.script.say(flow.confirm, state.values))
            return
        turn.ops.extendleft(
            reversed([*(_Act(action) for action in flow.actions), _Branches(tuple(flow.branches))])
        )

    def _branch(self, branch: Branch) -> None:
        turn = self._turn
        assert turn is not None
        ops: list[_Op] = []
        if branch.reply is not None:
            ops.append(_Say(branch.reply))
        ops.extend(_Act(action) for action in branch.actions)
        ops.append(_Then(branch))
        turn.ops.extendleft(reversed(ops))

    def _then(self, branch: Branch) -> None:
        state = self._state
        if branch.ask:
            for slot in branch.ask:
                self._set(slot, None)
            state.confirmed = False
            self._go_on()
        elif branch.goto is not None:
            self._start(branch.goto, "")
        else:
            self._end_flow()

    def _end_flow(self) -> None:
        state = self._state
        if state.stage != "ended":
            state.stage = "idle"
        state.flow = state.asking = state.retry = None
        state.confirmed = False

    def _act(self, action: Action) -> WebhookCall | None:
        state, turn = self._state, self._turn
        assert turn is not None
        values = state.values
        match action:
            case WebhookAction():
                hook = self.script.webhooks[action.tool]
                flow = self.script.flows.get(state.flow) if state.flow else None
                names = flow.slots if flow is not None else list(self.script.slots)
                arguments = {n: json_value(values[n]) for n in names if n in values}
                for key, value in action.arguments.items():
                    arguments[key] = self.script.render_value(value, values)
                call = WebhookCall(
                    id=state.next_call,
                    tool=hook.name,
                    url=hook.url,
                    arguments=arguments,
                    headers=dict(hook.headers),
                    timeout_s=hook.timeout_s,
                )
                state.next_call += 1
                turn.save_as = action.save_as
                return call
            case SetAction():
                self._set(action.var, self.script.render_value(action.value, values))
            case EndCallAction():
                turn.events.append(EndCall(reason=action.reason))
                state.stage = "ended"
            case TransferAction():
                target = self.script.template(action.to).render(values)
                turn.events.append(Transfer(target=target))
                state.misses = 0
                self._end_flow()
            case SendDtmfAction():  # checked by the session once filled in
                digits = self.script.template(action.digits).render(values)
                turn.events.append(SendDigits(digits=digits))
            case HandoffAction():
                note = self.script.template(action.note).render(values)
                turn.events.append(HandOff(utterance=turn.text, note=note, values=self.values))
        return None

    def _apply(self, found: Extraction) -> None:
        state, turn = self._state, self._turn
        assert turn is not None
        for name, value in found.filled.items():
            if state.values.get(name) != value:
                state.confirmed = False
            self._set(name, value)
        for name, heard in found.rejected.items():
            self._set(name, None)
            state.retry = name
            state.confirmed = False
            turn.replies.append(self.script.invalid(name, heard, state.values))

    def _set(self, name: str, value: Any) -> None:
        turn = self._turn
        if value is None:
            existed = self._state.values.pop(name, None) is not None
        else:
            existed = True
            self._state.values[name] = value
        if turn is not None and existed:
            turn.changes[name] = json_value(value)

    def _pending_question(self) -> Say | None:
        state = self._state
        if state.flow is None:
            return None
        flow = self.script.flows[state.flow]
        if state.stage == "collecting" and state.asking is not None:
            return self.script.say(self.script.slots[state.asking].prompt, state.values)
        if state.stage == "confirming" and flow.confirm is not None:
            return self.script.say(flow.confirm, state.values)
        if state.stage == "changing":
            return self.script.say(flow.deny, state.values)
        return None
