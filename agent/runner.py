"""The LangChain v1 tool-calling agent a run streams (agent/run.py): its graphs and limits."""

from __future__ import annotations

import threading

from langchain.agents import create_agent

from agent.files import FILES_TOOL, MEMORY_TOOLS, ScopedTools
from agent.steps import ToolSteps


class ChatAgent:
    """Compiled agent graphs plus what is needed to report a run's progress.

    `graph` offers every tool and lets `ScopedTools` decide per model call which of
    the run-scoped ones (files, memory) the run may use. When the call that began the
    run already said (its `context`) and the conversation has no ready files, the run
    takes a graph compiled without the tools it cannot use and without that
    middleware: no per-call work, and LangChain's trace wrapper around a middleware
    hook (about 0.4 ms a model call) is not on the path to the first token. Such
    graphs are kept per tool set, at most two.
    """

    def __init__(self, model, tools, system_prompt: str, max_tool_iterations: int = 6,
                 model_name: str | None = None, *, max_retries: int = 0,
                 max_answer_chars: int = 0, expects_finish_reason: bool = False):
        """`max_retries`: model calls retried within the run's budget (agent/retry.py);
        `max_answer_chars`: the answer is cut there (0: no cap);
        `expects_finish_reason`: the model reports why it stopped (OpenAI protocol), so
        a stream that ends without saying is an incomplete answer."""
        self.tools = {t.name: t for t in tools}
        self._model, self._system_prompt = model, system_prompt
        # the model and the tools report to the run through agent/steps.py, not callbacks
        scoped = bool(self.tools.keys() & {FILES_TOOL, *MEMORY_TOOLS})
        self.graph = create_agent(model, tools, system_prompt=system_prompt,
                                  middleware=[ToolSteps(), ScopedTools()] if scoped
                                  else [ToolSteps()])
        self._graphs: dict[bool, object] = {}  # memory enabled -> graph without files
        self._lock = threading.Lock()
        if not scoped:  # an assistant without files or memory tools: one graph, no middleware
            self._graphs = {True: self.graph, False: self.graph}
        else:
            self.graph_for({"files": [], "memory_enabled": True})  # the usual run's, built now
        self.max_retries = max_retries
        # each tool iteration is a model step plus a tools step; +1 for the final answer
        self.recursion_limit = 2 * max_tool_iterations + 1
        self.model_name = model_name
        self.max_answer_chars = max_answer_chars
        self.expects_finish_reason = expects_finish_reason

    def graph_for(self, context: dict | None):
        """The graph for a run whose tools' `context` ({files, memory_enabled}) is known:
        without the run-scoped tools it cannot use when it has no files; else `graph`."""
        if context is None or context.get("files"):
            return self.graph  # the files tool's description names the files: per call
        memory = bool(context.get("memory_enabled", True))
        graph = self._graphs.get(memory)
        if graph is None:
            with self._lock:
                graph = self._graphs.get(memory)
                if graph is None:
                    hidden = {FILES_TOOL} | (set() if memory else set(MEMORY_TOOLS))
                    tools = [t for name, t in self.tools.items() if name not in hidden]
                    graph = create_agent(self._model, tools, system_prompt=self._system_prompt,
                                         middleware=[ToolSteps()])
                    self._graphs[memory] = graph
        return graph
