"""The LangChain v1 tool-calling agent a run streams (agent/run.py): its graph and limits."""

from __future__ import annotations

from langchain.agents import create_agent

from agent.files import ScopedTools
from agent.steps import ToolSteps


class ChatAgent:
    """A compiled agent graph plus what is needed to report its progress."""

    def __init__(self, model, tools, system_prompt: str, max_tool_iterations: int = 6,
                 model_name: str | None = None, *, max_retries: int = 0,
                 max_answer_chars: int = 0, expects_finish_reason: bool = False):
        """`max_retries`: model calls retried within the run's budget (agent/retry.py);
        `max_answer_chars`: the answer is cut there (0: no cap);
        `expects_finish_reason`: the model reports why it stopped (OpenAI protocol), so
        a stream that ends without saying is an incomplete answer."""
        self.tools = {t.name: t for t in tools}
        # the model and the tools report to the run through agent/steps.py, not callbacks
        self.graph = create_agent(model, tools, system_prompt=system_prompt,
                                  middleware=[ToolSteps(), ScopedTools()])
        self.max_retries = max_retries
        # each tool iteration is a model step plus a tools step; +1 for the final answer
        self.recursion_limit = 2 * max_tool_iterations + 1
        self.model_name = model_name
        self.max_answer_chars = max_answer_chars
        self.expects_finish_reason = expects_finish_reason
