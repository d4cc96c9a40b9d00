"""Knowledge bases: load, split, embed and ingest documents; retrieve chunks.

No Flask here (the CLI command lives in `knowledge.cli`), nothing at import time.
"""

from knowledge.embeddings import Embedder, EmbedderError, get_embedder, make_embedder
from knowledge.ingest import EmbedderMismatch, IngestReport, ingest
from knowledge.loaders import LoadError, SiteLayout
from knowledge.retrieval import Retriever
from knowledge.starter import STARTER_DIR, STARTER_KB, prepare_knowledge

__all__ = [
    "STARTER_DIR", "STARTER_KB", "Embedder", "EmbedderError", "EmbedderMismatch", "IngestReport",
    "LoadError", "Retriever", "SiteLayout", "get_embedder", "ingest", "make_embedder",
    "prepare_knowledge",
]
