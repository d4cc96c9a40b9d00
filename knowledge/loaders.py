"""Loaders: turn a folder, a web page or a sitemap into `SourceDocument`s.

A folder is read recursively (markdown, mdx, reStructuredText, HTML, text);
web pages are fetched with `requests` and their article text extracted with
trafilatura (as markdown, so headings survive for the splitter). Pages that
cannot be fetched or yield no text are reported, never fatal.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urljoin, urlparse

import yaml

log = logging.getLogger("jellychat.knowledge.loaders")

FOLDER_SUFFIXES = {".md": "markdown", ".mdx": "markdown", ".rst": "rst", ".html": "html",
                   ".htm": "html", ".txt": "text"}
USER_AGENT = "JellyChat-ingest/1.0 (+knowledge base loader)"
MAX_PAGE_BYTES = 5 * 1024 * 1024
MAX_SITEMAP_DEPTH = 3


class LoadError(RuntimeError):
    """The source as a whole cannot be read (missing folder, unreachable sitemap)."""


@dataclass
class SourceDocument:
    """One document as read from its source, before splitting."""

    source: str  # the document's key within a kb: its URL, or its path relative to the folder
    text: str  # body without front matter
    format: str  # markdown | rst | text
    title: str
    url: str | None = None  # public address, when known
    updated_at: datetime | None = None


@dataclass
class Loaded:
    """What a loader produced: the documents and the ones that failed (source, reason)."""

    documents: list[SourceDocument] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


# --- public addresses of known document folders --------------------------------

@dataclass(frozen=True)
class SiteLayout:
    """Maps a file's relative path to its public URL: base + path without suffix + page suffix."""

    base_url: str
    page_suffix: str = ""

    def url_for(self, relative: str) -> str:
        stem = relative.rsplit(".", 1)[0] if "." in Path(relative).name else relative
        return self.base_url + stem + self.page_suffix


# Recognised by a marker file inside the folder (the project's two corpora).
KNOWN_LAYOUTS = [
    ("auto/Masternode.md", SiteLayout("https://www.defichainwiki.com/docs/")),
    ("api/ocean/index.rst", SiteLayout("https://docs.defichain-python.de/build/html/", ".html")),
]


def guess_layout(folder: Path) -> SiteLayout | None:
    for marker, layout in KNOWN_LAYOUTS:
        if (folder / marker).is_file():
            return layout
    return None


# --- text helpers --------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.S)
_MD_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*(?:\{#[^}]*\})?\s*#*\s*$", re.M)
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:.<>_])\1{2,}\s*$")
_MDX_LINE = re.compile(r"^(import|export)\s.*$", re.M)
_DATE_KEYS = ("last_update", "last_updated", "updated", "lastmod", "date")


def split_front_matter(text: str) -> tuple[dict, str]:
    """YAML front matter (between `---` lines at the top) and the rest of the text."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        meta = {}
    return (meta if isinstance(meta, dict) else {}), text[match.end():]


def _as_datetime(value) -> datetime | None:
    if isinstance(value, dict):  # docusaurus: last_update: {date: ..., author: ...}
        value = value.get("date")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def markdown_title(text: str) -> str | None:
    match = _MD_HEADING.search(text)
    return match.group(1).strip() if match else None


def rst_title(text: str) -> str | None:
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        line, under = lines[i].rstrip(), lines[i + 1].rstrip()
        if line.strip() and not _RST_UNDERLINE.match(line) and _RST_UNDERLINE.match(under) \
                and len(under) >= len(line.strip()):
            return line.strip()
    return None


def _pretty_name(path: str) -> str:
    return Path(path).stem.replace("_", " ").replace("-", " ").strip() or path


# --- folder --------------------------------------------------------------------

def read_file(path: Path, relative: str, layout: SiteLayout | None) -> SourceDocument | None:
    """One file as a SourceDocument, or None when it holds no text."""
    kind = FOLDER_SUFFIXES[path.suffix.lower()]
    raw = path.read_text(encoding="utf-8", errors="replace")
    url = layout.url_for(relative) if layout else None
    if kind == "html":
        return page_from_html(raw, source=url or relative, url=url, fallback_title=_pretty_name(relative))
    meta, body = split_front_matter(raw) if kind == "markdown" else ({}, raw)
    source = url or relative
    if url is None and isinstance(meta.get("url"), str) and meta["url"].startswith("http"):
        url = meta["url"]  # front matter may name the page a document summarises
    if path.suffix.lower() == ".mdx":
        body = _MDX_LINE.sub("", body)
    if not body.strip():
        return None
    if kind == "markdown":
        title = meta.get("title") or markdown_title(body)
        summary = meta.get("description")
        if isinstance(summary, str) and len(summary.strip()) >= 20 and not summary.startswith("TODO"):
            # the page's own summary opens it: what the page is about, in one or two sentences
            body = f"{summary.strip()}\n\n{body.lstrip()}"
    elif kind == "rst":
        title = rst_title(body)
    else:
        title = None
    updated = next((_as_datetime(meta[k]) for k in _DATE_KEYS if meta.get(k)), None)
    return SourceDocument(
        source=source, text=body, format=kind, title=str(title or _pretty_name(relative)),
        url=url, updated_at=updated,
    )


def load_folder(folder: Path, layout: SiteLayout | None = None) -> Loaded:
    """Every supported file under `folder` (hidden files and folders skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LoadError(f"{folder} is not a folder")
    layout = layout or guess_layout(folder)
    loaded = Loaded()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if not path.is_file() or path.suffix.lower() not in FOLDER_SUFFIXES:
            continue
        if any(part.startswith((".", "_")) for part in Path(relative).parts):
            continue
        try:
            document = read_file(path, relative, layout)
        except (OSError, UnicodeError) as exc:
            loaded.failures.append((relative, str(exc)))
            continue
        if document is None:
            loaded.failures.append((relative, "no text"))
        else:
            loaded.documents.append(document)
    return loaded


# --- web -----------------------------------------------------------------------

def page_from_html(html: str | bytes, source: str, url: str | None = None,
                   fallback_title: str | None = None) -> SourceDocument | None:
    """The article text of an HTML page (markdown, headings kept), or None if it has none."""
    import trafilatura

    extracted = trafilatura.bare_extraction(
        html, url=url, with_metadata=True, include_formatting=True, include_links=False,
        include_comments=False, output_format="python",
    )
    text = (getattr(extracted, "text", None) or "").strip() if extracted else ""
    if not text:
        return None
    title = getattr(extracted, "title", None) or markdown_title(text) or fallback_title or source
    updated = _as_datetime(getattr(extracted, "date", None))
    return SourceDocument(source=source, text=text, format="markdown", title=title, url=url,
                          updated_at=updated)


def _session():
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


@dataclass
class Fetched:
    content_type: str
    body: bytes
    encoding: str | None

    @property
    def text(self) -> str:
        return self.body.decode(self.encoding or "utf-8", errors="replace")


def _get(session, url: str, timeout: float) -> Fetched:
    """GET `url` (at most MAX_PAGE_BYTES); raises on HTTP errors."""
    with session.get(url, timeout=timeout, stream=True) as response:
        response.raise_for_status()
        parts, size = [], 0
        for part in response.iter_content(64 * 1024):
            size += len(part)
            if size > MAX_PAGE_BYTES:
                raise ValueError(f"larger than {MAX_PAGE_BYTES // (1024 * 1024)} MB")
            parts.append(part)
        header = response.headers.get("Content-Type", "")
        charset = re.search(r"charset=([\w-]+)", header, re.I)
        return Fetched(header.split(";")[0].strip().lower(), b"".join(parts),
                       charset.group(1) if charset else None)


def fetch_page(url: str, session=None, timeout: float = 20.0, updated_at=None) -> SourceDocument:
    """Fetch one page and extract its article; raises on HTTP errors or an empty page."""
    session = session or _session()
    response = _get(session, url, timeout)
    kind = response.content_type
    path = urlparse(url).path.lower()
    if kind in ("text/plain", "text/markdown") or path.endswith((".md", ".txt", ".rst")):
        text = response.text
        fmt = "rst" if path.endswith(".rst") else "text" if path.endswith(".txt") else "markdown"
        meta, body = split_front_matter(text) if fmt == "markdown" else ({}, text)
        title = meta.get("title") or (markdown_title(body) if fmt == "markdown" else rst_title(body))
        document = SourceDocument(url, body, fmt, str(title or url), url, None)
    else:
        document = page_from_html(response.body, source=url, url=url)
        if document is None:
            raise ValueError("no article text found")
    if updated_at and not document.updated_at:
        document.updated_at = updated_at
    return document


def _tag(element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def sitemap_entries(url: str, session=None, timeout: float = 20.0, _depth: int = 0
                    ) -> list[tuple[str, datetime | None]]:
    """(page URL, lastmod) of a sitemap, following nested sitemap indexes."""
    session = session or _session()
    try:
        root = ET.fromstring(_get(session, url, timeout).body)
    except Exception as exc:  # noqa: BLE001 - reported with the URL
        raise LoadError(f"cannot read the sitemap {url}: {exc}") from None
    entries = []
    for node in root:
        loc = next((c.text.strip() for c in node if _tag(c) == "loc" and c.text), None)
        if not loc:
            continue
        loc = urljoin(url, loc)
        if _tag(node) == "sitemap" and _depth < MAX_SITEMAP_DEPTH:
            entries.extend(sitemap_entries(loc, session, timeout, _depth + 1))
        elif _tag(node) == "url":
            lastmod = next((c.text for c in node if _tag(c) == "lastmod" and c.text), None)
            entries.append((loc, _as_datetime(lastmod)))
    return entries


def load_sitemap(url: str, workers: int = 4, timeout: float = 20.0, progress: bool = False) -> Loaded:
    """Every page of a sitemap; failing pages are listed in `failures`."""
    session = _session()
    entries = list(dict.fromkeys(sitemap_entries(url, session, timeout)))
    if not entries:
        raise LoadError(f"the sitemap {url} lists no pages")
    loaded = Loaded()

    def fetch(entry):
        page, lastmod = entry
        try:
            return fetch_page(page, session, timeout, lastmod), None
        except Exception as exc:  # noqa: BLE001 - a failing page is reported, not fatal
            return None, (page, _reason(exc))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(fetch, entries)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(entries), desc="fetching pages", unit="page")
        for document, failure in results:
            if document is not None:
                loaded.documents.append(document)
            else:
                loaded.failures.append(failure)
    return loaded


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code}"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def is_sitemap(url: str) -> bool:
    return urlparse(url).path.lower().endswith(".xml")


def load(source: str, layout: SiteLayout | None = None, progress: bool = False) -> Loaded:
    """A folder path, a sitemap URL (…/sitemap.xml) or a single page URL."""
    if re.match(r"^https?://", source, re.I):
        if is_sitemap(source):
            return load_sitemap(source, progress=progress)
        try:
            return Loaded(documents=[fetch_page(source)])
        except Exception as exc:  # noqa: BLE001 - the one page is the whole source
            raise LoadError(f"cannot load {source}: {_reason(exc)}") from None
    return load_folder(Path(source), layout)
