"""The semantic end of turn: an audio model that says whether the caller is done speaking.

- :mod:`pipeline.turn.smart_turn`: smart-turn v3 (:class:`SmartTurn`), its input
  :func:`features`, and :func:`end_of_turn_executor`, the executor every session shares.

Turn-taking (:mod:`agent.turns`) asks it at the caller's first short pause and takes its
answer as an input event; the session carries the question (:mod:`agent.turn_asker`).
"""

from __future__ import annotations

from pipeline.turn.smart_turn import (
    SMART_TURN_SHA256,
    WINDOW_SAMPLES,
    SmartTurn,
    TurnEndRequest,
    TurnEndResult,
    end_of_turn_executor,
    features,
    packaged_model_path,
)

__all__ = [
    "SMART_TURN_SHA256",
    "WINDOW_SAMPLES",
    "SmartTurn",
    "TurnEndRequest",
    "TurnEndResult",
    "end_of_turn_executor",
    "features",
    "packaged_model_path",
]
