"""Split documents into chunks that remember where they came from.

Markdown is cut at its headings first (langchain-text-splitters'
MarkdownHeaderTextSplitter), reStructuredText at its section titles, then
long sections with the format-aware recursive splitter. Every chunk carries
kb, title, source, url, section (the heading path), anchor and updated.
"""

from __future__ import annotations

import re

from langchain_text_splitters import (
    Language,
    MarkdownHeaderTextSplitter,
    RecursiveCharacterTextSplitter,
)

from knowledge.loaders import SourceDocument
from storage.base import Chunk

CHUNK_SIZE = 1000  # characters; all-MiniLM-L6-v2 reads about 256 tokens
CHUNK_OVERLAP = 150
SPLITTER_VERSION = "2"  # part of each document's hash: bump it to re-split everything
MIN_CHUNK_CHARS = 20

_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]
_ANCHOR = re.compile(r"\s*\{#([^}]+)\}\s*$")
_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:.<>_])\1{2,}\s*$")


def _visible(text: str) -> str:
    """Text without images, HTML tags, link targets and markup characters."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)|<[^>]+>|\]\([^)]*\)", " ", text)
    return re.sub(r"[\W_]+", " ", text).strip()


def slugify(text: str) -> str:
    """The anchor a docs site gives a heading: lower case, punctuation dropped, dashes."""
    text = re.sub(r"[^\w\s-]", "", text.lower(), flags=re.UNICODE).strip()
    return re.sub(r"\s+", "-", text)


def _heading(raw: str) -> tuple[str, str]:
    """Heading text and anchor from '## Title {#anchor}'."""
    match = _ANCHOR.search(raw)
    anchor = match.group(1).strip() if match else None
    text = raw[: match.start()] if match else raw
    text = re.sub(r"\*\*|__|`", "", text).strip().strip("#").strip()
    return text, anchor or slugify(text)


def _recursive(language: Language | None) -> RecursiveCharacterTextSplitter:
    if language is None:
        return RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    return RecursiveCharacterTextSplitter.from_language(
        language, chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP
    )


def markdown_sections(text: str, title: str) -> list[tuple[str, str, str]]:
    """(section path, anchor, body) of a markdown text, cut at its headings."""
    splitter = MarkdownHeaderTextSplitter(_HEADERS, strip_headers=True)
    sections = []
    for piece in splitter.split_text(text):
        names, anchor = [], ""
        for _, key in _HEADERS:
            if key in piece.metadata:
                name, anchor = _heading(piece.metadata[key])
                if not (key == "h1" and name.lower() == title.lower()):
                    names.append(name)
        body = re.sub(r" {2}\n", "\n", piece.page_content).strip()
        sections.append((" › ".join(names), anchor, body))
    return sections


def rst_sections(text: str) -> list[tuple[str, str, str]]:
    """(section path, anchor, body) of a reStructuredText text, cut at its section titles."""
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []  # heading styles in order of appearance = levels
    path: list[str] = []
    sections: list[tuple[str, str, str]] = []
    body: list[str] = []
    anchor = ""
    i = 0

    def flush():
        content = "\n".join(body).strip()
        if content:
            sections.append((" › ".join(path[1:] if len(path) > 1 else []), anchor, content))
        body.clear()

    while i < len(lines):
        line = lines[i]
        over = bool(_RST_ADORNMENT.match(line)) and i + 2 < len(lines) \
            and _RST_ADORNMENT.match(lines[i + 2]) and lines[i + 1].strip()
        under = not _RST_ADORNMENT.match(line) and line.strip() and i + 1 < len(lines) \
            and _RST_ADORNMENT.match(lines[i + 1]) and len(lines[i + 1].rstrip()) >= len(line.strip())
        if over or under:
            name = (lines[i + 1] if over else line).strip()
            style = ((lines[i + 2] if over else lines[i + 1]).strip()[0], bool(over))
            if style not in styles:
                styles.append(style)
            level = styles.index(style)
            flush()
            path[:] = path[:level] + [name]
            anchor = slugify(name)
            i += 3 if over else 2
            continue
        body.append(line)
        i += 1
    flush()
    return sections


def split_document(document: SourceDocument, kb: str) -> list[Chunk]:
    """The chunks of one document, in reading order."""
    if document.format == "markdown":
        sections, language = markdown_sections(document.text, document.title), Language.MARKDOWN
    elif document.format == "rst":
        sections, language = rst_sections(document.text), Language.RST
    else:
        sections, language = [("", "", document.text.strip())], None
    splitter = _recursive(language)
    base = {"kb": kb, "title": document.title, "source": document.source}
    if document.url:
        base["url"] = document.url
    if document.updated_at:
        base["updated"] = document.updated_at.isoformat()
    chunks = []
    for section, anchor, body in sections:
        for piece in splitter.split_text(body):
            piece = piece.strip()
            visible = len(_visible(piece))
            if visible < 3 or (visible < MIN_CHUNK_CHARS and not section):
                continue  # e.g. only an image
            metadata = dict(base, chunk=len(chunks))
            if section:
                metadata["section"] = section
            if anchor:
                metadata["anchor"] = anchor
            chunks.append(Chunk(content=piece, metadata=metadata))
    return chunks


def embedding_text(chunk: Chunk) -> str:
    """What is embedded for a chunk: its text with the page title and section in front."""
    head = chunk.title
    if chunk.metadata.get("section"):
        head += " — " + chunk.metadata["section"]
    return f"{head}\n{chunk.content}"
