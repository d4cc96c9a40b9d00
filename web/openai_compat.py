"""Jelly as an OpenAI-compatible model: GET /v1/models and POST /v1/chat/completions
(streamed or not), for Open WebUI, LibreChat and any OpenAI SDK.

The last user message of the request is the turn; the earlier ones only find the
stored conversation it continues (the run reads its memory from the store, so
resending a chat's history never stores it twice). Tools run on the server:
their activity is shown as `reasoning_content` (or, with
OPENAI_COMPAT_TOOL_DETAILS=openwebui, as Open WebUI's `<details type="tool_calls">`
blocks in the content, stripped again from later requests' history) and never
as `tool_calls`, which a client would try to run itself.
"""

from __future__ import annotations

import html
import json
import re
import time
import uuid

from flask import Response, jsonify, request
from flask_openapi3 import APIBlueprint, Tag

from agent import events as ev
from agent.assistants import DEFAULT_ID
from agent.events import CollectingSink
from agent.turn import InvalidInput, validate
from storage import RateLimited
from web import schemas as s
from web.clients import (
    Caller,
    ClientError,
    authenticate,
    classify,
    conversation_for,
    json_object,
    limit_key,
)
from web.limits import limit
from web.services import get_chat, get_settings, refuse_if_draining
from web.sse import KEEPALIVE, follow

OPENAI = Tag(name="openai", description="OpenAI-compatible chat: `Authorization: Bearer <API key>`")
DEFAULT_MODEL = "jelly"
CREATED = 1_700_000_000  # the `created` of the models: fixed, as the ids are
MAX_SUMMARY_CHARS = 300
# Open WebUI's blocks (tool calls, reasoning) in an assistant message sent back to us
DETAILS_BLOCK = re.compile(r'<details\s+type="(?:tool_calls|reasoning)"[^>]*>.*?</details>\s*',
                           re.S | re.I)

bp = APIBlueprint("openai_compat", __name__, url_prefix="/v1")


def error_response(err: ClientError) -> Response:
    """OpenAI's error shape, with Retry-After when one applies."""
    response = jsonify({"error": {"message": err.message, "type": err.kind, "param": err.param,
                                  "code": err.code}})
    response.status_code = err.status
    if err.retry_after:
        response.headers["Retry-After"] = str(err.retry_after)
    return response


@bp.errorhandler(RateLimited)
def _rate_limited(exc: RateLimited) -> Response:
    """An endpoint limit (`@limit`, before the view runs) in OpenAI's shape too."""
    return error_response(classify(exc))


def model_ids(store) -> list[str]:
    """`jelly` (the default assistant), and one id per public assistant."""
    return [DEFAULT_MODEL, *(str(a["id"]) for a in store.list_assistants(everyone=False)
                             if a.get("id") and a["id"] != DEFAULT_ID)]


def assistant_of(store, caller: Caller, model) -> str | None:
    """The assistant a completion asks for: `model` when it names a public assistant (or
    the key's own); for `jelly`, the key's `assistant_id` (None: the usual choice, the
    conversation's, the application's, the default). 404 for any other model."""
    bound = (caller.key or {}).get("assistant_id")
    if model == DEFAULT_MODEL:
        return bound
    if isinstance(model, str) and (model == bound or model in model_ids(store)):
        return model
    raise ClientError(404, f"The model '{model}' does not exist", "invalid_request_error",
                      "model_not_found", "model")


@bp.get("/models", tags=[OPENAI], responses={200: s.OpenAIModelListOut, 401: s.OpenAIErrorOut,
                                              503: s.OpenAIErrorOut},
        security=[{"api_key": []}])
@limit("models")
def list_models():
    """The models a key may ask for (the OpenAI list shape)."""
    try:
        store = get_chat().store
        authenticate(store)
        return jsonify({"object": "list", "data": [
            {"id": i, "object": "model", "created": CREATED, "owned_by": "jelly"}
            for i in model_ids(store)]})
    except Exception as exc:  # noqa: BLE001 - every refusal in OpenAI's shape
        return error_response(classify(exc))


@bp.post("/chat/completions", tags=[OPENAI], responses={
    200: s.ChatCompletionOut, 400: s.OpenAIErrorOut, 401: s.OpenAIErrorOut,
    402: s.OpenAIErrorOut, 404: s.OpenAIErrorOut, 409: s.OpenAIErrorOut,
    413: s.OpenAIErrorOut, 415: s.OpenAIErrorOut, 429: s.OpenAIErrorOut, 503: s.OpenAIErrorOut,
}, security=[{"api_key": []}], openapi_extensions={"requestBody": s.CHAT_COMPLETION_BODY})
@limit("chat_completions", token=limit_key)
def chat_completions():
    """A turn of Jelly: the last user message, in the conversation the earlier ones (or
    `X-Conversation-Id`) name. `stream: true` answers with `chat.completion.chunk`s."""
    try:
        refuse_if_draining()
        body = json_object()
        chat = get_chat()
        caller = authenticate(chat.store, body.get("user"))
        model = body.get("model")
        assistant_id = assistant_of(chat.store, caller, model)
        question, history = read_messages(body.get("messages"))
        validate(caller.user_token, question, _application(caller), chat.max_message_chars)
        stream = body.get("stream") is True
        options = body.get("stream_options")
        include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        conversation = conversation_for(chat.store, caller, request.headers.get("X-Conversation-Id"),
                                        history)
        started = _start(chat, caller, question, conversation, assistant_id, model)
    except Exception as exc:  # noqa: BLE001 - every refusal in OpenAI's shape
        return error_response(classify(exc))
    settings = get_settings()
    completion = Completion(started.run.run_id, model,
                            settings.openai_compat_tool_details == "openwebui")
    if not stream:
        try:
            sink = CollectingSink()
            chat.serve(started, sink)
            for event, data in sink.events:
                completion.add(event, data)
            response = jsonify(completion.whole())
        except Exception as exc:  # noqa: BLE001
            return error_response(classify(exc))
    else:
        response = Response(completion.stream(follow(chat, started, settings), include_usage),
                            mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
    response.headers["X-Conversation-Id"] = started.run.conversation_id
    return response


def _start(chat, caller: Caller, question: str, conversation: str, assistant_id, model):
    """The run, with the assistant the model names; a key bound to an assistant deleted
    since falls back to the usual choice (as its conversations do)."""
    def start(assistant):
        return chat.start(caller.user_token, question, _application(caller),
                          conversation_id=conversation, origin=f"openai:{uuid.uuid4().hex}",
                          client_address=request.remote_addr, assistant_id=assistant)
    try:
        return start(assistant_id)
    except InvalidInput as exc:
        if exc.field != "assistant_id":
            raise
        if model != DEFAULT_MODEL:  # deleted between the check and the start
            raise ClientError(404, f"The model '{model}' does not exist",
                              "invalid_request_error", "model_not_found", "model") from None
        return start(None)


def _application(caller: Caller) -> str:
    return caller.application or "openai-api"


def text_of(content) -> str:
    """The text of a message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def read_messages(messages) -> tuple[str, list[dict]]:
    """(the turn's question, the earlier user/assistant messages as stored rows)."""
    if not isinstance(messages, list) or not messages:
        raise ClientError(400, "'messages' must be a non-empty array", "invalid_request_error",
                          "invalid_value", "messages")
    last = None
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ClientError(400, f"'messages[{index}]' must be an object",
                              "invalid_request_error", "invalid_value", "messages")
        if message.get("role") == "user":
            last = index
    if last is None:
        raise ClientError(400, "'messages' has no user message", "invalid_request_error",
                          "invalid_value", "messages")
    history = []
    for message in messages[:last]:
        role = message.get("role")
        if role not in ("user", "assistant"):
            continue  # system prompts, tool results: not part of a stored chat
        text = text_of(message.get("content"))
        if role == "assistant":
            text = DETAILS_BLOCK.sub("", text)
        if text.strip():
            history.append({"type": "human" if role == "user" else "jelly", "content": text})
    return text_of(messages[last].get("content")), history


def _args_text(args) -> str:
    if isinstance(args, dict) and len(args) == 1:
        (value,) = args.values()
        if isinstance(value, str | int | float):
            return str(value)
    return json.dumps(args, ensure_ascii=False, separators=(",", ":"))


class Completion:
    """One run's events as a chat completion (chunks, or the whole)."""

    def __init__(self, run_id: str, model: str, openwebui: bool):
        self.id = f"chatcmpl-{run_id.replace('-', '')}"
        self.model = model
        self.created = int(time.time())
        self.openwebui = openwebui
        self.calls: dict[str, dict] = {}  # call_id -> its tool_start
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.final: dict | None = None
        self.error: str | None = None
        self._around: tuple[str, str] | None = None  # a delta chunk's text around its delta

    def add(self, event: str, data: dict) -> dict | None:
        """Take one event; the delta it makes (None: nothing to send)."""
        if event == ev.TOKEN:
            self.content.append(data["token"])
            return {"content": data["token"]}
        if event == ev.TOOL_START:
            self.calls[data["call_id"]] = data
            if self.openwebui:
                return None
            line = f"{data.get('tool_name') or data['tool']}…\n"
            self.reasoning.append(line)
            return {"reasoning_content": line}
        if event == ev.TOOL_END:
            call = self.calls.get(data["call_id"], {})
            summary = (data.get("summary") or "")[:MAX_SUMMARY_CHARS]
            if self.openwebui:
                block = details_block(data, call.get("args") or {}, summary)
                self.content.append(block)
                return {"content": block}
            args = _args_text(call.get("args") or {})
            if data.get("status") != "ok":
                line = f"{data['tool']}: {args} failed: {summary}\n"
            elif summary.startswith(args):  # the result restates its input (the calculator)
                line = f"{data['tool']}: {summary}\n"
            else:
                line = f"{data['tool']}: {args} → {summary}\n"
            self.reasoning.append(line)
            return {"reasoning_content": line}
        if event == ev.FINAL:
            self.final = data
        elif event == ev.ERROR:
            self.error = data.get("error") or "the turn failed"
        return None

    def _finish_reason(self) -> str:
        return "length" if (self.final or {}).get("truncated") else "stop"

    def usage(self) -> dict:
        used = (self.final or {}).get("usage") or {}
        prompt, completion = used.get("input_tokens", 0), used.get("output_tokens", 0)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def _chunk(self, choices: list, **extra) -> str:
        payload = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                   "model": self.model, "system_fingerprint": None, "choices": choices, **extra}
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    def _delta(self, delta: dict, finish_reason=None) -> str:
        if finish_reason is None and len(delta) == 1:  # a token: the common case, made cheap
            if self._around is None:
                head, _, tail = self._chunk([{"index": 0, "delta": "\0", "logprobs": None,
                                              "finish_reason": None}]).partition('"\\u0000"')
                self._around = (head, tail)
            ((name, value),) = delta.items()
            return (f'{self._around[0]}{{"{name}": {json.dumps(value, ensure_ascii=False)}}}'
                    f"{self._around[1]}")
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish_reason}])

    def stream(self, events, include_usage: bool):
        """The SSE body: a role chunk, deltas, the finish chunk, [usage], [DONE]."""
        try:
            yield self._delta({"role": "assistant", "content": ""})
            for item in events:
                if item is KEEPALIVE:
                    yield ": keep-alive\n\n"
                    continue
                delta = self.add(*item)
                if delta:
                    yield self._delta(delta)
            if self.error is not None or self.final is None:
                message = self.error or "the turn ended without an answer"
                yield "data: " + json.dumps({"error": {"message": message, "type": "server_error",
                                                       "param": None, "code": None}}) + "\n\n"
                return
            yield self._delta({}, self._finish_reason())
            if include_usage:
                yield self._chunk([], usage=self.usage())
            yield "data: [DONE]\n\n"
        finally:
            events.close()  # a client that went away stops the run

    def whole(self) -> dict:
        """The non-streaming answer."""
        if self.final is None:
            raise ClientError(503, self.error or "the turn ended without an answer",
                              "server_error", None)
        message = {"role": "assistant", "content": "".join(self.content)}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        return {"id": self.id, "object": "chat.completion", "created": self.created,
                "model": self.model, "system_fingerprint": None,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": self._finish_reason()}],
                "usage": self.usage()}


def details_block(end: dict, args, summary: str) -> str:
    """Open WebUI's collapsible block of a tool call that already ran."""
    def attr(value) -> str:
        return html.escape(json.dumps(value, ensure_ascii=False))

    return (f'<details type="tool_calls" done="true" id="{html.escape(end["call_id"])}" '
            f'name="{html.escape(end["tool"])}" arguments="{attr(args)}" '
            f'result="{attr(summary)}">\n<summary>Tool Executed</summary>\n</details>\n')
