"""agent/steps.py: a model step builds the same message LangChain's own chunk
addition builds, streams every piece of text, and stops at the answer cap.

The chunks are data (what ChatOpenAI yields for a streamed reply), so no model
or server is needed here; the server-level behaviour (retries, stop, deadline)
is covered by tests/test_faults.py and tests/test_runs.py.
"""

from __future__ import annotations

import pytest
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from agent.cancel import CancelHandle
from agent.steps import AnswerTooLong, RunSteps


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
