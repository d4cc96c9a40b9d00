"""The Store interface every backend implements, and the records it returns.

Backends (Postgres, Supabase) implement the abstract methods; shared rules
(message types, limits, knowledge-chunk checks) live here so that both behave
the same way.
"""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime

from storage.api_keys import ApiKeyStore
from storage.metering import MeteredStore

RRF_K = 60  # reciprocal rank fusion constant (the SQL functions use the same default)
HNSW_MAX_DIMENSIONS = 2000  # pgvector's limit for an HNSW index (jelly_kb_vector_index)
RUNS_RETRY_AFTER = 2  # seconds suggested to a user at MAX_ACTIVE_RUNS_PER_USER (a turn's usual length)


class StoreError(RuntimeError):
    """The storage backend failed or is misconfigured; the message is user-facing."""


class Transient(StoreError):
    """A failure that may pass on another try. `sent`: the request may have reached
    the database (a dropped connection, a 5xx), so only an idempotent call goes
    again; otherwise (nothing was sent, 429/503) any call may. Once the tries are
    over it travels on as the StoreError it is."""

    def __init__(self, message: str, *, sent: bool):
        super().__init__(message)
        self.sent = sent


class NotFound(LookupError):
    """The thing does not exist, or belongs to another user (answered alike: 404)."""


class UnknownAssistant(NotFound):
    """The client named an assistant that does not exist (a 400 on its `assistant_id`)."""


class Busy(RuntimeError):
    """The conversation has an active run (MULTITASK=reject); `run_id` names it."""

    def __init__(self, message: str, run_id: str | None = None):
        super().__init__(message)
        self.run_id = run_id


class RateLimited(RuntimeError):
    """A limit or quota is spent (429 / an `error` event): `retry_after` seconds until
    it may be tried again, `scope` names the limit (user_token, address, runs)."""

    def __init__(self, message: str, retry_after: int = 1, scope: str = ""):
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
        self.scope = scope


class BudgetExceeded(RuntimeError):
    """The user's remaining balance is zero or less (402 / an `error` event); `code` is
    what clients (and the /v1 endpoints) match on, `period` what ran out: "month"
    (the monthly budget) or "balance"."""

    code = "budget_exceeded"

    def __init__(self, message: str, period: str = "balance"):
        super().__init__(message)
        self.period = period


class ModelNotAllowed(PermissionError):
    """The model asked for is unknown, disabled or not the user's (403, field `model`)."""

    field = "model"


class BadValue(ValueError):
    """A value the database refused (an unknown model in a list): 400 with `field`."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class QA:
    id: int
    question: str
    answer: str
    application: str | None
    date: datetime
    sources: list[dict] = field(default_factory=list)
    message_id: int | None = None  # the stored answer (chat_messages.id), when known

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "message_id": self.message_id,
            "date": self.date.isoformat(),
            "question": self.question,
            "answer": self.answer,
            "application": self.application,
            "sources": self.sources,
        }


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


def budget_message(period: str | None) -> str:
    """The friendly text of a spent budget (names what ran out, nothing more)."""
    if period == "month":
        return ("Your monthly budget is used up: new answers can start again next month, "
                "or when the operator raises your budget.")
    return "Your balance is used up: ask the operator to top it up to keep chatting."


class Store(ApiKeyStore, MeteredStore, ABC):
    """Persistence for users, chat messages, Q&A pairs (and knowledge chunks)."""

    name = "store"

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"jellychat.storage.{self.name}")
        self._unindexed: set[int] = set()  # dimensions warned about (no HNSW index)

    # lifecycle
    def initialize(self) -> None:  # noqa: B027 - optional hook
        """Connect and make the schema current. Raise StoreError with a clear message."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abstractmethod
    def ping(self) -> bool:
        """True when the database answers."""

    # SQL functions (supabase/migrations/*.sql): every stored thing goes through them
    attempts = 2  # tries of a call that fails transiently (backends set their own)
    retry_budget = 10.0  # seconds all tries of one call may take
    backoff = 0.0  # seconds before the second try, doubling after (with as much jitter)

    def _fn(self, name: str, params: dict, *, idempotent: bool = True):
        """Call the SQL function `name` with named `params`; return its (json) value.

        Errors the functions raise with an SQLSTATE starting 'JL' become
        `function_error(code, message, detail)`, driver failures StoreError;
        transient ones are retried by `_retry` (`idempotent`: the call may run twice).
        """
        return self._retry(name, lambda: self._invoke(name, params), idempotent=idempotent)

    @abstractmethod
    def _invoke(self, name: str, params: dict):
        """One call of SQL function `name` (the backend's primitive): its value, or
        Transient / StoreError / `function_error(...)`."""

    def _retry(self, what: str, call, *, idempotent: bool, attempts: int | None = None):
        """`call()`, tried again while it fails with Transient: one policy for every
        backend. A failure that may have reached the database is tried again only
        for an `idempotent` call; at most `attempts` tries within `retry_budget` s."""
        attempts = attempts or self.attempts
        deadline = time.monotonic() + self.retry_budget
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except Transient as exc:
                delay = min(2.0, self.backoff * 2 ** (attempt - 1) * (1 + random.random()))
                if ((exc.sent and not idempotent) or attempt == attempts
                        or time.monotonic() + delay >= deadline):
                    raise
                self.logger.warning("%s; retrying", exc)
                if delay:
                    time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def function_error(code: str, message: str, detail: str | None = None) -> Exception:
        """The exception for an error one of our SQL functions raised on purpose."""
        if code == "JL404":
            return NotFound(message)
        if code == "JLA04":
            return UnknownAssistant(message)
        if code == "JL409":
            return Busy(message, detail)
        if code == "JL429":
            return RateLimited(f"{message}: at most {detail} at once; wait for one to finish",
                               RUNS_RETRY_AFTER, "runs")
        if code == "JL402":
            return BudgetExceeded(budget_message(detail), detail or "balance")
        if code == "JL403":
            return ModelNotAllowed(message)
        if code == "JL400":
            return BadValue(message, detail or "body")
        return StoreError(message)

    def create_run(self, token: str, greeting: str, conversation_id: str | None,
                   application: str | None, multitask: str, owner: str,
                   model: str | None = None) -> dict:
        """A pending run: {run_id, conversation_id, user_id, user_created, queued}.
        Raises NotFound (not the user's conversation) or Busy (multitask=reject)."""
        return self._fn("jelly_create_run", {
            "p_token": token, "p_greeting": greeting, "p_conversation_id": conversation_id,
            "p_application": application, "p_multitask": multitask, "p_owner": owner,
            "p_model": model,
        }, idempotent=False)

    def start_run(self, token: str, greeting: str, conversation_id: str | None,
                  application: str | None, multitask: str, owner: str, model: str | None,
                  message: str, memory: int, timeout: float,
                  assistant_id: str | None = None, *,
                  requested_model: str | None = None,
                  estimate: tuple[int, int] | None = None) -> dict:
        """`create_run` and, when the conversation is idle, `begin_run` in one call:
        the ticket with `ready` (and when ready, begin_run's message_id, memory, titled),
        and the turn's `assistant` {id, version} (chosen in the same call: `assistant_id`,
        the conversation's, the application's, the default). NotFound for an unknown
        `assistant_id`.

        With `estimate` (input, output tokens of a usual run) or `requested_model`, the
        same call checks the model registry and the user's access and budget and
        reserves the run's estimated cost (storage/metering.py): `model` is then the
        default model, and the ticket adds the run's model and its prices. Raises
        ModelNotAllowed or BudgetExceeded before anything is stored."""
        params = {
            "p_token": token, "p_greeting": greeting, "p_conversation_id": conversation_id,
            "p_application": application, "p_multitask": multitask, "p_owner": owner,
            "p_model": model, "p_message": message, "p_memory": memory,
            "p_timeout": float(timeout), "p_assistant_id": assistant_id,
        }
        if estimate is None and requested_model is None:
            return self._fn("jelly_start_run", params, idempotent=False)
        return self._start_metered_run(params, requested_model, estimate or (0, 0))

    def begin_run(self, run_id: str, message: str, memory: int, timeout: float) -> dict:
        """{ready: true, message_id, memory: [{type, content}], summary, summary_through}
        once the run may start (memory: the messages after the conversation's summary),
        {ready: false} while an earlier run of its conversation is active,
        {ready: false, stop: true} when it was stopped while waiting."""
        return self._fn("jelly_begin_run", {
            "p_run_id": run_id, "p_message": message, "p_memory": memory,
            "p_timeout": float(timeout),
        }, idempotent=False)

    def finish_run(self, run_id: str, status: str, *, question: str | None = None,
                   answer: str | None = None, sources=(), tool_calls=(),
                   input_tokens: int | None = None, output_tokens: int | None = None,
                   error: str | None = None, title: str | None = None,
                   usage: list[dict] | None = None) -> dict:
        """Store the run's outcome in one transaction; {message_id, status}. Idempotent.

        With `usage` (the run's model calls), they are recorded and priced in the same
        transaction, which settles the run's cost: {..., input_tokens, output_tokens,
        cost_usd, model}."""
        params = {
            "p_run_id": run_id, "p_status": status, "p_question": question,
            "p_answer": answer, "p_sources": list(sources), "p_tool_calls": list(tool_calls),
            "p_input_tokens": input_tokens, "p_output_tokens": output_tokens,
            "p_error": error, "p_title": title,
        }
        if usage is None:
            return self._fn("jelly_finish_run", params)
        return self._fn("jelly_finish_metered_run", {**params, "p_usage": list(usage)})

    def request_stop(self, token: str, run_id: str) -> dict:
        """Flag a run of the token's user to stop; NotFound otherwise."""
        return self._fn("jelly_request_stop", {"p_token": token, "p_run_id": run_id})

    def stop_requested(self, run_ids) -> set[str]:
        """Which of these runs were asked to stop (by another process or an interrupt)."""
        if not run_ids:
            return set()
        return set(self._fn("jelly_stop_requested", {"p_run_ids": list(run_ids)}) or [])

    def recover_runs(self, owners, apology: str, grace: float = 30.0) -> int:
        """Close runs left active by dead processes (answering their questions)."""
        return self._fn("jelly_recover_runs", {
            "p_owners": list(owners), "p_apology": apology, "p_grace": float(grace),
        }, idempotent=False) or 0

    def active_owners(self) -> list[str]:
        """The owners (host:pid:boot) of runs that are still active."""
        return self._fn("jelly_active_owners", {}) or []

    def convert_tool_rows(self, sentences: dict[str, str]) -> int:
        """Give tool rows of the pre-run format ("name: output") their tool's sentence,
        keeping the output in tool_call; how many changed (0 once done)."""
        return self._fn("jelly_convert_tool_rows", {"p_sentences": dict(sentences)},
                        idempotent=True) or 0

    def history_after_summary(self, conversation_id: str, limit: int = 200) -> dict | None:
        """{summary, summary_through, messages: [{id, type, content}]}: the conversation's
        summary and its human/jelly messages after it, oldest first (None: no such one)."""
        return self._fn("jelly_history_after_summary",
                        {"p_id": conversation_id, "p_limit": int(limit)})

    def set_summary(self, conversation_id: str, summary: str, through: int,
                    previous: int | None) -> bool:
        """Store a summary of the messages up to `through`; False when another refresh
        moved it since `previous` (the `summary_through` that was read) was read."""
        return bool(self._fn("jelly_set_summary", {
            "p_id": conversation_id, "p_summary": summary, "p_through": int(through),
            "p_previous": None if previous is None else int(previous)}, idempotent=False))

    def set_auto_title(self, conversation_id: str, title: str, *, run_id: str | None = None,
                       usage: list[dict] | None = None) -> dict | None:
        """The model's title (kept unless the user named the conversation) and, for a
        metered run (`run_id`), the usage of the call that wrote it, in one call."""
        return self._fn("jelly_set_auto_title", {
            "p_id": conversation_id, "p_title": title, "p_run_id": run_id,
            "p_usage": list(usage) if usage else None}, idempotent=not usage)

    def list_conversations(self, token: str, limit: int = 20, before: str | None = None,
                           before_id: str | None = None) -> list:
        """Newest first; the next page starts after (`before`, `before_id`), the `updated`
        and `id` of the last row (`before` alone skips rows updated at that instant)."""
        return self._fn("jelly_list_conversations",
                        {"p_token": token, "p_limit": limit, "p_before": before,
                         "p_before_id": before_id}) or []

    # user tokens the server issues (supabase/migrations/*_operations.sql)
    def issue_user(self, token: str, greeting: str) -> dict:
        """A new user for a token the server made: {user_id, created}."""
        return self._fn("jelly_issue_user", {"p_token": token, "p_greeting": greeting},
                        idempotent=True)

    def token_issued(self, token: str) -> bool:
        """Whether the server issued this token (POST /users)."""
        return bool(self._fn("jelly_token_issued", {"p_token": token}))

    def create_conversation(self, token: str, greeting: str, title: str | None = None) -> dict:
        return self._fn("jelly_create_conversation",
                        {"p_token": token, "p_greeting": greeting, "p_title": title},
                        idempotent=False)

    def get_conversation(self, token: str, conversation_id: str | None = None,
                         limit: int | None = None) -> dict | None:
        """The conversation with its messages (None: the default one); None if not the user's.

        Jelly answers carry the user's `feedback` ({rating, comment, updated} or None) and
        its `rating` alone (what the chat page reads)."""
        conversation = self._fn("jelly_get_conversation",
                                {"p_token": token, "p_id": conversation_id,
                                 "p_limit": None if limit is None else max(0, int(limit))})
        if conversation:
            rows = conversation.get("messages") or []
            ratings = self.feedback_of([m["id"] for m in rows if m.get("type") == "jelly"])
            for m in rows:
                m["feedback"] = ratings.get(m["id"]) if m.get("type") == "jelly" else None
                m["rating"] = m["feedback"]["rating"] if m["feedback"] else None
        return conversation

    def history(self, token: str, limit: int, before: int | None = None) -> dict | None:
        """The newest `limit` messages of the token's default conversation older than
        message id `before`, oldest first: {user_id, conversation_id, messages, more};
        None for an unknown token (nothing is created)."""
        return self._fn("jelly_history", {"p_token": token, "p_limit": int(limit),
                                          "p_before": before})

    def set_run_cap(self, max_active: int) -> None:
        """Active runs one user may have at once, enforced by the database for every
        process (a trigger on runs; 0 = no cap)."""
        self._fn("jelly_set_run_cap", {"p_max_active": int(max_active)}, idempotent=True)

    def update_conversation(self, token: str, conversation_id: str, title: str) -> dict:
        return self._fn("jelly_update_conversation",
                        {"p_token": token, "p_id": conversation_id, "p_title": title})

    def delete_conversation(self, token: str, conversation_id: str) -> None:
        self._fn("jelly_delete_conversation", {"p_token": token, "p_id": conversation_id})

    # assistants (supabase/migrations/*_assistants.sql)
    def seed_assistant(self, assistant_id: str, fields: dict) -> dict:
        """The default assistant, created from `fields` when there is none (it may have
        been edited since: the stored row wins)."""
        return self._fn("jelly_seed_assistant", {"p_id": assistant_id, "p_fields": fields},
                        idempotent=True)

    def create_assistant(self, fields: dict) -> dict:
        """A new assistant at version 1, with a generated id."""
        return self._fn("jelly_create_assistant", {"p_fields": fields}, idempotent=False)

    def update_assistant(self, assistant_id: str, fields: dict) -> dict:
        """A new version with `fields` over the current ones (the old version is kept);
        NotFound for an unknown id."""
        return self._fn("jelly_update_assistant", {"p_id": assistant_id, "p_fields": fields},
                        idempotent=False)

    def delete_assistant(self, assistant_id: str) -> None:
        """NotFound for an unknown id, Busy for the default assistant."""
        self._fn("jelly_delete_assistant", {"p_id": assistant_id}, idempotent=False)

    def get_assistant(self, assistant_id: str, version: int | None = None) -> dict | None:
        """The assistant now, or one of its versions (kept after deletion); None if unknown."""
        return self._fn("jelly_get_assistant", {"p_id": assistant_id, "p_version": version})

    def list_assistants(self, everyone: bool = False) -> list[dict]:
        """The public assistants (`everyone`: all of them), the default first."""
        return self._fn("jelly_list_assistants", {"p_all": bool(everyone)}) or []

    def assistant_versions(self, assistant_id: str) -> list[dict]:
        """Every version of the assistant, oldest first."""
        return self._fn("jelly_assistant_versions", {"p_id": assistant_id}) or []

    def assistant_for(self, application: str | None) -> dict | None:
        """The assistant that greets a new visitor of `application`."""
        return self._fn("jelly_assistant_for", {"p_application": application})

    def set_conversation_assistant(self, token: str, conversation_id: str,
                                   assistant_id: str | None) -> dict:
        """Bind one of the token's conversations to an assistant (None: unbind)."""
        return self._fn("jelly_set_conversation_assistant",
                        {"p_token": token, "p_id": conversation_id,
                         "p_assistant_id": assistant_id}, idempotent=True)

    def set_suggestions(self, message_id: int, suggestions: list[str], *,
                        run_id: str | None = None, usage: list[dict] | None = None,
                        title: str | None = None) -> dict | None:
        """Keep the follow-up questions suggested after an answer, the conversation's
        `title` when the same model call wrote one (kept unless the user named it) and,
        for a metered run (`run_id`), that call's usage, in one call: the usage's totals
        {input_tokens, output_tokens, cost_usd}, else None."""
        return self._fn("jelly_set_suggestions", {
            "p_message_id": int(message_id), "p_suggestions": list(suggestions),
            "p_run_id": run_id, "p_usage": list(usage) if usage else None,
            "p_title": title or None}, idempotent=not usage)

    def suggestions_of(self, token: str, message_id: int) -> dict:
        """{message_id, suggestions} of one of the token's user's answers; NotFound otherwise."""
        return self._fn("jelly_suggestions_of", {"p_token": token, "p_message_id": int(message_id)})

    # feedback (supabase/migrations/*_feedback.sql)
    def set_feedback(self, token: str, message_id: int, rating: str | None,
                     comment: str | None = None) -> dict:
        """Rate (or with rating None, un-rate) one of the token's user's Jelly answers;
        NotFound for any other message. {message_id, rating, comment, updated}."""
        return self._fn("jelly_set_feedback", {"p_token": token, "p_message_id": message_id,
                                                "p_rating": rating, "p_comment": comment},
                        idempotent=True)

    def feedback_of(self, message_ids) -> dict[int, dict]:
        """{message_id: {rating, comment, updated}} of those messages that are rated."""
        ids = [int(i) for i in message_ids if i is not None]
        if not ids:
            return {}
        found = self._fn("jelly_feedback_of", {"p_message_ids": ids}) or {}
        return {int(k): v for k, v in found.items()}

    def feedback_summary(self, since: str | None = None, until: str | None = None) -> list[dict]:
        """[{application, day, up, down, total}] per application and UTC day, newest first."""
        return self._fn("jelly_feedback_summary", {"p_since": since, "p_until": until}) or []

    def list_qa(self, limit: int, before: datetime | None = None) -> list[QA]:
        """Question/answer pairs of all users, newest first, strictly older than `before`."""
        rows = self._fn("jelly_list_qa", {
            "p_limit": int(limit), "p_before": before.isoformat() if before else None}) or []
        return [QA(r["id"], r["question"], r["answer"], r["application"],
                   datetime.fromisoformat(r["created_at"]), r["sources"], r.get("message_id"))
                for r in rows]

    def count_human_messages(self) -> int:
        return int(self._fn("jelly_count_human_messages", {}) or 0)

    # knowledge (supabase/migrations/*_knowledge_functions.sql)
    def knowledge_bases(self) -> dict[str, KnowledgeBaseInfo]:
        """Every knowledge base that holds documents, by name, with its embedders."""
        return {
            b["kb"]: KnowledgeBaseInfo(
                b["kb"], int(b["documents"]), int(b["chunks"]),
                tuple(EmbeddingSpace(e["name"], e["dimension"]) for e in b["embedders"]))
            for b in self._fn("jelly_kb_bases", {}) or []
        }

    def document_hashes(self, kb: str) -> dict[str, str]:
        """`{source: content_hash}` of the documents stored in `kb`."""
        return self._fn("jelly_kb_document_hashes", {"p_kb": kb}) or {}

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
        are then found by full-text search only. The first vectors of a dimension
        make its HNSW index. Idempotent: a repeated call leaves the same rows.
        """
        self.check_chunks(chunks, embeddings, embedder)
        space = embedder if embeddings is not None else None
        vectors = embeddings if embeddings is not None else [None] * len(chunks)
        done = self._fn("jelly_kb_replace_document", {
            "p_kb": kb,
            "p_source": document.source,
            "p_title": document.title,
            "p_content_hash": document.content_hash,
            "p_updated_at": document.updated_at.isoformat() if document.updated_at else None,
            "p_embedder": space.name if space else None,
            "p_dimension": space.dimension if space else None,
            "p_chunks": [{"content": c.content, "metadata": c.metadata, "embedding": vector_text(v)}
                         for c, v in zip(chunks, vectors, strict=True)],
        })
        if space and done.get("indexed") is False and space.dimension not in self._unindexed:
            self._unindexed.add(space.dimension)
            self.logger.warning(
                "no HNSW index for %d-dimensional vectors (pgvector indexes at most %d): "
                "vector search scans every chunk", space.dimension, HNSW_MAX_DIMENSIONS)

    def delete_documents(self, kb: str, sources: list[str]) -> int:
        """Delete these documents of `kb` and their chunks; return how many went."""
        if not sources:
            return 0
        return int(self._fn("jelly_kb_delete_documents",
                            {"p_kb": kb, "p_sources": list(sources)}) or 0)

    def search(
        self, kb: str, query: str, embedding: list[float] | None = None, k: int = 5
    ) -> list[Chunk]:
        """The `k` best chunks of `kb` for `query`, best first, `score` set.

        Without `embedding`: full-text search (English stemming beside a
        language-neutral ranking, fused). With it: hybrid, i.e. full-text and
        cosine (HNSW) candidate lists fused by reciprocal rank fusion (RRF_K);
        only vectors of the embedding's dimension take part. One SQL function
        (jelly_kb_search) on both backends.
        """
        k = max(1, int(k))
        rows = self._fn("jelly_kb_search", {
            "p_kb": kb, "p_query": query,
            "p_embedding": None if embedding is None else vector_text(embedding),
            "p_k": k, "p_candidates": max(40, 4 * k), "p_rrf_k": RRF_K,
        }) or []
        return [Chunk(content=r["content"], metadata=r["metadata"] or {}, id=r["id"], score=float(r["score"]))
                for r in rows]

    def ingest_finished(self, kb: str) -> None:
        """Called after an ingest run that changed `kb`: refresh search statistics.

        Full-text scores weigh words by rarity, taken from the database's
        statistics (ANALYZE).
        """
        self._fn("jelly_kb_ingest_finished", {"p_kb": kb})

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


def vector_text(vector) -> str | None:
    """pgvector's text form, '[0.1,0.2,...]' (repr: every float round-trips exactly)."""
    if vector is None:
        return None
    return "[" + ",".join(map(repr, map(float, vector))) + "]"
