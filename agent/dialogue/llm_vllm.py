"""The LLM in process: vLLM's ``AsyncLLM`` pinned to one GPU (the GPU profile).

``vllm`` is optional and imported only here, when a :class:`VLLMBackend` is made. The engine
core runs in its own process, which inherits ``CUDA_VISIBLE_DEVICES``; so :meth:`VLLMBackend
.start` sets it to the configured device only while it creates the engine, which pins the
model to that GPU without changing which GPUs the rest of Voxline sees.

The prompt is rendered with the model's own chat template (tools included); generation
streams deltas (``RequestOutputKind.DELTA``). Tool calls come back as text and are parsed by
:class:`~agent.dialogue.llm_stream.ReplyAssembler` like those of any server without a tool
parser. Closing :meth:`~VLLMBackend.stream` closes vLLM's ``generate`` generator, which aborts
the request in the engine (its ``GeneratorExit`` path calls ``abort``).

Not exercised by the CPU test suite (vLLM needs a GPU and torch); see the report of the change
that added it for what was verified where.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import uuid
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import anyio

from agent.dialogue.llm_stream import ChatRequest, StreamEnd, StreamItem, TextDelta, Usage
from pipeline.errors import ModelError


class VLLMBackend:
    """Chat completions from an in-process vLLM engine on one device (``cuda:N``)."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "cuda:0",
        gpu_memory_utilization: float = 0.5,
        max_model_len: int = 4096,
        engine_args: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self._args = {
            "model": model,
            "gpu_memory_utilization": gpu_memory_utilization,
            "max_model_len": max_model_len,
            **(engine_args or {}),
        }
        self._engine: Any = None
        self._tokenizer: Any = None

    async def start(self) -> None:
        """Load the model (minutes on first use). Raises :class:`ModelError` without vLLM."""
        try:
            arg_utils = importlib.import_module("vllm.engine.arg_utils")
            async_llm = importlib.import_module("vllm.v1.engine.async_llm")
        except ImportError as error:
            raise ModelError("the vllm backend needs the `vllm` package and a GPU") from error
        with _visible_device(self.device):
            args = arg_utils.AsyncEngineArgs(**self._args)
            self._engine = async_llm.AsyncLLM.from_engine_args(args)
        tokenizer = getattr(self._engine, "get_tokenizer", None)
        if tokenizer is not None:
            result = tokenizer()
            self._tokenizer = await result if inspect.isawaitable(result) else result
        else:
            self._tokenizer = self._engine.renderer.tokenizer

    async def aclose(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    def prompt(self, request: ChatRequest) -> str:
        """The model's chat template applied to the request (tools included)."""
        if self._tokenizer is None:
            raise ModelError("VLLMBackend.start() was not called")
        prompt: str = self._tokenizer.apply_chat_template(
            request.messages,
            tools=request.tools or None,
            add_generation_prompt=True,
            tokenize=False,
        )
        return prompt

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamItem, None]:
        """Yield the reply's deltas, then one :class:`StreamEnd`. Close it to abort."""
        prompt = self.prompt(request)  # raises ModelError before start()
        sampling = importlib.import_module("vllm.sampling_params")
        params = sampling.SamplingParams(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            stop=list(request.stop) or None,
            output_kind=sampling.RequestOutputKind.DELTA,
        )
        outputs = self._engine.generate(prompt, params, f"voxline-{uuid.uuid4()}")
        generated = 0
        try:
            async for output in outputs:
                completion = output.outputs[0]
                generated += len(completion.token_ids or ())  # DELTA: this step's tokens
                if completion.text:
                    yield TextDelta(completion.text)
                if output.finished:
                    usage = Usage(
                        prompt_tokens=len(output.prompt_token_ids or ()),
                        completion_tokens=generated,
                    )
                    yield StreamEnd(completion.finish_reason, usage)
                    return
        except Exception as error:
            raise ModelError(f"vLLM generation failed: {error}") from error
        finally:
            with anyio.CancelScope(shield=True):
                await outputs.aclose()  # aborts the request if it is still running
        raise ModelError("vLLM stream ended before the reply finished")


@contextlib.contextmanager
def _visible_device(device: str) -> Iterator[None]:
    """``CUDA_VISIBLE_DEVICES`` set to ``device``'s index while the engine process starts."""
    kind, _, index = device.partition(":")
    if kind != "cuda":
        yield
        return
    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = index or "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = previous
