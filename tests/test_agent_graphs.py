"""ChatAgent.graph_for: a run without ready files gets a graph compiled without the tools it
cannot use (and without the per-call ScopedTools middleware), built once and reused."""

from __future__ import annotations

from langchain_core.tools import tool

from agent.offline import OfflineChatModel
from agent.runner import ChatAgent


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    return expression


@tool
def conversation_files(query: str) -> str:
    """Search the conversation's files."""
    return query


@tool
def save_memory(fact: str) -> str:
    """Remember a fact about the user."""
    return fact


@tool
def search_memories(query: str) -> str:
    """Search what is remembered about the user."""
    return query


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
