"""The Store interface every backend implements, and the records it returns.

Backends (Postgres, Supabase) implement the abstract methods; shared rules
(message types, limits, knowledge-chunk checks) live here so that both behave
the same way.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime

MESSAGE_TYPES = ("human", "jelly", "tool")
RRF_K = 60  # reciprocal rank fusion constant (the SQL functions use the same default)


class StoreError(RuntimeError):
    """The storage backend failed or is misconfigured; the message is user-facing."""


@dataclass(frozen=True)
class Message:
    type: str
    content: str
    timestamp: datetime
    application: str | None = None

    def to_json(self) -> dict:
        return {
            "type": self.type,
            "content": self.content,
            "timestamp": self.timestamp.isoformat(),
            "application": self.application,
        }


@dataclass(frozen=True)
class QA:
    id: int
    question: str
    answer: str
    application: str | None
    date: datetime
    sources: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "date": self.date.isoformat(),
            "question": self.question,
            "answer": self.answer,
            "application": self.application,
            "sources": self.sources,
        }


@dataclass(frozen=True)
class User:
    id: int
    token: str
    created: bool = False


@dataclass(frozen=True)
class EmbeddingSpace:
    """Which embedder made a set of vectors: vectors of two spaces never compare."""

    name: str
    dimension: int

    def __str__(self) -> str:
        return f"{self.name} ({self.dimension} dimensions)"


@dataclass(frozen=True)
class KnowledgeDocument:
    """One source document of a knowledge base, as ingestion stores it.

    `source` (a URL, or a path relative to the ingested folder) is unique per kb;
    an unchanged `content_hash` means there is nothing to re-embed.
    """

    source: str
    title: str
    content_hash: str
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: what is embedded, indexed and returned by search.

    `metadata` holds kb, title, source, url, section, anchor and updated (when
    known). `id` and `score` (higher is better) are set by `Store.search`.
    """

    content: str
    metadata: dict = field(default_factory=dict)
    id: int | None = None
    score: float = 0.0

    @property
    def title(self) -> str:
        return self.metadata.get("title") or self.source

    @property
    def source(self) -> str:
        return self.metadata.get("source", "")

    @property
    def url(self) -> str | None:
        """A link to the exact section when known, else the page, else None."""
        url = self.metadata.get("url")
        if url and self.metadata.get("anchor"):
            return f"{url}#{self.metadata['anchor']}"
        return url

    def snippet(self, limit: int = 300) -> str:
        text = " ".join(self.content.split())
        return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


@dataclass(frozen=True)
class KnowledgeBaseInfo:
    """What a knowledge base holds; `embedders` is empty when it has no vectors."""

    kb: str
    documents: int
    chunks: int
    embedders: tuple[EmbeddingSpace, ...] = ()


class Store(ABC):
    """Persistence for users, chat messages, Q&A pairs (and knowledge chunks)."""

    name = "store"

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"jellychat.storage.{self.name}")

    # lifecycle
    def initialize(self) -> None:  # noqa: B027 - optional hook
        """Connect and make the schema current. Raise StoreError with a clear message."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abstractmethod
    def ping(self) -> bool:
        """True when the database answers."""

    # chat
    @abstractmethod
    def get_or_create_user(self, token: str, greeting: str) -> User:
        """Return the user for `token`; a new user gets `greeting` as first jelly message."""

    @abstractmethod
    def add_message(
        self, user_id: int, type: str, content: str, application: str | None = None
    ) -> None: ...

    @abstractmethod
    def add_answer(
        self,
        user_id: int,
        question: str,
        answer: str,
        application: str | None,
        sources: list[dict],
        tool_messages: list[str] = (),
    ) -> None:
        """Store tool messages, the jelly answer and the Q&A pair in one transaction."""

    @abstractmethod
    def recent_messages(self, user_id: int, limit: int) -> list[Message]:
        """The last `limit` human/jelly messages of a user, oldest first."""

    @abstractmethod
    def history(self, user_id: int) -> list[Message]:
        """All messages of a user (human, jelly, tool), oldest first."""

    @abstractmethod
    def list_qa(self, limit: int, before: datetime | None = None) -> list[QA]:
        """Question/answer pairs of all users, newest first, strictly older than `before`."""

    @abstractmethod
    def count_human_messages(self) -> int: ...

    # knowledge
    @abstractmethod
    def knowledge_bases(self) -> dict[str, KnowledgeBaseInfo]:
        """Every knowledge base that holds documents, by name, with its embedders."""

    @abstractmethod
    def document_hashes(self, kb: str) -> dict[str, str]:
        """`{source: content_hash}` of the documents stored in `kb`."""

    @abstractmethod
    def replace_document(
        self,
        kb: str,
        document: KnowledgeDocument,
        chunks: list[Chunk],
        embeddings: list[list[float]] | None = None,
        embedder: EmbeddingSpace | None = None,
    ) -> None:
        """Store `document` and its chunks in one transaction, replacing any document
        with the same source in `kb` and all its old chunks.

        `embeddings` (one vector per chunk, from `embedder`) may be None: the chunks
        are then found by full-text search only. Call `check_chunks` first.
        """

    @abstractmethod
    def delete_documents(self, kb: str, sources: list[str]) -> int:
        """Delete these documents of `kb` and their chunks; return how many went."""

    @abstractmethod
    def search(
        self, kb: str, query: str, embedding: list[float] | None = None, k: int = 5
    ) -> list[Chunk]:
        """The `k` best chunks of `kb` for `query`, best first, `score` set.

        Without `embedding`: full-text search (English stemming, any query word
        may match, ranked by cover density). With it: hybrid, i.e. full-text and
        cosine (HNSW) candidate lists fused by reciprocal rank fusion (RRF_K);
        only vectors of the embedding's dimension take part.
        """

    def ingest_finished(self, kb: str) -> None:  # noqa: B027 - optional hook
        """Called after an ingest run that changed `kb`: refresh search statistics.

        Full-text scores weigh words by rarity, taken from the database's
        statistics; a backend that can refresh them (ANALYZE) does it here.
        """

    @staticmethod
    def check_chunks(chunks, embeddings, embedder) -> None:
        """Shared rules for `replace_document` arguments."""
        if embeddings is None:
            return
        if embedder is None:
            raise ValueError("embeddings need the embedder that made them")
        if len(embeddings) != len(chunks):
            raise ValueError(f"{len(embeddings)} embeddings for {len(chunks)} chunks")
        for vector in embeddings:
            if len(vector) != embedder.dimension:
                raise ValueError(
                    f"a vector has {len(vector)} dimensions, {embedder} makes {embedder.dimension}"
                )

    @staticmethod
    def check_type(type: str) -> None:
        if type not in MESSAGE_TYPES:
            raise ValueError(f"message type must be one of {MESSAGE_TYPES}, not {type!r}")
