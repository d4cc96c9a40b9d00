"""POST /api/chat: the Vercel AI SDK's UI message stream (v1), what `useChat` reads.

The request is `{id, messages}` (useChat's DefaultChatTransport); the last user
message is the turn, `id` names the user's stored conversation (our id, or the
client's chat id, mapped to one of ours on first use). The caller is named by
`X-User-Token`, by a Bearer API key, or by both (the key's end user).
"""

from __future__ import annotations

import json
import uuid

from flask import Response, jsonify, request
from flask_openapi3 import APIBlueprint, Tag

from agent import events as ev
from agent.turn import validate
from web import schemas as s
from web.clients import (
    ClientError,
    authenticate,
    classify,
    conversation_for,
    json_object,
    limit_key,
)
from web.limits import limit
from web.openai_compat import text_of
from web.services import get_chat, get_settings, refuse_if_draining
from web.sse import KEEPALIVE, follow

AI_SDK = Tag(name="ai-sdk", description="The Vercel AI SDK's chat protocol (`useChat`)")
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
           "x-vercel-ai-ui-message-stream": "v1"}

bp = APIBlueprint("ai_sdk", __name__)


def error_response(err: ClientError) -> Response:
    response = jsonify({"error": err.message})
    response.status_code = err.status
    if err.retry_after:
        response.headers["Retry-After"] = str(err.retry_after)
    return response


@bp.post("/api/chat", tags=[AI_SDK], responses={
    200: s.UI_CHAT_STREAM, 400: s.UIChatErrorOut, 401: s.UIChatErrorOut, 402: s.UIChatErrorOut,
    404: s.UIChatErrorOut, 409: s.UIChatErrorOut, 413: s.UIChatErrorOut, 415: s.UIChatErrorOut,
    429: s.UIChatErrorOut, 503: s.UIChatErrorOut,
}, security=[{"api_key": []}, {}], openapi_extensions={"requestBody": s.UI_CHAT_BODY})
@limit("ui_chat", token=limit_key)
def ui_chat():
    """A turn of Jelly as the AI SDK UI message stream; refusals come first, as JSON."""
    try:
        refuse_if_draining()
        body = json_object()
        chat = get_chat()
        caller = authenticate(chat.store, key_required=False)
        question = last_user_text(body.get("messages"))
        application = caller.application or "ai-sdk"
        validate(caller.user_token, question, application, chat.max_message_chars)
        chat_id = body.get("id")
        if chat_id is None:
            raise ClientError(400, "'id' (the chat) is required", "invalid_request_error",
                              param="id")
        conversation = conversation_for(chat.store, caller, chat_id)
        started = chat.start(caller.user_token, question, application,
                             conversation_id=conversation, origin=f"ai-sdk:{uuid.uuid4().hex}",
                             client_address=request.remote_addr)
    except Exception as exc:  # noqa: BLE001 - refusals before the stream, as JSON
        return error_response(classify(exc))
    parts = UIMessageStream(started.run.run_id)
    response = Response(parts.stream(follow(chat, started, get_settings())),
                        mimetype="text/event-stream")
    response.headers.update(HEADERS)
    response.headers["X-Conversation-Id"] = started.run.conversation_id
    return response


def last_user_text(messages) -> str:
    if not isinstance(messages, list) or not messages:
        raise ClientError(400, "'messages' must be a non-empty array", "invalid_request_error",
                          param="messages")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            parts = message.get("parts")
            if isinstance(parts, list):
                return text_of([p for p in parts if isinstance(p, dict) and p.get("type") == "text"])
            return text_of(message.get("content"))  # the AI SDK before v5
    raise ClientError(400, "'messages' has no user message", "invalid_request_error",
                      param="messages")


class UIMessageStream:
    """One run's events as UI message chunks."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.text_id: str | None = None
        self.texts = 0

    def _end_text(self) -> list[dict]:
        if self.text_id is None:
            return []
        part = {"type": "text-end", "id": self.text_id}
        self.text_id = None
        return [part]

    def parts(self, event: str, data: dict) -> list[dict]:
        if event == ev.TOKEN:
            out = []
            if self.text_id is None:
                self.texts += 1
                self.text_id = f"text-{self.texts}"
                out.append({"type": "text-start", "id": self.text_id})
            out.append({"type": "text-delta", "id": self.text_id, "delta": data["token"]})
            return out
        if event == ev.TOOL_START:
            return [*self._end_text(), {
                "type": "tool-input-available", "toolCallId": data["call_id"],
                "toolName": data["tool"], "input": data.get("args") or {}, "dynamic": True,
                "title": data.get("tool_name") or data["tool"]}]
        if event == ev.TOOL_END:
            if data.get("status") == "ok":
                return [{"type": "tool-output-available", "toolCallId": data["call_id"],
                         "output": data.get("summary") or "", "dynamic": True}]
            return [{"type": "tool-output-error", "toolCallId": data["call_id"],
                     "errorText": data.get("summary") or "the tool failed", "dynamic": True}]
        if event == ev.FINAL:
            out = self._end_text()
            for index, source in enumerate(data.get("sources") or [], 1):
                if source.get("url"):
                    out.append({"type": "source-url", "sourceId": f"source-{index}",
                                "url": source["url"], "title": source.get("title") or source["url"]})
            out.append({"type": "finish",
                        "finishReason": "length" if data.get("truncated") else "stop",
                        "messageMetadata": {"conversation_id": data.get("conversation_id"),
                                            "run_id": data.get("run_id"),
                                            "message_id": data.get("message_id"),
                                            "status": data.get("status")}})
            return out
        if event == ev.ERROR:
            return [*self._end_text(), {"type": "error",
                                        "errorText": data.get("error") or "the turn failed"}]
        return []

    def stream(self, events):
        try:
            yield _data({"type": "start", "messageId": self.run_id})
            for item in events:
                if item is KEEPALIVE:
                    yield ": keep-alive\n\n"
                    continue
                for part in self.parts(*item):
                    yield _data(part)
            yield "data: [DONE]\n\n"
        finally:
            events.close()  # a client that went away stops the run


def _data(part: dict) -> str:
    return f"data: {json.dumps(part, ensure_ascii=False)}\n\n"
