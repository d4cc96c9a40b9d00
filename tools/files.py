"""The run-scoped tools: `conversation_files` (the user's uploads in this
conversation) and `save_memory` / `search_memories` (facts about the user).

Each reads the run's user and conversation from agent/files.py's RunScope: the
model passes only a query or a fact, never whose. Results are structured:
content for the model, sources (file names) as the artifact.
"""

from __future__ import annotations

from langchain_core.tools import StructuredTool, ToolException

from agent.files import FILES_TOOL, MEMORY_SAVED, current_scope
from agent.persona import GREETING
from knowledge.retrieval import embed_query, get_retriever
from storage import files as stored

MAX_FACT_CHARS = 500


def _scope():
    scope = current_scope.get()
    if scope is None:
        raise ToolException("this tool works only inside a chat run")
    return scope


def _embedding(retriever, text: str):
    if retriever.embedder is None:
        return None, None
    try:
        return embed_query(retriever.embedder, text), retriever.embedder.space.name
    except Exception:  # noqa: BLE001 - full text still works
        return None, None


def make_files_tool(retriever, k: int):
    def run(query: str, file_ids: list[str] | None = None):
        scope = _scope()
        ready = {f["id"]: f["name"] for f in scope.context()["files"]}
        wanted = [i for i in (file_ids or []) if i in ready]
        if file_ids and not wanted:
            raise ToolException("none of those file ids is a ready file of this conversation; "
                                f"the files are: {', '.join(f'{n} ({i})' for i, n in ready.items())}")
        embedding, _ = _embedding(retriever, query)
        hits = stored.search_files(scope.store, scope.conversation_id, query, embedding,
                                   wanted or None, k)
        if not hits:
            return "No matching passages in the user's files.", {"sources": []}
        lines, sources, seen = [], [], set()
        for n, hit in enumerate(hits, 1):
            section = (hit.get("metadata") or {}).get("section")
            where = f"{hit['name']}, {section}" if section else hit["name"]
            lines.append(f"[{n}] From {where}:\n{hit['content']}")
            if hit["name"] not in seen:
                seen.add(hit["name"])
                sources.append({"title": hit["name"], "url": None, "file_id": hit["file_id"]})
        return "\n\n".join(lines), {"sources": sources}

    return StructuredTool.from_function(
        func=run, name=FILES_TOOL,
        description=("Search the files the user uploaded to this conversation. Use it first for any "
                     "question about their documents. Input: the question; optionally file_ids "
                     "to search only those files. Returns passages with their file names; cite "
                     "the file by name."),
        response_format="content_and_artifact", handle_tool_error=True,
        metadata={"friendly": "Let me look through your files 📎"},
    )


def make_memory_tools(retriever, k: int):
    def save(fact: str):
        scope = _scope()
        fact = " ".join(str(fact).split())
        if not fact:
            raise ToolException("the fact is empty")
        if len(fact) > MAX_FACT_CHARS:
            raise ToolException(f"a fact is at most {MAX_FACT_CHARS} characters")
        embedding, space = _embedding(retriever, fact)
        row = stored.save_memory(scope.store, scope.user_token, GREETING, fact,
                                 scope.conversation_id, embedding, space)
        if row.get("created"):
            scope.emit(MEMORY_SAVED, {"id": row["id"], "content": row["content"],
                                      "run_id": scope.run_id})
            return f"Saved to memory: {row['content']}", {"memory": row}
        return f"Already in memory: {row['content']}", {"memory": row}

    def search(query: str):
        scope = _scope()
        embedding, _ = _embedding(retriever, query)
        found = stored.search_memories(scope.store, scope.user_token, query, embedding, k)
        if not found:
            return "Nothing about that in the user's memories.", {"memories": []}
        lines = "\n".join(f"- {m['content']}" for m in found)
        return f"Facts the user asked you to remember:\n{lines}", {"memories": found}

    return [
        StructuredTool.from_function(
            func=save, name="save_memory",
            description=("Save a fact about the user that they asked you to remember, for later "
                         "conversations (one short sentence, e.g. 'My favourite token is DUSD')."),
            response_format="content_and_artifact", handle_tool_error=True,
            metadata={"friendly": "Noting that down 📝"},
        ),
        StructuredTool.from_function(
            func=search, name="search_memories",
            description=("Search the facts the user asked you to remember earlier (in any "
                         "conversation). Use it for questions about the user themselves."),
            response_format="content_and_artifact", handle_tool_error=True,
            metadata={"friendly": "Let me check what you told me 🧠"},
        ),
    ]


def make_tools(settings, store) -> list:
    retriever = get_retriever(settings, store)
    return [make_files_tool(retriever, settings.knowledge_top_k),
            *make_memory_tools(retriever, 5)]
