"""The tool registry: each entry builds its tools from (settings, store).

Adding a tool is one line here. A tool carries in its `metadata` only
`friendly` (the sentence clients see in `tool_start`, a string or a callable of
the tool's arguments). Tools return structured results (an artifact beside the
text) and fail with `ToolMessage.status == "error"`; the offline model keeps its
own routing table by tool name (agent/offline/).
"""

from __future__ import annotations

from tools import calculator
from tools import files as files_tools
from tools import knowledge as knowledge_tools
from tools import ocean as ocean_tools

TOOL_FACTORIES = [
    calculator.make_tools,
    knowledge_tools.make_tools,
    ocean_tools.make_tools,
    files_tools.make_tools,  # run-scoped: the user's files and memories
]


def build_tools(settings, store) -> list:
    tools = []
    for factory in TOOL_FACTORIES:
        tools.extend(factory(settings, store))
    return tools


def friendly_name(tool, args: dict | None = None) -> str:
    """The sentence shown to users when `tool` starts."""
    friendly = (tool.metadata or {}).get("friendly")
    if callable(friendly):
        return friendly(args or {})
    return friendly or f"Using {tool.name.replace('_', ' ')} 🔧"


def tool_sentences(tools) -> dict[str, str]:
    """Each tool's tool_start sentence without arguments (for rows stored without them)."""
    sentences = {}
    for tool in tools:
        try:
            sentences[tool.name] = friendly_name(tool)
        except Exception:  # noqa: BLE001 - a sentence that needs its arguments: the generic one
            sentences[tool.name] = f"Using {tool.name.replace('_', ' ')} 🔧"
    return sentences
