"""The REST API's request and response models: they validate requests (through
flask-openapi3) and are the schemas of /openapi.json, so the two cannot drift.

Body models are strict (a number is not a string); the limits that depend on
settings (MAX_MESSAGE_CHARS) and the finer rules are checked by agent/turn.py,
shared with Socket.IO, and answered alike: 400 `{error, field}`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent.text import UNSTORABLE
from agent.turn import MAX_TITLE_CHARS, MAX_TOKEN_CHARS


def _timestamp(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 timestamp") from None


# an ISO 8601 timestamp (no numbers: pydantic would read those as Unix times)
Timestamp = Annotated[str, AfterValidator(_timestamp),
                      WithJsonSchema({"type": "string", "format": "date-time"})]
NOT_BLANK = r"\S"  # at least one character that is not white space
Token = Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_CHARS, pattern=NOT_BLANK,
                             description="The user's token (or the X-User-Token header)")]
Title = Annotated[str, Field(min_length=1, max_length=MAX_TITLE_CHARS, pattern=NOT_BLANK)]

# one Server-Sent Event (OpenAPI 3.1: the schema of a text/event-stream describes each event)
SSE_CONTENT = {"text/event-stream": {"schema": {
    "type": "object",
    "description": "`event:` is the Socket.IO event name, `data:` its JSON payload (see the "
                   "README, Socket.IO events); the stream ends after final_message or error "
                   "(after a succeeded answer: after its `suggestions`, the follow-up questions). "
                   "A comment line every SSE_KEEPALIVE (15) seconds keeps it alive.",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["run_started", "tool_start", "tool_end", "final_answer_token",
                           "final_message", "suggestions", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}}}


def _unstorable(value) -> bool:
    if isinstance(value, str):
        return UNSTORABLE.search(value) is not None
    if isinstance(value, (list, tuple)):
        return any(_unstorable(v) for v in value)
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    return False


class Body(BaseModel):
    """A JSON object body; unknown fields are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value):
        """No NUL characters or lone surrogates in any text: PostgreSQL's text cannot hold
        them, and a 400 naming the field beats the database's refusal (a 503)."""
        if _unstorable(value):
            raise ValueError("must not contain NUL characters or lone surrogates")
        return value


class OptionalBody(Body):
    """A body that may be left out (treated as `{}`)."""

    @model_validator(mode="before")
    @classmethod
    def _empty(cls, data):
        return {} if data is None else data


# ---------------------------------------------------------------- shared

class ErrorOut(BaseModel):
    error: str = Field(description="What went wrong, for people")
    field: str | None = Field(None, description="The request field at fault (400)")
    run_id: str | None = Field(None, description="The run a busy conversation is serving (409)")
    retry_after: int | None = Field(None, description="Seconds until the limit allows another "
                                                      "turn (429; also the Retry-After header)")
    limit: str | None = Field(None, description="The limit reached (429): user_token, address "
                                                "or runs")
    code: str | None = Field(None, description="`budget_exceeded` (402): the user's balance "
                                               "or monthly budget is used up")
    period: str | None = Field(None, description="What ran out (402): `balance` or `month`")


class TokenHeader(BaseModel):
    x_user_token: str | None = Field(
        None, alias="X-User-Token", min_length=1, max_length=MAX_TOKEN_CHARS, pattern=NOT_BLANK,
        description="The user's token (JSON bodies may carry `user_token` instead)")


class AdminHeader(BaseModel):
    authorization: str | None = Field(None, alias="Authorization",
                                      description="`Bearer <ADMIN_API_KEY>`")


class Source(BaseModel):
    title: str | None = None
    url: str | None = None
    snippet: str | None = Field(None, description="references-only answers")
    score: float | None = Field(None, description="references-only answers")


class ToolCall(BaseModel):
    call_id: str | None = None
    tool: str | None = None
    args: Any = None
    status: str | None = None
    result: str | None = None
    duration_ms: int | None = None


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = Field(None, description="USD, at the model's prices when it ran")
    model: str | None = Field(None, description="The model the run used")
    estimated: bool | None = Field(None, description="Some calls were cut short before the "
                                                     "provider reported their tokens")


class AssistantRef(BaseModel):
    id: str
    version: int


class Feedback(BaseModel):
    rating: Literal["up", "down"]
    comment: str | None = None
    updated: datetime | None = None


# ---------------------------------------------------------------- chat

class UserMessageIn(Body):
    user_token: Token | None = None
    message: str = Field(min_length=1, pattern=NOT_BLANK,
                         description="The question (at most MAX_MESSAGE_CHARS characters)")
    application: str | None = Field(None, description="The client's name (web, telegram, …)")
    conversation_id: str | None = Field(None, description="Default: the user's default conversation")
    assistant_id: str | None = Field(None, description="The assistant for this turn (default: the "
                                                       "conversation's, the application's, Jelly)")
    stream: bool = Field(False, description="Stream the run as Server-Sent Events "
                                            "(as does `Accept: text/event-stream`)")
    references_only: bool = Field(False, description="Answer with the knowledge sources for "
                                                     "the question only, without the model")
    pow: str | dict[str, Any] | None = Field(
        None, description="POW_REQUIRED=1: a solved GET /pow/challenge (the ALTCHA payload, "
                          "base64 or its JSON object), once per conversation")
    model: str | None = Field(None, description="A model of GET /models (default: the "
                                                "conversation's, else the default one); "
                                                "one not allowed answers 403")


class UserMessageOut(BaseModel):
    model_config = ConfigDict(openapi_extra={"content": SSE_CONTENT})

    response: str = Field(description="The answer (empty for references-only)")
    truncated: bool = Field(False, description="The answer was cut at MAX_ANSWER_CHARS "
                                               "(a note at its end says so)")
    sources: list[Source]
    run_id: str | None
    conversation_id: str | None
    message_id: int | None
    status: Literal["succeeded", "failed", "stopped", "timed_out"]
    usage: Usage | None
    tool_calls: list[ToolCall]
    assistant: AssistantRef | None = Field(None, description="The assistant version that answered")
    references_only: bool | None = None


HistoryLimit = Annotated[int | None, Field(ge=1, le=1000, description="rows, the newest "
                                                                     "chosen (default 200)")]
HistoryBefore = Annotated[int | None, Field(ge=1, description="only rows with a smaller id: the "
                                                              "`X-Next-Before` of the newer page")]


HistoryApplication = Annotated[str | None, Field(None, max_length=100, description=(
    "The client's name: a new visitor is greeted by the assistant serving it"))]


class HistoryIn(Body):
    user_token: Token | None = None
    limit: HistoryLimit = None
    before: HistoryBefore = None
    application: HistoryApplication = None


class HistoryQuery(BaseModel):
    limit: HistoryLimit = None
    before: HistoryBefore = None
    application: HistoryApplication = None


class HistoryRow(BaseModel):
    id: int | None = Field(description="null for the greeting of a new visitor (not stored)")
    user_id: int | None
    message_type: Literal["human", "jelly", "tool"] = Field(description="= type (the original "
                                                                         "JellyChat page's field)")
    type: Literal["human", "jelly", "tool"]
    content: str
    timestamp: datetime | None
    application: str | None


class HistoryOut(RootModel[list[HistoryRow]]):
    pass


# ---------------------------------------------------------------- conversations

class ConversationPath(BaseModel):
    conversation_id: str


class RunPath(BaseModel):
    run_id: str


class MessagePath(BaseModel):
    message_id: int = Field(ge=1, le=2**63 - 1)


class ConversationListQuery(BaseModel):
    limit: int = Field(20, ge=1, le=100)
    before: Timestamp | None = Field(None, description="`next_before` of the previous page")
    before_id: str | None = Field(None, description="`next_before_id` of the previous page "
                                                    "(with `before`: no conversation skipped)")


class ConversationOut(BaseModel):
    id: str
    title: str | None
    created: datetime
    updated: datetime
    message_count: int
    preview: str | None
    assistant_id: str | None = Field(None, description="The assistant the conversation is bound to")


class ConversationListOut(BaseModel):
    conversations: list[ConversationOut]
    next_before: datetime | None
    next_before_id: str | None = Field(None, description="The next page's `before_id`")


class UserOut(BaseModel):
    user_token: str = Field(description="256 random bits (URL-safe base64). A bearer secret: "
                                        "whoever holds it reads and writes this user's chats")


class MessageOut(BaseModel):
    id: int
    type: Literal["human", "jelly", "tool"]
    content: str
    created: datetime
    application: str | None = None
    run_id: str | None = None
    run_status: str | None = None
    sources: list[Source] = []
    tool_call: ToolCall | None = None
    rating: Literal["up", "down"] | None = Field(None, description="The user's rating (answers)")
    feedback: Feedback | None = None


class ConversationFullOut(ConversationOut):
    summary: str | None = Field(None, description="What the model sees of the older messages, "
                                                  "once they outgrew MAX_HISTORY_TOKENS")
    messages: list[MessageOut]


class NewConversationIn(OptionalBody):
    user_token: Token | None = None
    title: Title | None = None
    assistant_id: str | None = Field(None, min_length=1, max_length=100,
                                     description="Bind the conversation to this assistant")


class RenameIn(Body):
    user_token: Token | None = None
    title: Title | None = None
    assistant_id: str | None = Field(None, max_length=100,
                                     description="Bind to this assistant (\"\" unbinds)")


class StopIn(OptionalBody):
    user_token: Token | None = None


class StopOut(BaseModel):
    run_id: str
    status: str


# ---------------------------------------------------------------- feedback

class FeedbackIn(Body):
    user_token: Token | None = None
    rating: Literal["up", "down"] | None = Field(description="null withdraws the rating")
    comment: str | None = Field(None, description="At most 2000 characters")


class FeedbackOut(BaseModel):
    message_id: int
    rating: Literal["up", "down"] | None
    comment: str | None
    updated: datetime | None


class FeedbackSummaryQuery(BaseModel):
    days: int = Field(30, ge=1, le=366, description="How many days back, today included")


class FeedbackDay(BaseModel):
    application: str | None
    day: str = Field(description="UTC day, YYYY-MM-DD")
    up: int
    down: int
    total: int


class FeedbackSummaryOut(BaseModel):
    days: list[FeedbackDay]


# ---------------------------------------------------------------- admin and service

class QAQuery(BaseModel):
    limit: int = Field(50, ge=1, le=500)
    before: Timestamp | None = Field(None, description="The X-Next-Before header of the last page")


class QAOut(BaseModel):
    id: int
    message_id: int | None
    date: datetime
    question: str
    answer: str
    application: str | None
    sources: list[Any]
    feedback: Feedback | None


class QAListOut(RootModel[list[QAOut]]):
    pass


class CountOut(BaseModel):
    subject: str
    status: int
    color: str


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str


class KBSearchQuery(BaseModel):
    q: str = Field(min_length=1, max_length=1000, pattern=NOT_BLANK, description="The search text")
    kb: str = "wiki"
    k: int = Field(5, ge=1, le=50)


class KBResult(BaseModel):
    rank: int
    score: float
    title: str
    source: str
    url: str | None
    section: str | None
    snippet: str


class KBSearchOut(BaseModel):
    query: str
    kb: str = Field(description="The base that answered")
    requested: str = Field(description="The base asked for (wiki falls back to starter)")
    fallback: bool
    mode: Literal["hybrid", "full-text"]
    results: list[KBResult]


# ---------------------------------------------------------------- API keys, OpenAI, AI SDK

class ApiKeyIn(Body):
    name: str = Field(min_length=1, max_length=100, pattern=NOT_BLANK,
                      description="Who uses the key (Open WebUI, LibreChat, a backend …)")
    application: str | None = Field(None, min_length=1, max_length=100,
                                    description="The application its turns are stored under")
    assistant_id: str | None = Field(None, min_length=1, max_length=100,
                                     description="The assistant the key is for (stored as given)")


class ApiKeyOut(BaseModel):
    id: str
    name: str
    application: str | None = None
    assistant_id: str | None = None
    created: datetime | None = None
    last_used: datetime | None = None


class NewApiKeyOut(ApiKeyOut):
    key: str = Field(description="The key itself: shown in this answer only")


class ApiKeyListOut(RootModel[list[ApiKeyOut]]):
    pass


class ApiKeyPath(BaseModel):
    key_id: str


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorOut(BaseModel):
    error: OpenAIError


# ---------------------------------------------------------------- models, access, usage

def _amount(value):
    """A JSON number as the exact decimal it was written as (never a float inside)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValueError("must be a number")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


Amount = Annotated[Decimal, BeforeValidator(_amount), Field(ge=0, allow_inf_nan=False),
                   WithJsonSchema({"type": "number", "minimum": 0})]
def _storable(value: str) -> str:
    if UNSTORABLE.search(value):
        raise ValueError("must not contain NUL characters or lone surrogates")
    return value


StorableText = Annotated[str, AfterValidator(_storable)]
ModelId = Annotated[StorableText, Field(min_length=1, max_length=100, pattern=r"^[^\x00\s]+$")]
BIGINT = 2**63 - 1


class ModelPath(BaseModel):
    model_id: str = Field(description="What the provider is called with (e.g. gpt-4o-mini)")


class UserPath(BaseModel):
    user_id: int = Field(ge=1, le=BIGINT, description="The user's id (`user_id` of GET /me)")


class ModelIn(Body):
    name: StorableText = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    input_price: Amount = Field(description="USD per million input tokens")
    output_price: Amount = Field(description="USD per million output tokens")
    context_window: int | None = Field(None, ge=1, le=2**31 - 1, description="Tokens")
    enabled: bool = True
    provider: str = Field("openai", pattern=r"^[a-z0-9][a-z0-9_.-]{0,49}$",
                          description="Only `openai` (OPENAI_BASE_URL) for now")


class OpenAIModelOut(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class OpenAIModelListOut(BaseModel):
    object: Literal["list"]
    data: list[OpenAIModelOut]


class CompletionMessage(BaseModel):
    role: Literal["assistant"]
    content: str
    reasoning_content: str | None = Field(None, description="The tools Jelly ran, one a line")


class CompletionChoice(BaseModel):
    index: int
    message: CompletionMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionOut(BaseModel):
    model_config = ConfigDict(openapi_extra={"content": {"text/event-stream": {"schema": {
        "type": "object",
        "description": "`stream: true`: `data: <chat.completion.chunk JSON>` events, then "
                       "`data: [DONE]`; tool activity as `delta.reasoning_content`; comment "
                       "lines keep a quiet stream alive",
        "required": ["data"],
        "properties": {"data": {"type": "string"}},
    }}}})

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: None = None
    choices: list[CompletionChoice]
    usage: CompletionUsage


# The request bodies of /v1/chat/completions and /api/chat, documented but read by the
# endpoints themselves: their refusals come in their own protocol's shape.
_TEXT_OR_PARTS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}},
                            {"type": "null"}]}
CHAT_COMPLETION_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object",
    "required": ["model", "messages"],
    "description": "OpenAI's chat completion request; other parameters are accepted and "
                   "ignored. Header `X-Conversation-Id` (ours or the client's own id) or "
                   "`X-User-Token` (the end user) may come too.",
    "properties": {
        "model": {"type": "string", "description": "An id from GET /v1/models",
                  "examples": ["jelly"]},
        "messages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["role"],
            "properties": {"role": {"type": "string"}, "content": _TEXT_OR_PARTS}}},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object",
                           "properties": {"include_usage": {"type": "boolean"}}},
        "user": {"type": "string", "description": "The end user (else the key is the user)"},
    },
}}}}
UI_CHAT_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object",
    "required": ["id", "messages"],
    "description": "The AI SDK's chat request (useChat's DefaultChatTransport)",
    "properties": {
        "id": {"type": "string", "description": "The chat: a conversation of the user"},
        "messages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["role", "parts"],
            "properties": {"id": {"type": "string"}, "role": {"type": "string"},
                           "parts": {"type": "array", "items": {"type": "object"}}}}},
    },
}}}}


class UIChatErrorOut(BaseModel):
    error: str

UI_CHAT_STREAM = {"description": "The AI SDK UI message stream v1 (header "
                                 "`x-vercel-ai-ui-message-stream: v1`)",
                  "content": {"text/event-stream": {"schema": {
                      "type": "object",
                      "description": "`data: <part JSON>` events (start, text-start/-delta/-end, "
                                     "tool-input-available, tool-output-available/-error, "
                                     "source-url, finish), then `data: [DONE]`",
                      "required": ["data"],
                      "properties": {"data": {"type": "string"}}}}}}

# ---------------------------------------------------------------- assistants

AssistantId = Annotated[str, Field(min_length=1, max_length=100, pattern=NOT_BLANK)]
Question = Annotated[str, Field(min_length=1, max_length=300, pattern=NOT_BLANK)]
Application = Annotated[str, Field(min_length=1, max_length=100, pattern=NOT_BLANK)]
ToolName = Annotated[str, Field(min_length=1, max_length=100)]


class ToolOut(BaseModel):
    name: str
    description: str


class ToolListOut(RootModel[list[ToolOut]]):
    pass


class AssistantPatchIn(Body):
    """Every field optional: those sent replace the current ones in a new version."""

    name: str | None = Field(None, min_length=1, max_length=100, pattern=NOT_BLANK)
    description: str | None = Field(None, max_length=1000)
    instructions: str | None = Field(None, min_length=1, max_length=20_000, pattern=NOT_BLANK,
                                     description="The system prompt (the safety lines every "
                                                 "assistant keeps follow it)")
    model: str | None = Field(None, min_length=1, max_length=100,
                              description="null: the server's model")
    tools: list[ToolName] | None = Field(None, max_length=50,
                                         description="Tool names (GET /tools); null: all")
    greeting: str | None = Field(None, max_length=2000,
                                 description="A new visitor's first message; null: Jelly's")
    suggested_questions: list[Question] | None = Field(None, max_length=10)
    max_answer_chars: int | None = Field(None, ge=100, le=1_000_000,
                                         description="null: MAX_ANSWER_CHARS")
    applications: list[Application] | None = Field(
        None, max_length=50, description="The `application` names this assistant serves")
    public: bool | None = Field(None, description="Listed by GET /assistants for everyone")
    suggestions: bool | None = Field(None, description="Follow-up suggestions after answers")


class AssistantIn(AssistantPatchIn):
    name: str = Field(min_length=1, max_length=100, pattern=NOT_BLANK)
    instructions: str = Field(min_length=1, max_length=20_000, pattern=NOT_BLANK)


class AssistantOut(BaseModel):
    id: str
    name: str
    description: str
    instructions: str
    model: str | None
    tools: list[str] | None
    greeting: str | None
    suggested_questions: list[str]
    max_answer_chars: int | None
    applications: list[str]
    public: bool
    suggestions: bool
    default: bool
    version: int
    created_at: datetime
    updated_at: datetime


class AssistantListOut(RootModel[list[AssistantOut]]):
    pass


class SuggestionsOut(BaseModel):
    message_id: int
    suggestions: list[str] = Field(description="At most three follow-up questions")


class AssistantPath(BaseModel):
    assistant_id: str


class ModelOut(BaseModel):
    id: str
    name: str
    provider: str | None = None
    input_price: float = Field(description="USD per million input tokens")
    output_price: float = Field(description="USD per million output tokens")
    context_window: int | None
    enabled: bool | None = None
    default: bool = Field(description="The model a message without `model` gets")


class ModelListOut(BaseModel):
    data: list[ModelOut]


class AccessIn(Body):
    models: list[ModelId] | None = Field(None, description="The models the user may use; "
                                                          "null: every enabled model")
    balance_usd: Amount | None = Field(None, description="null: unlimited")
    budget_period: Literal["month"] | None = Field(None, description="`month`: the balance is "
                                                                     "a monthly budget (UTC); "
                                                                     "null: for all time")


class AccessOut(BaseModel):
    user_id: int
    models: list[str] | None
    balance_usd: float | None
    spent_usd: float = Field(description="USD spent in the period")
    period: Literal["month"] | None
    remaining_usd: float | None = None


class UsageQuery(BaseModel):
    from_: str | None = Field(None, alias="from", description="A day (YYYY-MM-DD) or an ISO 8601 "
                                                              "time, inclusive (UTC)")
    to: str | None = Field(None, description="A day (inclusive) or a time (exclusive)")


class AdminUsageQuery(UsageQuery):
    application: str | None = Field(None, max_length=100)
    user_id: int | None = Field(None, ge=1, le=BIGINT)


class UsageDay(BaseModel):
    day: str = Field(description="UTC day, YYYY-MM-DD")
    model: str
    runs: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class UsageOut(BaseModel):
    data: list[UsageDay]


class ConversationModelIn(Body):
    model: ModelId | None = Field(description="A model of GET /models; null: the default")


class ConversationModelOut(BaseModel):
    conversation_id: str
    model: str | None
