"""A user's uploaded file: its type from its content, its text, chunks and vectors.

`detect` looks at the bytes (magic numbers, a zip's members, a strict text
decode), never the name, so an executable named .pdf is refused. `process`
parses and splits (with the knowledge splitter) in a child process, waited for
on a worker thread (`off_the_hub`), so neither the hub nor the GIL is held
meanwhile, then embeds with the knowledge embedder.
A file that cannot be read is stored as `failed` with a reason, never raised.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from knowledge.loaders import SourceDocument, page_from_html
from knowledge.splitting import embedding_text, split_document

log = logging.getLogger("jellychat.knowledge.uploads")

ROOT = str(Path(__file__).resolve().parent.parent)  # the child imports knowledge from here

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
HTML = "text/html"
MARKDOWN = "text/markdown"
TEXT = "text/plain"
EMBED_BATCH = 64
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)\b", re.I | re.S)
_MARKDOWN = re.compile(r"^(#{1,6} \S|```|\s*[-*+] \S|\s*\d+\. \S|>\s)|\[[^\]]+\]\([^)]+\)|\*\*\S",
                       re.M)


class Unsupported(ValueError):
    """Not a type we read (415)."""


@dataclass
class Parsed:
    """What processing made of a file: chunks ({content, metadata, embedding?}) or an error."""

    status: str
    chunks: list[dict]
    error: str | None = None
    embedder: str | None = None


def _text_of(data: bytes) -> str | None:
    """The bytes as text when they are text (UTF-8 or UTF-16 with a BOM), else None."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if "\x00" in text:
        return None
    controls = sum(1 for ch in text[:4096] if ord(ch) < 32 and ch not in "\t\n\r\f")
    return None if controls > 8 else text


def detect(data: bytes) -> str:
    """The file's type from its content; Unsupported otherwise."""
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if "word/document.xml" in archive.namelist():
                    return DOCX
        except zipfile.BadZipFile:
            pass
        raise Unsupported("a zip archive that is not a Word document (.docx)")
    if not data.strip():
        raise Unsupported("the file is empty")
    head = data[:2048]
    if _HTML_START.match(head):
        return HTML
    text = _text_of(data[:65536]) if len(data) > 65536 else _text_of(data)
    if text is None and len(data) > 65536:
        # the cut may split a character: decode a little less
        text = _text_of(data[:65530].rsplit(b"\n", 1)[0])
    if text is None:
        raise Unsupported("only PDF, Word (.docx), HTML, Markdown and plain text files are read")
    return MARKDOWN if _MARKDOWN.search(text[:20000]) else TEXT


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    pages = []
    for number, page in enumerate(reader.pages, 1):
        text = (page.extract_text() or "").strip()
        if text:
            pages.append(f"## Page {number}\n\n{text}")
    return "\n\n".join(pages)


def _docx_text(data: bytes) -> str:
    import docx

    document = docx.Document(io.BytesIO(data))
    lines = []
    for paragraph in document.paragraphs:
        text = paragraph.text.strip()
        if not text:
            continue
        style = (paragraph.style.name or "").lower() if paragraph.style is not None else ""
        if style.startswith("heading"):
            level = style.removeprefix("heading").strip()
            lines.append("#" * (int(level) if level.isdigit() and int(level) < 7 else 2) + " " + text)
        else:
            lines.append(text)
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(cell.text.strip() for cell in row.cells))
    return "\n\n".join(lines)


def document_of(data: bytes, mime_type: str, name: str) -> SourceDocument:
    """The file as a SourceDocument for the splitter; ValueError with a reason when it
    holds no text. CPU-bound: call through `off_the_hub`."""
    if mime_type == PDF:
        text, fmt = _pdf_text(data), "markdown"
        if not text:
            raise ValueError("the PDF has no extractable text (a scan or images only?)")
    elif mime_type == DOCX:
        text, fmt = _docx_text(data), "markdown"
    elif mime_type == HTML:
        page = page_from_html(data, name, fallback_title=name)
        if page is None:
            raise ValueError("the HTML page has no readable text")
        return SourceDocument(source=name, text=page.text, format="markdown", title=name)
    else:
        text = _text_of(data)
        if text is None:
            raise ValueError("the file is not valid UTF-8 text")
        fmt = "markdown" if mime_type == MARKDOWN else "text"
    if not text.strip():
        raise ValueError("the file has no text")
    return SourceDocument(source=name, text=text, format=fmt, title=name)  # cited by its name


def _chunks_of(data: bytes, mime_type: str, name: str, file_id: str) -> list[dict]:
    document = document_of(data, mime_type, name)
    chunks = split_document(document, "conversation-files")
    out = []
    for chunk in chunks:
        metadata = {k: v for k, v in chunk.metadata.items() if k in ("section", "chunk")}
        metadata.update({"file_id": file_id, "name": name, "title": name})
        out.append({"content": chunk.content, "metadata": metadata,
                    "embed": embedding_text(chunk)})
    return out


PARSE_TIMEOUT = 120  # seconds a file may take to parse before it counts as unreadable


def _chunks_in_a_process(data: bytes, mime_type: str, name: str, file_id: str) -> list[dict]:
    """`_chunks_of` in a child process (`python -m knowledge.uploads`): the parsers' pure-Python
    CPU work then never holds this process's GIL (a worker thread holding it while the OS
    runs something else held the hub up to 60 ms on a busy machine), a hostile PDF cannot
    exhaust this process's memory, and a parser that hangs is killed. Runs on a worker
    thread (`off_the_hub`), with the unpatched subprocess module under eventlet."""
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("os"):
        subprocess = patcher.original("subprocess")
    else:
        import subprocess
    header = json.dumps({"mime_type": mime_type, "name": name, "file_id": file_id}).encode()
    try:
        done = subprocess.run([sys.executable, "-m", "knowledge.uploads"], input=header + b"\n" + data,
                              capture_output=True, timeout=PARSE_TIMEOUT, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise ValueError(f"the file took longer than {PARSE_TIMEOUT} s to read") from None
    if done.returncode != 0:
        raise RuntimeError(f"the parser exited with {done.returncode}: "
                           f"{done.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    answer = json.loads(done.stdout)
    if answer.get("error"):
        raise ValueError(answer["error"])
    return answer["chunks"]


def _child() -> None:
    """The child process of `_chunks_in_a_process`: header line, then the file, on stdin."""
    raw = sys.stdin.buffer.read()
    header, _, data = raw.partition(b"\n")
    meta = json.loads(header)
    try:
        chunks = _chunks_of(data, meta["mime_type"], meta["name"], meta["file_id"])
        answer = {"chunks": chunks}
    except ValueError as exc:
        answer = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a broken file: the reason, never a crash
        answer = {"error": f"the file could not be read ({type(exc).__name__})"}
    sys.stdout.write(json.dumps(answer))


def process(data: bytes, mime_type: str, name: str, file_id: str, embedder=None) -> Parsed:
    """Parse, split and embed one file. Never raises for a bad file: `failed` with a reason."""
    from knowledge.embeddings import off_the_hub  # here: the child process needs neither
    from knowledge.retrieval import _CPU_SLOTS

    try:
        chunks = off_the_hub(_chunks_in_a_process, data, mime_type, name, file_id)
    except ValueError as exc:
        return Parsed("failed", [], str(exc))
    except Exception as exc:  # noqa: BLE001 - a broken file is the user's, not a server error
        log.info("file %s (%s) could not be read: %s: %s", file_id, mime_type,
                 type(exc).__name__, exc)
        return Parsed("failed", [], f"the file could not be read ({type(exc).__name__})")
    if not chunks:
        return Parsed("failed", [], "the file has no text")
    texts = [c.pop("embed") for c in chunks]
    space = None
    if embedder is not None:
        try:
            vectors = []
            for start in range(0, len(texts), EMBED_BATCH):
                batch = texts[start:start + EMBED_BATCH]
                if getattr(embedder, "cpu_bound", False):
                    with _CPU_SLOTS:
                        vectors.extend(off_the_hub(embedder.embed_documents, batch))
                else:
                    vectors.extend(embedder.embed_documents(batch))
            for chunk, vector in zip(chunks, vectors, strict=True):
                chunk["embedding"] = [float(x) for x in vector]
            space = embedder.space.name
        except Exception as exc:  # noqa: BLE001 - full text still finds it
            log.warning("file %s: embedding failed (%s); full-text search only", file_id, exc)
            for chunk in chunks:
                chunk.pop("embedding", None)
    return Parsed("ready", chunks, None, space)


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)  # pypdf's warnings about a damaged file go nowhere
    _child()
