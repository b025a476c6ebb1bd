"""``voxline test FILE...``: run conversation test files, print the report, write JUnit XML.

Exit status: 0 every conversation passed; 1 one failed; 2 a test file (or its agent file)
is broken, or a model could not be loaded; 3 nothing failed but a file was skipped (an LLM
agent whose ``profile.llm`` cannot be reached).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from agent.conversation_tests import load_test_file
from pipeline.errors import ConfigError, VoxlineError

if TYPE_CHECKING:  # the runner imports the models' code: only `voxline test` loads it
    from agent.conversation_tests_run import FileResult

__all__ = ["EXIT_BROKEN", "EXIT_FAILED", "EXIT_SKIPPED", "add_parser", "run", "run_files"]

EXIT_FAILED = 1
EXIT_BROKEN = 2
EXIT_SKIPPED = 3

HELP = (
    "Run scripted conversations (caller lines as text, or spoken and transcribed, or keypad "
    "digits) against agent files and check intents, slots, replies, webhook calls and call "
    "ends. Exit status: 0 passed, 1 failed, 2 broken test file, 3 skipped (no LLM reachable)."
)


def add_parser(commands: Any) -> None:
    """Add ``test`` to the CLI's subcommands (``argparse``'s ``_SubParsersAction``)."""
    parser = commands.add_parser("test", help="run conversation tests", description=HELP)
    parser.add_argument("files", nargs="+", type=Path, help="test files (*.test.yaml)")
    parser.add_argument("--junit", type=Path, help="also write the results as JUnit XML there")


def run(args: argparse.Namespace) -> int:
    from agent.conversation_tests_report import junit_xml, text_report
    from agent.conversation_tests_run import run_file

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    results: list[FileResult] = []
    broken = 0
    for name in args.files:
        try:
            test = load_test_file(name)
        except ConfigError as error:
            print(f"{name}: {error}", file=sys.stderr)
            broken += 1
            continue
        try:
            results.append(anyio.run(run_file, test))
        except* VoxlineError as group:  # a model that does not load (raised in a task group)
            for leaf in _leaves(group):
                print(f"{name}: {type(leaf).__name__}: {leaf}", file=sys.stderr)
            broken += 1
    print(text_report(results))
    if args.junit is not None:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        args.junit.write_bytes(junit_xml(results))
    return exit_status(results, broken)


def run_files(files: list[str], junit: str | None = None) -> int:
    """``voxline test`` as a function (the tests call it)."""
    namespace = argparse.Namespace(files=[Path(f) for f in files], junit=junit and Path(junit))
    return run(namespace)


def exit_status(results: list[FileResult], broken: int) -> int:
    if any(not result.passed for result in results):
        return EXIT_FAILED
    if broken:
        return EXIT_BROKEN
    if any(result.skipped is not None for result in results):
        return EXIT_SKIPPED
    return 0


def _leaves(group: BaseExceptionGroup[VoxlineError]) -> list[BaseException]:
    found: list[BaseException] = []
    for error in group.exceptions:
        found += _leaves(error) if isinstance(error, BaseExceptionGroup) else [error]
    return found
