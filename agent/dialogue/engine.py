"""The intent engine for async code: embeddings, webhooks and early decisions around the
sans-I/O :class:`~agent.dialogue.flows.Conversation`.

:class:`IntentEngine` is built once per agent (:meth:`IntentEngine.load` embeds every example
phrase) and shared by all sessions; :meth:`IntentEngine.conversation` makes the per-call
:class:`IntentSession`, whose one method, ``await handle(text, final=...)``, turns a transcript
into a :class:`~agent.dialogue.decision.DialogueDecision`:

- **Final transcripts** are decided and committed. The utterance is embedded only when the
  conversation needs intent scores (not for a slot answer or a yes/no) and no pattern already
  decides it; embeddings are cached per text. Webhooks run here, one after the other.
- **Keyed turns** (``await handle_keys(digits)``, keypad digits) are decided by the intents'
  ``keys`` and the slot being asked (:mod:`agent.dialogue.keypad`): nothing is embedded.
- **Partial transcripts** (``final=False``) give a preview, at most one per utterance, when
  :class:`~agent.dialogue.intents.EarlyDecider` finds the intent unambiguous and stable (only
  between flows, and never when the reply needs a webhook: previews have no side effects).
  Nothing is committed: the session may prepare the reply, and the final transcript decides.
  When the final transcript only extends the previewed partial and names no other intent by
  keyword or pattern, the previewed intent is kept without embedding again, and slots are read
  from the final text: the decision then costs a few hundred microseconds.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Literal, Protocol, overload

import httpx
import msgspec

from agent.config import AgentConfig
from agent.dialogue.actions import call_webhook
from agent.dialogue.decision import DialogueDecision, WebhookCall
from agent.dialogue.embeddings import Matrix
from agent.dialogue.flows import Conversation
from agent.dialogue.intents import EarlyDecider, IntentMatcher, IntentScores
from agent.dialogue.keypad import key_scores, keypad_rule
from agent.dialogue.parsing import normalize, tokenize
from agent.dialogue.script import Script
from agent.digits import KeypadRule
from pipeline.errors import VoxlineError

__all__ = ["Embedder", "IntentEngine", "IntentSession"]

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Sentence embeddings (unit length); :class:`~agent.dialogue.embeddings.SentenceEmbedder`."""

    async def embed(self, text: str) -> Matrix: ...

    async def embed_many(self, texts: Sequence[str]) -> Matrix: ...


class IntentEngine:
    """One agent's intents, flows and webhooks, shared by every session."""

    def __init__(
        self,
        config: AgentConfig,
        matcher: IntentMatcher,
        *,
        embedder: Embedder | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if matcher.uses_embeddings and embedder is None:
            raise ValueError("intents with examples need an embedder")
        self.config = config
        self.script = Script(config)
        self.matcher = matcher
        self.embedder = embedder
        self._own_http = http is None
        self.http = http if http is not None else httpx.AsyncClient()

    @classmethod
    async def load(
        cls,
        config: AgentConfig,
        *,
        embedder: Embedder | None,
        http: httpx.AsyncClient | None = None,
    ) -> IntentEngine:
        """Embed every example phrase (once) and build the engine."""
        dialogue = config.dialogue
        texts = IntentMatcher.example_texts(dialogue.intents)
        vectors = None
        if texts:
            if embedder is None:
                raise ValueError("intents with examples need an embedder")
            vectors = await embedder.embed_many(texts)
        matcher = IntentMatcher(
            dialogue.intents,
            vectors,
            threshold=dialogue.threshold,
            keyword_boost=dialogue.keyword_boost,
        )
        return cls(config, matcher, embedder=embedder, http=http)

    def conversation(self, *, today: dt.date | None = None) -> IntentSession:
        """A new call's dialogue; ``today`` anchors relative dates (default: the local date)."""
        return IntentSession(self, Conversation(self.script, today=today or dt.date.today()))

    async def scores(self, text: str) -> IntentScores:
        """Every intent's score for ``text`` (embedding it unless a pattern decides)."""
        matcher = self.matcher
        if self.embedder is None or not matcher.uses_embeddings or matcher.pattern_match(text):
            return matcher.score(text, None)
        try:
            vector = await self.embedder.embed(text)
        except VoxlineError:
            log.exception("embedding failed: intents scored by keywords and patterns only")
            return matcher.score(text, None)
        return matcher.score(text, vector)

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def __aenter__(self) -> IntentEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class IntentSession:
    """One call's dialogue with the intent engine."""

    def __init__(self, engine: IntentEngine, conversation: Conversation) -> None:
        self.engine = engine
        self.conversation = conversation
        self._early = EarlyDecider(engine.config.dialogue.early_match)
        self._preview: tuple[str, list[str], IntentScores] | None = None
        #: the last final decision kept the intent of a preview (no embedding after the final)
        self.reused_preview = False

    def opening(self) -> DialogueDecision:
        return self.conversation.opening()

    @overload
    async def handle(self, text: str, *, final: Literal[True]) -> DialogueDecision: ...

    @overload
    async def handle(self, text: str, *, final: bool) -> DialogueDecision | None: ...

    async def handle(self, text: str, *, final: bool) -> DialogueDecision | None:
        """Decide a final transcript, or preview a partial one (None: nothing to preview)."""
        if not final:
            return await self._preview_partial(text)
        try:
            return await self._decide(text)
        finally:
            self._early.reset()
            self._preview = None

    async def _preview_partial(self, text: str) -> DialogueDecision | None:
        conversation = self.conversation
        if (
            self._preview is not None
            or not self._early.config.enabled
            or conversation.flow is not None
            or conversation.stage == "ended"
            or not text.strip()
        ):
            return None
        scores = await self.engine.scores(text)
        name = self._early.observe(scores)
        if name is None:
            return None
        snapshot = conversation.snapshot()
        try:
            result = conversation.respond(text, scores)
        finally:
            conversation.restore(snapshot)
        if isinstance(result, WebhookCall):
            return None
        self._preview = (name, _words(text), scores)
        return msgspec.structs.replace(result, early=True)

    async def handle_keys(self, digits: str) -> DialogueDecision:
        """Decide a keyed turn (keypad digits): a menu key, a digit slot's value, or the
        fallback; nothing is embedded (:mod:`agent.dialogue.keypad`)."""
        self._early.reset()
        self._preview = None
        self.reused_preview = False
        scores = key_scores(self.engine.script, digits)
        return await self._settle(self.conversation.respond(digits, scores, keyed=True))

    def keypad(self) -> KeypadRule:
        """When keyed digits are complete, as the conversation stands."""
        conversation, script = self.conversation, self.engine.script
        asking = conversation.asking if conversation.stage == "collecting" else None
        return keypad_rule(script, asking, script.dialogue.digits)

    async def _decide(self, text: str) -> DialogueDecision:
        conversation = self.conversation
        scores = self._kept_preview(text)
        self.reused_preview = scores is not None
        if scores is None and conversation.wants_scores(text):
            scores = await self.engine.scores(text)
        return await self._settle(conversation.respond(text, scores))

    async def _settle(self, result: DialogueDecision | WebhookCall) -> DialogueDecision:
        """The decision, once the webhooks it waits for have answered."""
        conversation = self.conversation
        try:
            while isinstance(result, WebhookCall):
                outcome = await call_webhook(
                    self.engine.http,
                    result,
                    max_bytes=self.engine.config.limits.webhook_max_bytes,
                )
                result = conversation.resume(outcome)
        finally:
            if isinstance(result, WebhookCall):  # cancelled while a webhook ran
                conversation.abandon()
        return result

    def _kept_preview(self, text: str) -> IntentScores | None:
        if self._preview is None:
            return None
        name, partial, scores = self._preview
        words = _words(text)
        if words[: len(partial)] != partial:
            return None
        matcher = self.engine.matcher
        if matcher.pattern_match(text) not in (None, name):
            return None
        if not matcher.keyword_hits(text) <= matcher.keyword_hits(" ".join(partial)) | {name}:
            return None
        return scores


def _words(text: str) -> list[str]:
    return [token.text for token in tokenize(normalize(text))]
