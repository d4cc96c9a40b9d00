"""The offline model (no keys, no network): a guest of the agent loop.

It reads the same structured tool results an LLM reads and keeps its English
rule tables (routing, quotes, phrasings, memory) here, in one package; the LLM
path never imports it (agent/models.py loads it only without OPENAI_API_KEY /
OPENAI_BASE_URL).
"""

from agent.offline.model import GUIDES, OfflineChatModel, recall, small_talk, steps_of

__all__ = ["GUIDES", "OfflineChatModel", "recall", "small_talk", "steps_of"]
