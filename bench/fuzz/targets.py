"""The fuzz targets, found by name (:data:`bench.fuzz.TARGET_MODULES`), and their seeds."""

from __future__ import annotations

import importlib

from bench.fuzz import TARGET_MODULES
from bench.fuzz.regressions import REGRESSIONS
from bench.fuzz.target import Target

__all__ = ["seeds_of", "target"]


def target(name: str) -> Target:
    """The target ``name``, importing its module (under instrumentation, if one is on)."""
    module = importlib.import_module(TARGET_MODULES[name][0])
    found: tuple[Target, ...] = module.TARGETS
    return next(t for t in found if t.name == name)


def seeds_of(target: Target) -> list[bytes]:
    """The target's seeds, and the inputs that once crashed it."""
    return [*target.seeds(), *REGRESSIONS.get(target.name, ())]
