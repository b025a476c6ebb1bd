"""Bounded numbers for settings: the ranges a config file may give, checked when it is decoded.

A leaf module (msgspec only), so that both the config sections (:mod:`agent.config`) and the
structs of the running parts they are made of (:class:`agent.turn_types.TurnConfig`) can use
them without importing each other.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["Milliseconds", "Positive", "Probability", "Seconds"]

Milliseconds = Annotated[int, msgspec.Meta(ge=0, le=600_000)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
