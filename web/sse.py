"""Server-Sent Events transport: a run's events as `event: <name>` / `data: <json>`.

The run is served in its own green thread (a thread in threading mode) that
feeds a queue; the response generator drains it, writing a comment line when
nothing happened for SSE_KEEPALIVE seconds. A client that goes away makes the
next write fail, the server closes the generator, and the run is stopped, as a
Socket.IO disconnect stops it (STOP_ON_DISCONNECT).
"""

from __future__ import annotations

import json
import logging
import queue

from flask import Response

from agent import events as ev
from agent.suggestions import SUGGESTIONS
from agent.turn import Chat, StartedRun
from storage import StoreError

log = logging.getLogger("jellychat.sse")

_END = object()  # the run's thread is done


class QueueSink:
    """A run's events, queued for the response generator."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()

    def emit(self, event: str, data: dict) -> None:
        self.queue.put((event, data))


def frame(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def stream_run(chat: Chat, started: StartedRun, settings) -> Response:
    """Serve `started` in the background and stream its events as they come.

    Under eventlet the server must write each chunk at once (app.py runs it
    with minimum_chunk_size=0)."""

    def events():
        for item in follow(chat, started, settings, until_suggestions=True):
            yield ": keep-alive\n\n" if item is KEEPALIVE else frame(*item)

    response = Response(events(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx and Fly's proxy: do not buffer
    return response


KEEPALIVE = None  # what `follow` yields when nothing happened for SSE_KEEPALIVE seconds


def follow(chat: Chat, started: StartedRun, settings, until_suggestions: bool = False):
    """Serve `started` in a background (green) thread, from now; the generator returned
    yields its `(event, data)` as they come, and KEEPALIVE after each quiet
    SSE_KEEPALIVE seconds, until its final_message or error (or, with `until_suggestions`,
    the `suggestions` event that follows a stored answer). Every streaming transport
    writes its own format from these. Closed before the end (the client went away), it
    stops the run (STOP_ON_DISCONNECT)."""
    from web.sockets import socketio  # the server's own way to start a green thread

    sink = QueueSink()
    run_id = started.run.run_id

    def serve() -> None:
        try:
            chat.serve(started, sink)
        except StoreError as exc:
            log.error("run %s: storage unavailable: %s", run_id, exc)
            sink.emit(ev.ERROR, {"error": "the chat storage is unavailable, please try again later",
                                 "run_id": run_id})
        except Exception:  # noqa: BLE001 - the stream must end with an event, not hang
            log.exception("run %s failed", run_id)
            sink.emit(ev.ERROR, {"error": "internal error, please try again", "run_id": run_id})
        finally:
            sink.queue.put(_END)

    socketio.start_background_task(serve)  # now: a stream never read still runs to its end
    last = until_suggestions and chat.suggester is not None
    return _drain(chat, run_id, sink, settings.sse_keepalive, settings.stop_on_disconnect, last)


def _drain(chat: Chat, run_id: str, sink: QueueSink, keepalive: float, stop_on_disconnect: bool,
           until_suggestions: bool):
    ended = False
    try:
        while True:
            try:
                item = sink.queue.get(timeout=keepalive)
            except queue.Empty:
                yield KEEPALIVE
                continue
            if item is _END:
                ended = True
                return
            event, data = item
            if until_suggestions and event == ev.FINAL and data.get("status") == "succeeded" \
                    and data.get("message_id"):
                yield item  # the `suggestions` event follows (suggest_after always sends it)
                continue
            if event in (ev.FINAL, ev.ERROR, SUGGESTIONS):
                # the run may go on briefly (a model title): the client has its answer
                ended = True
                yield item
                return
            yield item
    finally:
        if not ended and stop_on_disconnect:
            log.info("SSE client of run %s went away: stopping it", run_id)
            chat.registry.cancel([run_id], "stopped")
