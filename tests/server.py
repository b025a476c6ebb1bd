"""A real ``voxline serve`` for a test: :mod:`agent.server_process`, re-exported for the tests."""

from __future__ import annotations

from agent.server_process import ARTIFACTS, ROOT, RunningServer, free_port, running_server

__all__ = ["ARTIFACTS", "ROOT", "RunningServer", "free_port", "running_server"]
