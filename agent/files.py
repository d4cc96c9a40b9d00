"""What a run's own tools need: its user, its conversation and its event sink.

The chat turn opens a `RunScope` around the agent (`run_scope`); the tools of
tools/files.py read it from a context variable, so the model never names a user
or a conversation: the server does. `ScopedTools` (a middleware) offers the
model `conversation_files` only when the conversation has ready files (its
description then lists them) and the memory tools only while the user keeps
memories on.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from langchain.agents.middleware import AgentMiddleware

from storage import StoreError
from storage import files as stored

log = logging.getLogger("jellychat.files")

FILES_TOOL = "conversation_files"
MEMORY_TOOLS = ("save_memory", "search_memories")
MEMORY_SAVED = "memory_saved"  # event: {id, content, run_id}


@dataclass
class RunScope:
    store: object
    user_token: str
    conversation_id: str
    run_id: str
    emit: object  # the run's sink.emit(event, data)
    _context: dict | None = field(default=None, repr=False)

    def context(self) -> dict:
        """{files: [{id, name}] ready, memory_enabled}, read once per run."""
        if self._context is None:
            try:
                self._context = stored.run_context(self.store, self.user_token, self.conversation_id)
            except StoreError as exc:
                log.warning("run %s: files and memories unavailable: %s", self.run_id, exc)
                self._context = {"files": [], "memory_enabled": False}
        return self._context


current_scope: ContextVar[RunScope | None] = ContextVar("jellychat_run_scope", default=None)


@contextmanager
def run_scope(store, user_token: str, conversation_id: str, run_id: str, emit,
              context: dict | None = None):
    """The scope of one run, for the tools it calls (services passed, not looked up).
    `context`: {files, memory_enabled} as the call that began the run returned it (a
    database without it: read when a tool first needs it)."""
    token = current_scope.set(RunScope(store, user_token, conversation_id, run_id, emit,
                                       context))
    try:
        yield
    finally:
        current_scope.reset(token)


class ScopedTools(AgentMiddleware):
    """Hides the run-scoped tools the run cannot use, and names the ready files."""

    def wrap_model_call(self, request, handler):
        scope = current_scope.get()
        names = {getattr(t, "name", None) for t in request.tools}
        if not names & {FILES_TOOL, *MEMORY_TOOLS}:
            return handler(request)
        context = scope.context() if scope is not None else {"files": [], "memory_enabled": False}
        tools = []
        for tool in request.tools:
            name = getattr(tool, "name", None)
            if name == FILES_TOOL:
                if not context["files"]:
                    continue
                listing = "; ".join(f"{f['name']} (id {f['id']})" for f in context["files"])
                tool = tool.model_copy(update={"description": f"{tool.description} Files: {listing}."})
            elif name in MEMORY_TOOLS and not context["memory_enabled"]:
                continue
            tools.append(tool)
        return handler(request.override(tools=tools))
