"""Assistants (issue 26): the agent of each assistant version, built once and kept.

The database chooses a turn's assistant inside `start_run` and answers with its
{id, version}; a version never changes once stored, so its agent (the compiled
graph with the assistant's instructions and tools) is built the first time a
process serves it and reused by every later turn.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.persona import DESCRIPTION, GREETING, INSTRUCTIONS, SUGGESTED_QUESTIONS, system_prompt

log = logging.getLogger("jellychat.assistants")

DEFAULT_ID = "jelly"


def default_fields() -> dict:
    """The built-in Jelly, as the default assistant's first version."""
    return {"name": "Jelly", "description": DESCRIPTION, "instructions": INSTRUCTIONS,
            "greeting": GREETING, "suggested_questions": list(SUGGESTED_QUESTIONS),
            "applications": [], "public": True}


def tools_of(assistant: dict, tools: list) -> list:
    """The tools an assistant may use (its `tools` names; None: all), in registry order."""
    names = assistant.get("tools")
    if names is None:
        return list(tools)
    wanted = set(names)
    return [t for t in tools if t.name in wanted]


class AssistantAgents:
    """Each assistant version's agent, by (id, version), built on first use.

    `build(assistant, system_prompt, tools)` makes a ChatAgent; `fallback` serves
    a run the database chose no assistant for (a database without the default row).
    """

    def __init__(self, store, tools: list, build: Callable, fallback):
        self.store = store
        self.tools = tools
        self.build = build
        self.fallback = fallback
        self._agents: dict[tuple[str, int], object] = {}
        self._records: dict[tuple[str, int], dict] = {}
        self._lock = threading.Lock()
        self.builds = 0  # how many agents were built (a turn must not build one)

    def record(self, ref: dict | None) -> dict | None:
        """The assistant version `ref` ({id, version}) names, read once per process."""
        if not ref:
            return None
        key = (ref["id"], int(ref["version"]))
        found = self._records.get(key)
        if found is None:
            found = self.store.get_assistant(key[0], key[1])
            if found is None:
                return None
            self._records[key] = found
        return found

    def agent_for(self, ref: dict | None):
        """The agent of the assistant version `ref`, built once; the fallback without one."""
        if not ref:
            return self.fallback
        key = (ref["id"], int(ref["version"]))
        agent = self._agents.get(key)
        if agent is not None:
            return agent
        with self._lock:
            agent = self._agents.get(key)
            if agent is None:
                assistant = self.record(ref)
                if assistant is None:  # a version row missing: never refuse a turn for it
                    log.warning("assistant %s version %s not found: the default agent answers",
                                *key)
                    return self.fallback
                agent = self.build(assistant, system_prompt(assistant["instructions"]),
                                   tools_of(assistant, self.tools))
                self.builds += 1
                self._agents[key] = agent
        return agent
