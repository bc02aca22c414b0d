"""The HTTP application: vLLM's OpenAI-compatible routes in front of the online engine.

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions`` (JSON, or server-sent events
with ``stream``), ``GET /v1/models``, ``/health``, ``/version``, ``/metrics``.

A request's output length is its ``max_tokens`` (``max_completion_tokens``), or, when absent,
a draw from the scenario's output-length distribution (at least ``min_tokens``, at most what
the context window leaves); the text is deterministic filler, one word per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect

from servesim.chat_templates import chat_template_tokens
from servesim.run import Prepared, prepare, summarize_run
from servesim.scenario import Scenario
from servesim.serve.metrics import ServeMetrics
from servesim.serve.online import OnlineEngine, Stream
from servesim.serve.protocol import ApiError, Generation, Reply, check_length, parse_generation
from servesim.serve.tokens import PromptCounter, filler_text
from servesim.validation import replace

_encode = msgspec.json.Encoder().encode


def _json(body: Any, status: int = 200) -> Response:
    return Response(_encode(body), status_code=status, media_type="application/json")


def _event(body: Any) -> bytes:
    return b"data: " + _encode(body) + b"\n\n"


@dataclass
class Served:
    """Everything one server holds: the engine, its metrics, how prompts are counted."""

    prepared: Prepared
    engine: OnlineEngine
    metrics: ServeMetrics
    counter: PromptCounter
    model_name: str
    draw_output_len: Callable[[], int] | None
    """A draw from the scenario's output-length distribution (None: a replay has none)."""

    @property
    def max_model_len(self) -> int:
        return self.prepared.max_model_len

    def output_length(self, gen: Generation) -> tuple[int, str]:
        """Tokens to generate and the finish reason a client will read."""
        prompt = gen.prompt.num_tokens
        if gen.max_tokens is not None:
            return gen.max_tokens, "length"
        # Room left by the context window and by the KV cache (prompt + output − 1 tokens):
        # vLLM's default max_tokens, so a draw cut there stops for "length".
        room = min(self.max_model_len - prompt, self.prepared.kv_tokens - prompt + 1)
        if gen.min_tokens > room:
            raise ApiError(
                f"min_tokens must be less than or equal to max_tokens={room}, got "
                f"{gen.min_tokens}.",
                param="min_tokens",
            )
        drawn = self.draw_output_len() if self.draw_output_len is not None else room
        tokens = max(1, min(room, max(gen.min_tokens, drawn)))
        return tokens, "length" if tokens == room else "stop"

    def submit(self, gen: Generation, received: float | None = None) -> Stream:
        if gen.model and gen.model != self.model_name:
            raise ApiError(f"The model `{gen.model}` does not exist.", 404, "model")
        prompt = gen.prompt.num_tokens
        check_length(prompt, gen.max_tokens, self.max_model_len)
        max_tokens, reason = self.output_length(gen)
        kv_tokens = self.prepared.kv_tokens
        if prompt + max_tokens - 1 > kv_tokens:
            raise ApiError(
                f"the request needs {prompt + max_tokens - 1} tokens of KV cache but the whole "
                f"cache holds {kv_tokens}",
                param="max_tokens",
            )
        return self.engine.submit(prompt, max_tokens, gen.prompt.hash_ids, reason, received)


def build_served(
    scenario: Scenario,
    time_scale: float = 1.0,
    model_name: str | None = None,
    tokenizer: str | Path | None = None,
) -> Served:
    """The fleet of ``scenario`` ready to serve (fast-forward off: tokens stream per step)."""
    scenario = replace(scenario, fast_forward=False)
    prepared = prepare(scenario, sessions=iter(()))
    name = model_name or prepared.model.name
    instances = [i for g in prepared.runtimes for i in g.instances]
    sched = scenario.scheduler
    metrics = ServeMetrics(name, instances, prepared.max_model_len, sched.max_num_batched_tokens)
    engine = OnlineEngine(prepared, time_scale, listener=metrics)
    template = chat_template_tokens(prepared.model.name)
    counter = PromptCounter(sched.block_size, tokenizer, template, prepared.model.vocab_size)
    draw = None
    if scenario.workload.trace is None:
        from servesim.workload.lengths import length_sampler

        sample = length_sampler(scenario.workload.effective_output_len)
        rng = np.random.default_rng(scenario.seed)
        draw = lambda: int(sample(rng, 1)[0])  # noqa: E731
    return Served(prepared, engine, metrics, counter, name, draw)


def served_result(served: Served):
    """The run's :class:`~servesim.run.Result` over the requests that finished."""
    engine = served.engine
    result = summarize_run(served.prepared, engine.busy_wall_s, compare_speculation=False)
    result.workload_description = (
        f"served online: {engine.num_submitted} client requests, time scale {engine.time_scale:g}"
    )
    return result


def write_served_run(served: Served, out: Path, table_format: str = "csv") -> str:
    """Write the run folder of what was served (its tables as ``table_format``); a line
    saying what happened."""
    from servesim.errors import ServesimError
    from servesim.output import table_files, write_run

    done = served.prepared.sim.records.num_completed
    if done == 0:
        return f"no request finished: {out}/ not written"
    try:
        write_run(served_result(served), out, table_format=table_format)
    except ServesimError as err:
        return f"{out}/ not written: {err}"
    files = ", ".join(["summary.json", *table_files(table_format)])
    return f"wrote {out}/: {files} ({done} requests)"


def create_app(served: Served, out: Path | None = None, table_format: str = "csv") -> FastAPI:
    """The ASGI application serving ``served``; on shutdown it writes ``out`` (if given; its
    tables as ``table_format``)."""
    engine = served.engine

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(engine.run())
        yield
        engine.stop()
        await task
        if out is not None:
            print(write_served_run(served, out, table_format), file=sys.stderr, flush=True)

    app = FastAPI(title="servesim", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)  # fmt: skip

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> Response:
        return _json(err.body(), err.status)

    async def generate(request: Request, chat: bool) -> Response:
        received = engine.clock()
        try:
            body = msgspec.json.decode(await request.body())
        except ClientDisconnect:
            # (The client went away before its body arrived: nothing to serve, nobody to
            # answer, and not the server's error: 499, as nginx logs it, sent to no one.)
            return Response(status_code=499)
        except msgspec.DecodeError as err:
            raise ApiError(f"the request body is not valid JSON: {err}") from None
        gen = parse_generation(body, chat, served.counter)
        stream = served.submit(gen, received)
        reply = Reply.new(gen, served.model_name)
        if gen.stream:
            return StreamingResponse(_sse(engine, stream, reply), media_type="text/event-stream")
        # (As vLLM's handlers, which race a request against its client's disconnect: a
        # client gone before the answer aborts the request, freeing its room in the batch.)
        answered = asyncio.ensure_future(_final_emission(engine, stream))
        gone = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait((answered, gone), return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not answered.done():
            answered.cancel()
            engine.abort(stream)
            return Response(status_code=499)
        text = filler_text(stream.index, 0, stream.sent)
        return _json(reply.full(text, stream.finish_reason, stream.sent))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await generate(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await generate(request, chat=True)

    @app.get("/v1/models")
    async def models() -> Response:
        name = served.model_name
        card = {"id": name, "object": "model", "created": int(time.time()), "owned_by": "vllm",
                "root": served.prepared.model.name, "parent": None,
                "max_model_len": served.max_model_len, "permission": []}  # fmt: skip
        return _json({"object": "list", "data": [card]})

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/version")
    async def version() -> Response:
        from servesim import __version__

        return _json({"version": f"servesim-{__version__}"})

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(served.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one); a refusal is one line."""
    from servesim.errors import ServesimError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as err:
        raise ServesimError(
            f"cannot listen on {host}:{port}: {os.strerror(err.errno) if err.errno else err}",
            field="--port",
            fix="choose another --port (or --host), or stop what uses it",
        ) from None


DRAIN_BACKSTOP_S = 1.0
"""Seconds after the drain's end at which uvicorn cancels connections still open (the aborted
streams have ended by then)."""


def run_server(
    served: Served,
    sock: socket.socket,
    out: Path | None = None,
    drain_s: float = 5.0,
    table_format: str = "csv",
) -> None:
    """Serve on ``sock`` until SIGINT or SIGTERM; then let open streams finish for up to
    ``drain_s`` seconds, end the rest with finish reason ``abort`` (a last chunk and ``[DONE]``,
    as vLLM aborts the requests in flight), and write ``out`` (the process then exits
    normally)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:  # (the first signal: a second one forces the exit)
                loop = asyncio.get_running_loop()
                loop.call_later(drain_s, served.engine.abort_open)
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            # NOTE: uvicorn's own capture re-raises the signal once it has shut down, which
            # would end the process before a caller's cleanup; a stop is the normal end here.
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    app = create_app(served, out, table_format)
    # (uvicorn's own deadline only backs ours up: at it, it cancels what is still open.)
    config = uvicorn.Config(app, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=drain_s + DRAIN_BACKSTOP_S)  # fmt: skip
    Server(config).run(sockets=[sock])


async def _final_emission(engine: OnlineEngine, stream: Stream) -> None:
    """Wait for ``stream``'s last emission and its instant (a shutdown's abort: at once)."""
    emission = None
    while emission is None or not emission.finished:
        emission = await stream.emissions.get()
    if not emission.aborted:
        await engine.until(emission.time_s)


async def _disconnected(request: Request) -> None:
    """Return when the client of ``request`` (its body read) disconnects."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _sse(engine: OnlineEngine, stream: Stream, reply: Reply) -> AsyncIterator[bytes]:
    """A streamed response: each emission's tokens at their simulated instant. A client gone
    mid-stream (the response cancelled, or closed at a write) aborts its request."""
    finished = False
    try:
        if reply.gen.chat:
            yield _event(reply.role_chunk())
        produced = 0
        while True:
            emission = await stream.emissions.get()
            if emission.aborted:
                finished = True
                yield _event(reply.chunk("", "abort"))
                break
            await engine.until(emission.time_s)
            text = filler_text(stream.index, produced, emission.num_tokens)
            produced += emission.num_tokens
            reason = stream.finish_reason if emission.finished else None
            finished = emission.finished
            yield _event(reply.chunk(text, reason))
            if emission.finished:
                break
    finally:
        if not finished:
            engine.abort(stream)
    if reply.gen.include_usage:
        yield _event(reply.usage_chunk(produced))
    yield b"data: [DONE]\n\n"
