"""``/v1/realtime``: the OpenAI-Realtime-compatible protocol, wired to a :class:`Session`.

The thin I/O adapter over :class:`~transports.realtime.RealtimeProtocol` (which holds the
protocol logic), served by the WebSocket call loop (:func:`agent.ws_io.serve_call`).

How the API maps onto a call:

- The session starts with the connection and does not greet (the API's assistant speaks when
  asked, or after a turn); ``response.create`` with nothing to answer says the greeting.
- ``output_modalities``, ``max_output_tokens`` and ``speed`` shape the replies, and
  ``rate_limits.updated`` follows each ``response.done`` (:mod:`agent.realtime_shaping`): a
  text response is never synthesised and ends with its text; one cut at its token limit ends
  ``incomplete``.
- ``turn_detection`` maps to :class:`~agent.turns.TurnConfig` (:func:`turn_config`);
  ``create_response: false`` (or no turn detection) ends turns without answering them, and
  ``response.create`` then answers the turn.
- ``speech_started`` is turn-taking's decision that the caller has the floor
  (:class:`~agent.session_events.UserTurnStarted`: a turn, or a barge-in), not every VAD onset:
  the bot's echo, a cough or a backchannel send none. A turn's end commits the user item
  (``committed``, then the transcription events); a reply is a response, created when its first
  text or audio comes (or at once for ``response.create``) and done when its audio is; a
  barge-in cancels it (``turn_detected``) with its ``speech_started``: no audio of it after.
- ``input_audio_buffer.clear``: the pipeline forgets the audio so far (VAD, ASR, the turn).
- ``error`` is for the client's mistakes: a failed reply ends its response ``failed``
  (``status_details.error``); the session's other notices are logged.
- ``response.cancel`` / ``output_audio_buffer.clear`` stop the reply; ``conversation.item.truncate``
  tells the dialogue the text heard up to ``audio_end_ms`` (from the synthesizer's word timings).
- ``input_audio_buffer.commit`` ends the turn with the audio so far (:meth:`Session.commit_turn`).
- With the LLM engine the conversation is the LLM's history and the client's function tools
  are the model's too (:mod:`agent.realtime_dialogue`); the intent engine answers the user
  text items added since the last response, and has no tools.
- ``instructions`` become the system prompt of the call's LLM dialogue (the LLM engine, or the
  intent engine's LLM hand-off), replacing the agent's own; ``""`` restores the agent's. A
  ``response.create`` with ``instructions`` uses them for that response only. The intent engine
  without an LLM has no prompt: they are kept and shown, not used.
- ``voice`` (:func:`session_voices`): the agent's voice, a catalog voice its TTS engine speaks
  (the same model: another speaker, prosody or style; at the agent file's speed and emotion),
  or one of OpenAI's names (spoken with the agent's voice). Any other name is refused with an
  ``error``; the voice stays as it was.
- Call actions: the API has no transfer (its clients run their own tools), so a transfer the
  dialogue asks for fails at once (``unsupported``) and the agent says its
  ``dialogue.transfer_failed`` line in a response of its own; the conversation goes on. A
  hang-up closes the socket (``1000`` with the reason) after the last response is done.
- Idle (:mod:`agent.realtime_idle`): counted from the end of the client's playback;
  ``timeout_triggered``, an idle prompt, and after ``turns.idle_prompts`` the hang-up (``idle``).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread
from starlette.websockets import WebSocket

from agent.auth_asgi import SECRET_SESSION
from agent.config import AgentConfig, VoiceConfig
from agent.dialogue.llm_history import History
from agent.dialogue.llm_tools import ToolCall
from agent.models import reply_voice
from agent.realtime_dialogue import RealtimeDialogue, ReplyRequest, client_tools
from agent.realtime_idle import IdleWatch
from agent.realtime_overrides import realtime_protocol
from agent.realtime_shaping import (
    SessionRateLimits,
    at_speed,
    initial_config,
    reply_shape,
    turn_config,
)
from agent.reply import ReplyVoice, Responder
from agent.responders import IntentResponder, LLMResponder
from agent.rest import OPENAI_VOICES, served_catalog
from agent.session import Models, Session, SessionSettings
from agent.session_decoding import SessionDecoding
from agent.session_events import (
    AgentText,
    CallEnded,
    CallSink,
    Interrupted,
    MarkReached,
    Notice,
    ReplyTruncated,
    SessionEvent,
    TransferRequested,
    UserSpeech,
    UserTranscript,
    UserTurn,
    UserTurnStarted,
)
from agent.turns import TurnConfig
from agent.ws_io import Outbox, Sender, WsCall, WsTransport, serve_call
from pipeline.events import PIPELINE_RATE, AudioFrame
from transports.realtime import RealtimeProtocol
from transports.realtime_caps import MAX_MESSAGE_BYTES
from transports.realtime_events import (
    RealtimeSessionConfig,
    ResponseParams,
    SessionSpec,
    UpdateRejected,
    apply_update,
)
from transports.realtime_inbound import (
    CancelRequested,
    CommitRequested,
    InputCleared,
    ItemCreated,
    ItemDeleted,
    RealtimeEvent,
    ResponseRequested,
    SessionUpdated,
    TruncateRequested,
)
from voices.catalog import Catalog

log = logging.getLogger("voxline.realtime")

#: the rate replies are played out at (the API's PCM rate; G.711 is resampled from it)
OUTPUT_RATE = 24000
#: cancelled generations remembered (to drop their frames still on their way)
_CUT_KEPT = 8


@dataclass(frozen=True)
class SessionVoices:
    """The voices a session may take: each name, and how it speaks."""

    default: str
    choices: dict[str, ReplyVoice]


def session_voices(catalog: Catalog | None, agent: VoiceConfig, own: ReplyVoice) -> SessionVoices:
    """The agent's voice (``own``, what calls start with); the catalog voices its engine speaks
    (same model and config: they differ by speaker, prosody or style), with the agent file's
    speed and emotion applied as to its own (:func:`~agent.models.reply_voice`); OpenAI's
    names, spoken as the agent's voice. A catalog voice of another model is not loaded in this
    server, so it is not offered."""
    choices = dict.fromkeys([*sorted(OPENAI_VOICES), "default", agent.name], own)
    loaded = catalog.get(agent.name) if catalog is not None and agent.name in catalog else None
    if catalog is not None and loaded is not None:
        for name in catalog.names:
            voice = catalog.get(name)
            if name != agent.name and (voice.model, voice.config) == (loaded.model, loaded.config):
                choices[name] = reply_voice(agent, voice)
    return SessionVoices(agent.name, choices)


def llm_history_of(responder: Responder) -> tuple[History, str] | None:
    """The call's LLM history and the agent's own system prompt (``None``: no LLM)."""
    llm = responder.llm if isinstance(responder, IntentResponder) else responder
    if isinstance(llm, LLMResponder):
        return llm.history, llm.engine.config.system_prompt
    return None


def minted_config(
    ws: WebSocket, config: RealtimeSessionConfig, voices: SessionVoices | None
) -> RealtimeSessionConfig:
    """``config`` with the session a client secret was minted with applied (the call was let
    in with that secret: :mod:`agent.client_secrets`); as it is when that no longer applies
    (a voice this agent does not have: the client hears of it from ``session.created``)."""
    spec = ws.scope.get(SECRET_SESSION)
    if not isinstance(spec, SessionSpec):
        return config
    try:
        names = None if voices is None else frozenset(voices.choices)
        return apply_update(config, spec, voice_locked=False, voices=names)
    except UpdateRejected as rejected:
        log.warning("a client secret's session does not apply: %s", rejected.message)
        return config


class RealtimeSink(CallSink):
    """What the session says, as Realtime server events; and the client's requests, applied."""

    def __init__(
        self,
        protocol: RealtimeProtocol,
        outgoing: Sender,
        base: TurnConfig,
        *,
        voices: SessionVoices | None = None,
        llm: tuple[History, str] | None = None,
    ) -> None:
        self.protocol = protocol
        self._outbox = Outbox(protocol, outgoing)
        self.base = base
        self.session: Session | None = None
        #: the session's ASR requests, with ``audio.input.transcription``'s language and prompt
        self.decoding: SessionDecoding | None = None
        self._detecting = protocol.config.turn_detection is not None
        self._turns = turn_config(base, protocol.config.turn_detection)
        #: generations with a response, and those still open
        self._responses: set[int] = set()
        self._open: set[int] = set()
        #: the user item a client commit made, waiting for its transcript
        self._committed: str | None = None
        #: a response.create waiting for a committed turn's transcript
        self._queued: ResponseParams | None = None
        #: generations cancelled by a barge-in or the client: nothing more of them goes out
        self._cut: set[int] = set()
        #: the user item of the caller's turn in progress, and its transcript deltas sent so far
        self._item: str | None = None
        self._sent: dict[int, str] = {}
        #: speech_started was sent and its speech_stopped not yet; where the VAD last heard
        #: speech stop (``None``: speech goes on)
        self._speaking = False
        self._stopped: int | None = None
        #: user text added as items, answered by the next response.create
        self._typed: list[str] = []
        self.voices = voices
        #: the LLM history whose system prompt ``instructions`` set, and the agent's own prompt
        self._llm = llm
        self._instructions = ""
        #: the response whose own ``instructions`` are in the prompt until it ends
        self._instructed: int | None = None
        #: the LLM dialogue; items changed since the last response; the user item no reply
        #: has answered yet
        self._dialogue: RealtimeDialogue | None = None
        self._fresh = False
        self._turn_item: str | None = None
        #: replies the LLM stopped at their token limit (ended ``incomplete``)
        self._limited: set[int] = set()
        self._idle = IdleWatch(protocol, OUTPUT_RATE)  # when the client's playback ends

    def dialogue(self, dialogue: RealtimeDialogue | None) -> None:
        """The call's LLM dialogue: the conversation is its history; its client tools."""
        self._dialogue = dialogue
        if dialogue is not None:
            dialogue.on_call, dialogue.on_silent_end = self._client_call, self._silent_end
            dialogue.on_limit = self._limited.add
            config = self.protocol.config
            dialogue.tools = client_tools(config.tools, config.tool_choice)

    @property
    def output_rate(self) -> int:
        return OUTPUT_RATE

    @property
    def turns(self) -> tuple[TurnConfig, bool]:
        """The turn-taking config and ``answer_turns`` the session settings should start with."""
        return self._turns

    # -- the session's side -------------------------------------------------------------------

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        if generation in self._cut:
            return  # a frame of a cancelled reply on its way when it was cancelled
        self._ensure_response(generation)
        self._idle.sent(self.session, generation, pcm)
        self.protocol.send_audio(generation, pcm, OUTPUT_RATE)
        await self.flush()

    async def end_audio(self, generation: int) -> None:
        said = self.session.replies.said(generation) if self.session is not None else None
        limited = generation in self._limited or (said is not None and said.cut)
        self._open.discard(generation)
        self._response_over(generation)
        if limited:  # at max_output_tokens (or the agent's own limit on its text)
            self.protocol.end_response(generation, status="incomplete", reason="max_output_tokens")
        else:
            self.protocol.end_response(generation)
        await self.flush()

    async def clear_audio(self, generation: int) -> None:
        pass  # the client stops on speech_started; it says what it played with a truncate

    async def send_event(self, event: SessionEvent) -> None:
        p = self.protocol
        match event:
            case UserTurnStarted(sample=sample, interrupts=cut):
                self._turn_started(sample, cut)
            case UserSpeech(started=True, sample=sample):
                self._stopped = None
                if self._detecting and self._item is not None and not self._speaking:
                    self._speaking = True  # the caller goes on with their turn
                    p.speech_started(sample)
            case UserSpeech(sample=sample):
                self._stopped = sample
                if self._speaking:
                    self._speaking = False
                    p.speech_stopped(sample)
            case UserTranscript():
                self._transcript_delta(event)
            case UserTurn(text=text, start=start, end=end):
                self._turn_done(text, (end - start) / PIPELINE_RATE)
            case Notice(code=code, message=text) if code.startswith("ignored."):
                if self._committed is not None:
                    self._turn_done(text, 0.0)  # a commit with no turn in it still completes
                self._item = None  # not a turn (its item id is the next turn's)
            case AgentText(generation=generation, delta=delta) if generation not in self._cut:
                self._ensure_response(generation)
                p.send_text(generation, delta)
            case Interrupted(generation=generation):
                self._cancel(generation)
            case ReplyTruncated(generation=generation, heard_text=heard):
                p.truncated_transcript(generation, heard)
            case CallEnded(reason=reason):
                log.info("realtime call ended: %s", reason)
                p.close()
            case TransferRequested() if self.session is not None:
                await self.session.transfer_result(False, "unsupported")
            case Notice(code="reply_failed", message=message):
                self._failed(message)
            case Notice(code=code):
                # not the client's error, and the session goes on: no ``error`` event (clients
                # take one as fatal). ssml_warning, utterance_cut, reply_cut, transfer_failed
                # (the agent says so in a response of its own). The message may quote the
                # caller or the reply: not logged.
                log.info("realtime call: %s", code)
            case MarkReached():
                pass  # the Realtime API has no event for an SSML mark
            case _:
                pass  # latency: not in the API
        await self.flush()

    def _turn_started(self, sample: int, cut: int | None) -> None:
        """Turn-taking took the caller's speech as theirs: ``speech_started`` (with turn
        detection) at its start; a barge-in's reply is cancelled with it, so nothing of that
        reply comes after it (its frames on their way are dropped: ``_cut``)."""
        if self._detecting:
            self._item = self.protocol.speech_started(sample)
            self._speaking = True
            if self._stopped is not None and self._stopped >= sample:  # it has stopped already
                self._speaking = False
                self.protocol.speech_stopped(self._stopped)
        if cut is not None:
            self._cancel(cut)

    def _cancel(self, generation: int) -> None:
        """Reply ``generation`` was interrupted: its response is cancelled (once)."""
        self._cut.add(generation)
        if len(self._cut) > _CUT_KEPT:  # only the latest can still have frames on their way
            self._cut.discard(min(self._cut))
        self._open.discard(generation)
        self._response_over(generation)
        self._idle.cancelled(self.session, generation)
        self.protocol.cancel_response(generation, "turn_detected")

    def _failed(self, message: str) -> None:
        """The reply being made failed (logged by the session): its response ends ``failed``
        with the error in ``status_details``, as OpenAI ends a failed response; a reply that
        had no response yet is only logged."""
        failed = sorted(self._open)
        self._open.clear()
        for generation in failed:
            self._response_over(generation)
            self.protocol.fail_response(generation, message)

    def _turn_done(self, text: str, seconds: float) -> None:
        """The user's turn ended: its item completes with ``text``; a queued response starts."""
        item = self._committed or self.protocol.commit_input()
        self._committed = self._item = None
        self._sent.clear()
        self.protocol.input_transcript_completed(item, text, seconds=seconds)
        self._turn_item = item
        queued, self._queued = self._queued, None
        if queued is not None and not self._turns[1]:
            self._respond(queued, text)

    def _transcript_delta(self, event: UserTranscript) -> None:
        """The stable part of a partial (or a final) as it grows: transcription deltas."""
        if self._item is None:
            return
        text = (event.text if event.final else event.stable).strip()
        sent = self._sent.get(event.utterance, "")
        if not text.startswith(sent) or len(text) == len(sent):
            return  # revised, or nothing new: the completed event will have it right
        delta = text[len(sent) :]
        if not sent and any(self._sent.values()):
            delta = " " + delta
        self._sent[event.utterance] = text
        self.protocol.input_transcript_delta(self._item, delta)

    def _ensure_response(self, generation: int, params: ResponseParams | None = None) -> None:
        if generation in self._responses:
            return
        if params is None:  # the session answers the caller's turn (or prompts an idle one)
            self._answering(generation)
            self._idle.starting(self.session, generation)  # an idle prompt: the timeout first
        for stale in self._open:  # a reply that never played (it failed, or said nothing)
            self.protocol.end_response(stale)
            self._response_over(stale)
        self._open.clear()
        self.protocol.start_response(generation, params)
        self._responses.add(generation)
        self._open.add(generation)

    def _respond(self, params: ResponseParams, text: str | None) -> None:
        assert self.session is not None
        request = self._request(params, text)
        if request is not None and (request.continues or request.history is not None):
            text = ""  # a reply, but to no new turn
        inside = request is None or request.history is None
        once = params.instructions is not None and self._llm is not None and inside
        if once:
            self._prompt(params.instructions or "")
        shape = reply_shape(self.protocol.config, params)
        generation = self.session.respond_now(text, shape=shape)
        if generation is None:
            self.protocol.send_error("the session has ended")
            if once:
                self._prompt(self._instructions)
        else:
            if once:
                self._instructed = generation
            if request is not None and self._dialogue is not None:
                self._dialogue.request(generation, request)
                if inside and not request.continues:
                    self._answering(generation)
            self._ensure_response(generation, params)

    def _request(self, params: ResponseParams, text: str | None) -> ReplyRequest | None:
        """What the LLM dialogue's reply is to do for ``params`` (``None``: no LLM dialogue)."""
        if self._dialogue is None:
            return None
        fresh = text is None and self._fresh and self._turn_item is None
        self._fresh = self._fresh and params.conversation == "none"
        return self._dialogue.plan(params, self.protocol.config, fresh=fresh)

    def _answering(self, generation: int) -> None:
        """Reply ``generation`` answers the caller's last turn, if one is unanswered."""
        if self._turn_item is not None and self._dialogue is not None:
            self._dialogue.answered(self._turn_item, generation)
        self._turn_item = None

    def _client_call(self, generation: int, call: ToolCall) -> None:
        """The model called a client tool: a ``function_call`` item as its response ends."""
        if generation not in self._cut:
            self._ensure_response(generation)
            p, args = self.protocol, call.arguments
            p.send_function_call(generation, call_id=call.id, name=call.name, arguments=args)

    async def _silent_end(self, generation: int) -> None:
        """Reply ``generation`` said nothing (a tool call only): no audio will end it."""
        if generation in self._open:
            self._open.discard(generation)
            self._response_over(generation)
            self.protocol.end_response(generation)
        await self.flush()

    def _prompt(self, instructions: str) -> None:
        """Make ``instructions`` the LLM's system prompt (``""``: the agent's own)."""
        if self._llm is not None:
            history, own = self._llm
            history.system = instructions or own

    def _response_over(self, generation: int) -> None:
        self._limited.discard(generation)
        if self._instructed == generation:  # its own instructions give way to the session's
            self._instructed = None
            self._prompt(self._instructions)

    def _apply_session(self, session: Session, config: RealtimeSessionConfig) -> None:
        if config.instructions != self._instructions:
            self._instructions = config.instructions
            if self._llm is None:
                log.info("instructions kept but not used: the intent engine has no prompt")
            elif self._instructed is None:
                self._prompt(config.instructions)
        if self._dialogue is not None:
            self._dialogue.tools = client_tools(config.tools, config.tool_choice)
            most = config.max_output_tokens
            self._dialogue.max_tokens = None if most == "inf" else most
        voice = None if self.voices is None else self.voices.choices.get(config.voice)
        if voice is not None:
            session.set_voice(at_speed(voice, config.speed))
        session.shape_replies(reply_shape(config))
        if self.decoding is not None:
            heard = config.transcription
            self.decoding.set(*((heard.language, heard.prompt) if heard else (None, None)))

    # -- the client's side --------------------------------------------------------------------

    async def handle(self, event: RealtimeEvent) -> None:
        session = self.session
        assert session is not None
        match event:
            case AudioFrame(pcm=pcm):
                await session.push_audio(pcm)
            case SessionUpdated(config=config):
                self._apply_session(session, config)
                self._detecting = config.turn_detection is not None
                turns = turn_config(self.base, config.turn_detection)
                if turns != self._turns:
                    self._turns = turns
                    session.answer_turns = turns[1]
                    await session.set_turns(turns[0])
            case CommitRequested(item_id=item_id):
                self._committed = item_id
                await session.commit_turn()
            case InputCleared():
                self._committed = self._item = None
                self._speaking = False
                self._sent.clear()
                await session.discard_turn()
            case ItemCreated(item=item) if self._dialogue is not None:
                self._dialogue.add_item(item, self.protocol.conversation)
                self._fresh = True
            case ItemCreated(item=item) if item.type == "message" and item.role == "user":
                self._typed.append(item.text)
            case ItemDeleted(item_id=item_id, call_id=call, made_by=made) if self._dialogue:
                self._dialogue.remove_item(item_id, made, call)
                self._fresh = True
            case ResponseRequested(params=params):
                if self._committed is not None:
                    self._queued = params  # answer the turn once its transcript is in
                elif self._dialogue is not None:
                    self._respond(params, None)
                else:
                    typed = " ".join(t for t in self._typed if t.strip()) or None
                    self._typed.clear()
                    self._respond(params, typed)
            case CancelRequested(generation=generation):
                self._idle.cancelled(session, generation)
                self._open.discard(generation)
                self._response_over(generation)
                await session.interrupt(generation)
            case TruncateRequested(generation=generation, samples=samples, audio_end_ms=ms):
                self._idle.playback.truncated(generation, ms)
                await session.truncate(generation, samples)
            case _:
                pass  # peer errors (answered already), items Voxline keeps no history of

    async def flush(self) -> None:
        await self._outbox.flush()


async def realtime_call(
    ws: WebSocket,
    models: Models,
    responder: Callable[[], Responder],
    settings: SessionSettings,
    *,
    send_timeout: float = 10.0,
    open_timeout: float | None = None,
) -> None:
    """Serve a ``/v1/realtime`` connection until either side ends it (its call starts at once)."""
    offered = ws.scope.get("subprotocols") or []
    session_id = uuid.uuid4().hex
    dialogue = responder()
    realtime = RealtimeDialogue(dialogue) if isinstance(dialogue, LLMResponder) else None
    agent = getattr(dialogue, "config", None)  # the agent file of the dialogue engines
    voices: SessionVoices | None = None
    if isinstance(agent, AgentConfig):
        catalog = await anyio.to_thread.run_sync(served_catalog)
        voices = session_voices(catalog, agent.voice, settings.voice)
    protocol = realtime_protocol(ws.scope)(
        minted_config(
            ws, initial_config(settings, voices.default if voices else "default"), voices
        ),
        id_seed=session_id[:12],
        voices=None if voices is None else frozenset(voices.choices),
        rate_limits=SessionRateLimits.of(dialogue),
    )

    def transport(outgoing: Sender) -> WsTransport[RealtimeEvent]:
        llm = llm_history_of(dialogue)
        sink = RealtimeSink(protocol, outgoing, settings.turns, voices=voices, llm=llm)
        sink.dialogue(realtime)
        turns, answer = sink.turns
        call_settings = dataclasses.replace(
            settings, turns=turns, answer_turns=answer, greeting=False
        )
        sink.decoding = SessionDecoding(models.asr, settings.asr)
        own = dataclasses.replace(models, asr=sink.decoding)
        session = sink.session = Session(
            own, realtime or dialogue, sink, call_settings, session_id=session_id
        )
        sink._apply_session(session, protocol.config)  # a client secret's session, if any

        async def opened(call: WsCall) -> None:
            call.start(session)  # with the connection; session.created goes out first

        async def handle(event: RealtimeEvent, call: WsCall) -> bool:
            await sink.handle(event)
            return True  # the API has no goodbye: the client closes the socket

        def ended(_: Session) -> None:
            protocol.close()  # nothing more is sent

        def over() -> None:
            sink.session = None

        return WsTransport(protocol, sink.flush, handle, ended=ended, opened=opened, over=over)

    subprotocol = "realtime" if "realtime" in offered else None
    await serve_call(
        ws,
        transport,
        send_timeout=send_timeout,
        open_timeout=open_timeout,
        subprotocol=subprotocol,
        max_message_bytes=MAX_MESSAGE_BYTES,
    )
