"""agent/steps.py: a model step builds the same message LangChain's own chunk
addition builds, streams every piece of text, and stops at the answer cap.

The chunks are data (what ChatOpenAI yields for a streamed reply), so no model
or server is needed here; the server-level behaviour (retries, stop, deadline)
is covered by tests/test_faults.py and tests/test_runs.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from agent.cancel import CancelHandle
from agent.steps import AnswerTooLong, RunSteps
from tests.helpers import ROOT


def reply_chunks(content_blocks: bool = False) -> list[ChatGenerationChunk]:
    """Text, then a tool call in two pieces, then finish_reason and usage."""
    def text(value):
        content = [{"type": "text", "text": value, "index": 0}] if content_blocks else value
        return ChatGenerationChunk(message=AIMessageChunk(content=content, id="run-1"))

    call = [{"name": "calculator", "args": '{"expression": ', "id": "call_1", "index": 0}]
    more = [{"name": None, "args": '"2+2"}', "id": None, "index": 0}]
    return [
        text("Let me "), text("work that "), text("out."),
        ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=call)),
        ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=more)),
        ChatGenerationChunk(message=AIMessageChunk(content=""),
                            generation_info={"finish_reason": "tool_calls"}),
        ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata={
            "input_tokens": 12, "output_tokens": 7, "total_tokens": 19})),
    ]


@pytest.mark.parametrize("content_blocks", [False, True], ids=["text", "content-blocks"])
def test_a_step_builds_the_message_langchain_builds(content_blocks):
    streamed: list[str] = []
    steps = RunSteps(CancelHandle(), lambda _step, text: streamed.append(text))
    ours = steps.model_step(lambda: iter(reply_chunks(content_blocks))).generations[0].message
    theirs = generate_from_stream(iter(reply_chunks(content_blocks))).generations[0].message
    assert ours.content == theirs.content
    assert ours.tool_calls == theirs.tool_calls == [
        {"name": "calculator", "args": {"expression": "2+2"}, "id": "call_1", "type": "tool_call"}]
    assert ours.usage_metadata == theirs.usage_metadata
    assert ours.response_metadata.get("finish_reason") == "tool_calls"
    assert "".join(streamed) == "Let me work that out."


def test_the_answer_cap_stops_the_stream_and_closes_it():
    closed = []

    def stream():
        try:
            for n in range(1000):
                yield ChatGenerationChunk(message=AIMessageChunk(content=f"word{n} "))
        finally:
            closed.append(True)

    steps = RunSteps(CancelHandle(), lambda _step, _text: None, max_chars=50)
    with pytest.raises(AnswerTooLong):
        steps.model_step(stream)
    assert closed == [True]
    assert steps.seen < 100  # it stopped reading soon after the cap


def test_cancelling_a_pending_flush_costs_the_run_nothing():
    """Under eventlet, cancelling the token stream's pending flush (`call_later`) neither
    yields the run's green thread to the hub nor leaves a killed green thread behind,
    and a flush that is not cancelled runs in a green thread of its own (it emits,
    which may wait on a socket or Redis). With `eventlet.spawn_after`, cancel() killed
    the waiting green thread: a trip round the hub, where another ready green thread
    ran first (and, in the server, a GreenletExit cycle left for the collector)."""
    code = textwrap.dedent("""
        import eventlet; eventlet.monkey_patch()
        import greenlet
        from eventlet import hubs
        from agent.cancel import call_later
        order, ran = [], []
        def run():
            eventlet.spawn_n(order.append, "another green thread")  # runs at our next yield
            call_later(60, lambda: ran.append("the cancelled flush")).cancel()
            order.append("the run, after cancel")
            call_later(0, lambda: ran.append(greenlet.getcurrent() is not hubs.get_hub().greenlet))
            eventlet.sleep(0.2)
        eventlet.spawn(run).wait()
        print(order[0], "|", ran)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "the run, after cancel | [True]", done.stdout
