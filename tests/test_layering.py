"""The import walls between the project's layers, checked on every module's source.

Layers, bottom up: ``pipeline`` (audio, events, channels, the ASR and VAD stages); ``transports``
and ``voices`` beside each other on top of it; ``agent`` on top of everything. ``bench`` and
``tests`` sit outside the package and use it, never each other.

====================================  ==========================  ==============================
wall                                  who                         never imports
====================================  ==========================  ==============================
pipeline-is-the-bottom                pipeline/                   agent, transports, voices
transports-use-only-pipeline          transports/                 agent, voices
voices-use-only-pipeline              voices/                     agent, transports
agent-is-the-top                      pipeline/ transports/       agent
                                      voices/
the-package-stands-alone              agent/ pipeline/            tests, bench
                                      transports/ voices/
bench-does-not-use-tests              bench/                      tests
tests-do-not-use-bench                tests/                      bench
====================================  ==========================  ==============================

An import is every ``import`` and ``from ... import`` anywhere in a module (functions and
``if TYPE_CHECKING:`` blocks included; relative imports resolved against the module's
package) and every ``importlib.import_module("...")`` or ``__import__("...")`` of a literal
name. Modules are read with :mod:`ast`, never imported.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("agent", "pipeline", "transports", "voices", "bench", "tests")
PACKAGE = frozenset({"agent", "pipeline", "transports", "voices"})  # what the wheel ships


@dataclass(frozen=True)
class Wall:
    id: str
    rule: str
    importers: frozenset[str]  # layers whose modules it binds
    forbidden: frozenset[str]  # layers those modules never import


WALLS = (
    Wall(
        "pipeline-is-the-bottom",
        "pipeline/ imports nothing above it (agent, transports, voices)",
        frozenset({"pipeline"}),
        frozenset({"agent", "transports", "voices"}),
    ),
    Wall(
        "transports-use-only-pipeline",
        "transports/ imports pipeline only (not agent, not voices)",
        frozenset({"transports"}),
        frozenset({"agent", "voices"}),
    ),
    Wall(
        "voices-use-only-pipeline",
        "voices/ imports pipeline only (not agent, not transports)",
        frozenset({"voices"}),
        frozenset({"agent", "transports"}),
    ),
    Wall(
        "agent-is-the-top",
        "nothing in pipeline/, transports/ or voices/ imports agent",
        frozenset({"pipeline", "transports", "voices"}),
        frozenset({"agent"}),
    ),
    Wall(
        "the-package-stands-alone",
        "the package (agent/, pipeline/, transports/, voices/) imports neither tests nor bench",
        PACKAGE,
        frozenset({"tests", "bench"}),
    ),
    Wall(
        "bench-does-not-use-tests",
        "bench/ never imports tests (what both need lives in the package)",
        frozenset({"bench"}),
        frozenset({"tests"}),
    ),
    Wall(
        "tests-do-not-use-bench",
        "tests/ never imports bench",
        frozenset({"tests"}),
        frozenset({"bench"}),
    ),
)


@dataclass(frozen=True)
class Import:
    """``module`` imported at ``path:line`` (``path`` relative to the checkout)."""

    path: str
    line: int
    module: str

    @property
    def importer(self) -> str:
        return self.path.partition("/")[0]

    @property
    def layer(self) -> str:
        return self.module.partition(".")[0]

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.module}"


def module_name(path: str) -> str:
    """``agent/caller.py`` -> ``agent.caller``; ``pipeline/asr/__init__.py`` -> ``pipeline.asr``."""
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(source: str, path: str) -> list[Import]:
    """Every module that the source of ``path`` imports (see the module docstring)."""
    name = module_name(path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append(Import(path, node.lineno, base))
        elif (
            isinstance(node, ast.Call)
            and _called(node.func) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(path, node.lineno, node.args[0].value))
    return found


def _called(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


@functools.cache
def project_imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for layer in LAYERS:
        for file in sorted((ROOT / layer).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            found += imports_in(file.read_text(encoding="utf-8"), path)
    return tuple(found)


@pytest.mark.parametrize("wall", WALLS, ids=[wall.id for wall in WALLS])
def test_no_import_crosses_a_wall(wall: Wall) -> None:
    crossings = [
        found
        for found in project_imports()
        if found.importer in wall.importers and found.layer in wall.forbidden
    ]
    assert not crossings, f"{wall.rule}, but:\n" + "\n".join(f"  {c}" for c in crossings)


def test_every_layer_is_read_and_imports_what_it_stands_on() -> None:
    """The walls are not kept by reading nothing: each layer's known imports are seen."""
    seen = {(found.importer, found.layer) for found in project_imports()}
    expected = {
        ("pipeline", "pipeline"),
        ("transports", "pipeline"),
        ("voices", "pipeline"),
        ("agent", "pipeline"),
        ("agent", "transports"),
        ("agent", "voices"),
        ("bench", "agent"),
        ("tests", "agent"),
    }
    assert expected <= seen, expected - seen


SAMPLE = """\
import os.path, agent.caller as caller
from typing import TYPE_CHECKING
from . import listening
from .listening import render
from ..audio import espeak
if TYPE_CHECKING:
    from transports.native import NativeProtocol
def later():
    import voices
    importlib.import_module("bench.vad")
    __import__("pipeline")
"""


def test_every_kind_of_import_is_seen_with_relative_ones_resolved() -> None:
    found = [(i.line, i.module) for i in imports_in(SAMPLE, "tests/voices/test_catalog.py")]
    assert sorted(found) == [
        (1, "agent.caller"),
        (1, "os.path"),
        (2, "typing"),
        (3, "tests.voices"),
        (4, "tests.voices.listening"),
        (5, "tests.audio"),
        (7, "transports.native"),
        (9, "voices"),
        (10, "bench.vad"),
        (11, "pipeline"),
    ]


def test_a_package_resolves_relative_imports_against_itself() -> None:
    source = "from . import detector\nfrom .events import SpeechStopped\n"
    found = [i.module for i in imports_in(source, "pipeline/vad/__init__.py")]
    assert found == ["pipeline.vad", "pipeline.vad.events"]


def test_a_crossing_is_named_by_file_line_and_module() -> None:
    (crossing,) = imports_in("from agent.session import Session\n", "pipeline/media.py")
    assert str(crossing) == "pipeline/media.py:1: imports agent.session"
    assert (crossing.importer, crossing.layer) == ("pipeline", "agent")
