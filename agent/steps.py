"""What the model and tool steps of the current run report to, without callbacks.

`Run` (agent/run.py) puts a `RunSteps` in a context variable; the agent's chat
model (agent/models.py, agent/offline.py) and the `ToolSteps` middleware find
it there. A model step streams its reply straight into the run: tokens out,
the cancel handle attached to the green thread that reads the HTTP stream, a
turn for the hub every YIELD_EVERY, the answer cap, and retries within the
run's budget before the first chunk.

Why not LangChain callbacks: a callback list in the graph's config reaches
every runnable of the graph (chain start and end events for each node, a
callback manager per step), the streaming path then dispatches each chunk to
every handler, and LangChain merges the chunks one by one into a new message
each time. For a five-token answer that was about 1 ms of CPU of a 4 ms agent
step; a retry middleware added another 0.5 ms (LangSmith's trace wrapper
around every `wrap_model_call`). Here a model step costs the model's own
stream plus a few dict lookups per chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessageChunk, message_chunk_to_message
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from agent.cancel import CancelHandle
from agent.retry import budget_retrying
from agent.usage import call_usage

YIELD_EVERY = 0.005  # seconds of token work before the hub gets a turn
WAITED = 0.001  # seconds: a read that took this long waited for the network (the hub ran)
STEP_SEPARATOR = "\n\n"  # between the texts of two model steps


class AnswerTooLong(BaseException):  # noqa: N818 - a signal, not an error
    """Raised in the model's stream once the answer passed its cap: it stops reading
    and closes the HTTP response, so the provider stops generating. A BaseException,
    like RunCancelled, so that no `except Exception` takes it for a failure."""


class RunSteps:
    """One run's hooks: `text(step, text)` takes answer text as it streams."""

    def __init__(self, cancel: CancelHandle, text: Callable[[object, str], None], *,
                 max_chars: int = 0, max_retries: int = 0, marks: dict | None = None,
                 model: str | None = None, calls: list | None = None):
        """`marks`: gets the monotonic times of the first model request ("model_request")
        and of its first chunk ("model_reply"); `model`: the model this run calls (None:
        the configured one); `calls`: gets each model call's usage (agent/usage.py)."""
        self.model = model
        self.calls = calls
        self.cancel = cancel
        self.marks = {} if marks is None else marks
        self.text = text
        self.max_chars = max_chars
        self.max_retries = max_retries
        self.seen = 0  # characters of answer text read from the model so far

    def model_step(self, open_stream: Callable[[], Iterator[ChatGenerationChunk]],
                   prompt=None) -> ChatResult:
        """Read one model reply from `open_stream()`, streaming its text into the run;
        returns it whole, as the agent expects from the model. `prompt`: its messages,
        for an estimate of the call's usage when the stream ends without a usage chunk."""
        step = object()  # this step, for the cancel handle and the token stream
        self.cancel.attach(step)
        stream = None
        texts: list[str] = []
        usage = None
        try:
            self.marks.setdefault("model_request", time.monotonic())
            stream, chunk = budget_retrying(self.cancel, self.max_retries)(_opened, open_stream)
            self.marks.setdefault("model_reply", time.monotonic())
            rest: list[AIMessageChunk] = []  # the chunks that carry more than text
            every: list[AIMessageChunk] = []  # all of them, for content blocks (below)
            last_yield = time.monotonic()
            while chunk is not None:
                message = chunk.message
                if chunk.generation_info:  # finish_reason, model name: as LangChain merges them
                    message.response_metadata = {**message.response_metadata,
                                                 **chunk.generation_info}
                plain = isinstance(message.content, str)
                text = message.content if plain else message.text
                if text:
                    self.text(step, text)
                    self.seen += len(text)
                    if self.max_chars and self.seen > self.max_chars + len(STEP_SEPARATOR):
                        raise AnswerTooLong(f"the answer passed {self.max_chars} characters")
                    texts.append(text)
                every.append(message)
                if message.usage_metadata:
                    usage = message.usage_metadata
                if (message.tool_call_chunks or message.usage_metadata or not plain
                        or message.response_metadata or message.additional_kwargs or not rest):
                    rest.append(message)
                now = time.monotonic()
                if now - last_yield >= YIELD_EVERY:
                    time.sleep(0)  # green under eventlet: a fast stream must not hold the hub
                    last_yield = now
                chunk = next(stream, None)
                after = time.monotonic()
                if after - now >= WAITED:
                    last_yield = after  # the read waited for the network: the hub ran meanwhile
        finally:
            _close(stream)  # closes the HTTP response when the step ends early
            self.cancel.detach(step)
            if self.calls is not None and (stream is not None or usage is not None):
                self.calls.append(call_usage(usage, prompt, texts))
        # LangChain adds the chunks up one by one (a new message each time); only the few
        # that carry more than text are added here, and the text is joined once. Content
        # blocks (not plain text) are left to LangChain's own addition.
        blocks = any(not isinstance(m.content, str) for m in rest)  # block chunks are in `rest`
        parts = every if blocks else rest
        whole = parts[0] + parts[1:] if len(parts) > 1 else parts[0] if parts else AIMessageChunk("")
        if not blocks:
            whole.content = "".join(texts)
        return ChatResult(generations=[ChatGeneration(message=message_chunk_to_message(whole))])


def _opened(open_stream):
    """The stream and its first chunk (None when empty): a failed request or connection
    raises here, before any token was sent, which is when a retry is safe."""
    stream = open_stream()
    try:
        return stream, next(stream, None)
    except BaseException:
        _close(stream)
        raise


def _close(stream) -> None:
    """Close a model's chunk generator (and so its HTTP response); a plain iterator has
    nothing to close."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


current_run: ContextVar[RunSteps | None] = ContextVar("jellychat_run_steps", default=None)


def bound_once(cache: dict, tools, kwargs: dict, bind: Callable):
    """`bind(tools, **kwargs)` kept in `cache` per tool list and options (at most 16).

    The agent binds its tools before every model step; both chat models (agent/models.py,
    agent/offline/model.py) make that binding once: converting the tools' schemas, or a
    new model object that LangChain serialises for its callbacks, cost a millisecond or
    more each time. The tools are kept with the binding, so their ids stay theirs."""
    key = (tuple(id(t) for t in tools), repr(sorted(kwargs.items())))
    hit = cache.get(key)
    if hit is None:
        hit = (list(tools), bind(tools, **kwargs))
        if len(cache) < 16:
            cache[key] = hit
    return hit[1]


def model_step_in_run(open_stream, prompt=None) -> ChatResult | None:
    """The model's reply streamed into the current run; None outside a run."""
    steps = current_run.get()
    return None if steps is None else steps.model_step(open_stream, prompt)


def run_model() -> str | None:
    """The model the current run calls, when it is not the configured one's default."""
    steps = current_run.get()
    return None if steps is None else steps.model


class ToolSteps(AgentMiddleware):
    """Attaches the green thread that runs a tool to the run's cancel handle, so a
    stop or the deadline interrupts a tool waiting on the network or the database."""

    def wrap_tool_call(self, request, handler):
        steps = current_run.get()
        if steps is None:
            return handler(request)
        key = object()
        steps.cancel.attach(key)
        try:
            return handler(request)
        finally:
            steps.cancel.detach(key)
