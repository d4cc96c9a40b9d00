"""ChatAgent.graph_for: a run without ready files gets a graph compiled without the tools it
cannot use (and without the per-call ScopedTools middleware), built once and reused."""

from __future__ import annotations

from langchain_core.tools import StructuredTool

from agent.offline import OfflineChatModel
from agent.runner import ChatAgent


def _tool(name: str):
    return StructuredTool.from_function(lambda text: text, name=name, description=f"The {name}.")


calculator, conversation_files, save_memory, search_memories = (
    _tool(n) for n in ("calculator", "conversation_files", "save_memory", "search_memories"))


def offered(graph) -> set[str]:
    return set(graph.nodes["tools"].bound.tools_by_name)


def test_graphs_by_what_the_run_may_use():
    agent = ChatAgent(OfflineChatModel(), [calculator, conversation_files, save_memory,
                                           search_memories], "Be brief.")
    everything = {"calculator", "conversation_files", "save_memory", "search_memories"}
    assert offered(agent.graph) == everything
    # unknown context, or ready files (their names go into the tool's description per
    # call): the full graph with its middleware
    assert agent.graph_for(None) is agent.graph
    assert agent.graph_for({"files": [{"id": "f1", "name": "a.txt"}],
                            "memory_enabled": False}) is agent.graph
    lean = agent.graph_for({"files": [], "memory_enabled": True})
    assert offered(lean) == {"calculator", "save_memory", "search_memories"}
    assert agent.graph_for({"files": [], "memory_enabled": True}) is lean  # built once
    assert offered(agent.graph_for({"files": [], "memory_enabled": False})) == {"calculator"}


def test_an_agent_without_run_scoped_tools_has_one_graph():
    agent = ChatAgent(OfflineChatModel(), [calculator], "Be brief.")
    assert agent.graph_for({"files": [], "memory_enabled": False}) is agent.graph
