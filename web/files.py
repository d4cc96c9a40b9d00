"""REST: a user's files in a conversation, and the facts Jelly remembers for a user.

`POST /conversations/<id>/files` (multipart field `file`) has its own size cap,
MAX_FILE_SIZE_MB, instead of MAX_CONTENT_LENGTH: a declared Content-Length past
it answers 413 before the body is read, and an undeclared (chunked) body is cut
off as soon as it passes it. The type comes from the bytes (415 otherwise). The
file is parsed, split and embedded by a background task (knowledge/uploads.py
keeps the CPU work off the hub); the answer waits FILE_READY_WAIT seconds for
it, then says `processing`, and `file_ready` follows on the Socket.IO room
`files:<conversation id>` (`watch_files`).
"""

from __future__ import annotations

import io
import logging
import threading
import time

from flask import Blueprint, current_app, jsonify, request
from werkzeug.formparser import MultiPartParser

from agent.persona import GREETING
from agent.turn import InvalidInput, validate_id, validate_optional_text
from knowledge.embeddings import off_the_hub
from knowledge.retrieval import embed_query, get_retriever
from knowledge.uploads import Unsupported, detect, process
from storage import Busy, NotFound, StoreError
from storage import files as stored
from web.input import parse_json_body
from web.rest import _error, user_token
from web.services import get_chat, get_settings, refuse_if_draining

log = logging.getLogger("jellychat.files")

bp = Blueprint("files", __name__)

MULTIPART_OVERHEAD = 64 * 1024  # bytes of multipart framing allowed beyond the file itself
READ_PIECE = 256 * 1024  # bytes of the body read between turns of the hub
FORM_MEMORY = 500_000  # bytes the multipart parser may buffer (Flask's default)
MAX_NAME_CHARS = 200
MAX_MEMORY_CHARS = 500
FILE_READY = "file_ready"


def files_room(conversation_id: str) -> str:
    return f"files:{conversation_id}"


def _conversation(conversation_id: str) -> str:
    try:
        return validate_id(conversation_id)
    except InvalidInput:
        raise NotFound("conversation not found") from None


def _file_name(filename: str | None) -> str:
    name = " ".join((filename or "").replace("\\", "/").rsplit("/", 1)[-1].split())
    name = "".join(ch for ch in name if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)
    return name[:MAX_NAME_CHARS] or "upload"


def _read_body(cap: int) -> bytes | None:
    """The request body, read in pieces that each give the hub a turn; None past `cap`
    (a declared length is checked before this; a chunked body stops being read there)."""
    environ = request.environ
    stream = environ["wsgi.input"]
    declared = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if declared is None and not chunked:
        return b""
    parts, size = [], 0
    while declared is None or size < declared:
        piece = stream.read(min(READ_PIECE, declared - size) if declared is not None else READ_PIECE)
        if not piece:
            break
        size += len(piece)
        if size > cap:
            return None
        parts.append(piece)
        time.sleep(0)  # green under eventlet: the body arrives faster than the hub may wait
    return b"".join(parts)


def _file_part(body: bytes, boundary: bytes) -> tuple[str, bytes] | None:
    """The `file` part of a multipart body: (its file name, its bytes), None when absent.
    CPU work: called through `off_the_hub`."""
    try:
        _form, files = MultiPartParser(max_form_memory_size=FORM_MEMORY).parse(
            io.BytesIO(body), boundary, len(body))
    except ValueError:
        return None  # a malformed body carries no file
    upload = files.get("file")
    if upload is None:
        return None
    return upload.filename, upload.stream.read()


@bp.post("/conversations/<conversation_id>/files")
def upload_file(conversation_id):
    """Add a file to a conversation: 201 {id, name, mime_type, size, status, chunks, error}."""
    refuse_if_draining()
    settings = get_settings()
    limit = int(settings.max_file_size_mb * 1024 * 1024)
    too_big = f"the file is larger than MAX_FILE_SIZE_MB ({settings.max_file_size_mb:g} MB)"
    if request.content_length is not None and request.content_length > limit + MULTIPART_OVERHEAD:
        return _error(too_big, 413, limit=limit)
    token = user_token()
    conversation = _conversation(conversation_id)
    store = get_chat().store
    stored.list_files(store, token, conversation)  # 404 before the body is read
    if not request.content_type or not request.content_type.startswith("multipart/form-data"):
        raise InvalidInput("file", "send the file as multipart/form-data in the field 'file'")
    boundary = request.mimetype_params.get("boundary", "").encode("latin-1", "replace")
    if not boundary:
        raise InvalidInput("file", "the multipart body has no boundary")
    body = _read_body(limit + MULTIPART_OVERHEAD)
    if body is None:
        return _error(too_big, 413, limit=limit)
    upload = off_the_hub(_file_part, body, boundary)  # parsing 10 MB costs the hub ~40 ms
    if upload is None:
        raise InvalidInput("file", "'file' is required: a multipart field named 'file'")
    name, data = upload
    if len(data) > limit:
        return _error(too_big, 413, limit=limit)
    try:
        mime_type = detect(data)
    except Unsupported as exc:
        return _error(f"unsupported file type: {exc}", 415)
    try:
        row = stored.add_file(store, token, conversation, _file_name(name), mime_type, len(data),
                              settings.max_files_per_conversation)
    except Busy as exc:
        return _error(str(exc), 409)
    finished = _ingest_in_background(current_app._get_current_object(), store, settings, row, data)
    if finished.wait(settings.file_ready_wait) and finished.row is not None:
        row = finished.row
    else:
        finished.announce = True
    return jsonify(_public(row)), 201


class _Finished(threading.Event):  # green under eventlet
    row: dict | None = None
    announce: bool = False


def _public(row: dict) -> dict:
    keys = ("id", "name", "mime_type", "size", "status", "chunks", "error", "conversation_id",
            "created_at")
    return {k: row.get(k) for k in keys}


def _ingest_in_background(app, store, settings, row: dict, data: bytes) -> _Finished:
    from web.sockets import socketio

    finished = _Finished()
    embedder = get_retriever(settings, store).embedder

    def work():
        final = None
        try:
            parsed = process(data, row["mime_type"], row["name"], row["id"], embedder)
            final = stored.finish_file(store, row["id"], parsed.status, parsed.chunks,
                                       parsed.error, parsed.embedder)
        except StoreError as exc:
            log.error("file %s: could not be stored: %s", row["id"], exc)
            try:
                final = stored.finish_file(store, row["id"], "failed", [],
                                           "the file could not be stored, please try again")
            except StoreError:
                pass
        except Exception:  # noqa: BLE001 - a bug must not leave the file `processing` silently
            log.exception("file %s: processing failed", row["id"])
            try:
                final = stored.finish_file(store, row["id"], "failed", [], "the file could not be read")
            except StoreError:
                pass
        finished.row = final
        finished.set()
        if finished.announce and final is not None:
            socketio.emit(FILE_READY, _public(final), to=files_room(row["conversation_id"]))

    socketio.start_background_task(work)
    return finished


@bp.get("/conversations/<conversation_id>/files")
def list_files(conversation_id):
    token = user_token()
    rows = stored.list_files(get_chat().store, token, _conversation(conversation_id))
    return jsonify([_public(r) for r in rows])


@bp.get("/files/<file_id>")
def get_file(file_id):
    token = user_token()
    try:
        file_id = validate_id(file_id, "file_id")
    except InvalidInput:
        raise NotFound("file not found") from None
    return jsonify(_public(stored.get_file(get_chat().store, token, file_id)))


@bp.delete("/files/<file_id>")
def delete_file(file_id):
    """The file, its chunks and their vectors."""
    token = user_token()
    try:
        file_id = validate_id(file_id, "file_id")
    except InvalidInput:
        raise NotFound("file not found") from None
    stored.delete_file(get_chat().store, token, file_id)
    return "", 204


# ------------------------------------------------------------------ memories

@bp.get("/me/memories")
def list_memories():
    return jsonify([_memory(m) for m in stored.list_memories(get_chat().store, user_token())])


def _memory(row: dict) -> dict:
    return {k: row.get(k) for k in ("id", "content", "created_at", "source_conversation_id")}


@bp.post("/me/memories")
def add_memory():
    body = parse_json_body()
    token = user_token()
    content = validate_optional_text("content", body.get("content"), MAX_MEMORY_CHARS)
    if content is None:
        raise InvalidInput("content", "'content' is required")
    content = " ".join(content.split())
    store = get_chat().store
    retriever = get_retriever(get_settings(), store)
    embedding = space = None
    if retriever.embedder is not None:
        try:
            embedding, space = embed_query(retriever.embedder, content), retriever.embedder.space.name
        except Exception as exc:  # noqa: BLE001 - full text still finds it
            log.warning("embedding a memory failed: %s", exc)
    row = stored.save_memory(store, token, GREETING, content, None, embedding, space)
    return jsonify({**_memory(row), "created": row.get("created")}), 201 if row.get("created") else 200


@bp.delete("/me/memories/<memory_id>")
def delete_memory(memory_id):
    token = user_token()
    if not memory_id.isdigit() or len(memory_id) > 18:
        raise NotFound("memory not found")
    stored.delete_memory(get_chat().store, token, int(memory_id))
    return "", 204


@bp.delete("/me/memories")
def clear_memories():
    return jsonify({"deleted": stored.clear_memories(get_chat().store, user_token())})


@bp.get("/me")
def get_me():
    return jsonify(stored.preferences(get_chat().store, user_token()))


@bp.patch("/me")
def patch_me():
    """{memory_enabled: false} turns the memory tools off for this user."""
    body = parse_json_body()
    token = user_token()
    if "memory_enabled" not in body:
        raise InvalidInput("memory_enabled", "'memory_enabled' is required")
    enabled = body["memory_enabled"]
    if not isinstance(enabled, bool):
        raise InvalidInput("memory_enabled", "'memory_enabled' must be true or false")
    return jsonify(stored.set_memory_enabled(get_chat().store, token, GREETING, enabled))


def watch_files(data=None, *_extra):
    """Socket.IO `watch_files {user_token, conversation_id}`: this connection gets the
    conversation's `file_ready` events. Acknowledged with {ok} or {error}."""
    from flask_socketio import join_room

    data = data if isinstance(data, dict) else {}
    try:
        token = user_token(data) if data.get("user_token") is not None else None
        if token is None:
            raise InvalidInput("user_token", "'user_token' is required")
        conversation = _conversation(str(data.get("conversation_id") or ""))
        stored.list_files(get_chat().store, token, conversation)
    except (InvalidInput, NotFound) as exc:
        return {"error": str(exc)}
    except StoreError:
        return {"error": "the chat storage is unavailable, please try again later"}
    join_room(files_room(conversation))
    return {"ok": True}


def init_app(app) -> None:
    from web.sockets import socketio

    app.register_blueprint(bp)
    socketio.on_event("watch_files", watch_files)
