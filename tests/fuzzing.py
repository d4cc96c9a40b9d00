"""Property-based fuzzing of the REST and Socket.IO APIs (Hypothesis), shared by
tests/test_fuzz.py (a few thousand cases) and bench/fuzz.py (a longer run).

Every case goes over real HTTP or a real websocket to a real server process.
The properties: no 5xx but the documented 503, a JSON `error` with every 4xx,
one terminal event (`final_message` or `error`) for every `user_message`, the
connection kept; afterwards the server still answers, every stored question
has its answer, and a normal user was served within a bound all along.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

import requests
import socketio
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MAX_SOCKET_MESSAGE = 256 * 1024  # web/sockets.py max_http_buffer_size
POOL = [f"fuzz-user-{i}" for i in range(8)]  # tokens whose transcripts are checked after
ODD = [
    "", " ", "\n", "\x00", "a\x00b", "\ud800", "x\udfffy", "\ud83d", "😀" * 50, "\u202e\u200b",
    "x" * 20_000, "é" * 10_000, "' or 1=1 --", "<script>alert(1)</script>", "../../etc/passwd",
    "%s%n%x", "{{7*7}}", "null", "NaN", "-0", "1e999", "00000000-0000-0000-0000-000000000000",
    "[explode]", "\\u0000", "🪼" * 3000,
]
text = st.one_of(st.text(max_size=40), st.sampled_from(ODD))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63),
                    st.floats(), text)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
ids = st.one_of(st.uuids().map(str), text, st.sampled_from(["1", "-1", "0" * 40]))
tokens = st.one_of(st.sampled_from(POOL), text, json_values)
messages = st.one_of(
    st.sampled_from(["hello", "what is 6 * 7", "what did I ask?", "tell me about DFI"]),
    st.text(min_size=1, max_size=200), json_values,
)
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                      max_size=60).filter(lambda v: v == v.strip())


@st.composite
def payloads(draw) -> dict:
    """A request body or Socket.IO payload: the known fields, each present or not, of
    the right type or any other, plus unknown fields."""
    fields = {
        "user_token": tokens, "message": messages, "application": st.one_of(text, json_values),
        "conversation_id": st.one_of(ids, json_values), "title": st.one_of(text, json_values),
        "pow": st.one_of(text, json_values), "limit": st.one_of(st.integers(), text),
        "before": st.one_of(st.integers(), text), "run_id": st.one_of(ids, json_values),
    }
    data = {}
    for name, strategy in fields.items():
        if draw(st.booleans()):
            data[name] = draw(strategy)
    data.update(draw(st.dictionaries(text, json_values, max_size=3)))
    return data


def encode(value, ascii_only: bool) -> bytes:
    raw = json.dumps(value, ensure_ascii=ascii_only)
    return raw.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8


@st.composite
def bodies(draw) -> tuple[bytes | None, str | None]:
    """(body, content type): JSON objects mostly, and every kind of wrong body."""
    kind = draw(st.sampled_from(["object"] * 6 + ["value", "bytes", "nested", "none", "form"]))
    if kind == "object":
        return encode(draw(payloads()), draw(st.booleans())), "application/json"
    if kind == "value":
        return encode(draw(json_values), draw(st.booleans())), "application/json"
    if kind == "bytes":
        return draw(st.binary(max_size=300)), "application/json"
    if kind == "nested":
        depth = draw(st.sampled_from([33, 1000, 100_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return (opener * depth + "1" + closer * depth).encode(), "application/json"
    if kind == "form":
        return b"user_token=x&message=hi", "application/x-www-form-urlencoded"
    return None, draw(st.sampled_from([None, "application/json"]))


ROUTES = [
    ("POST", "/user_message"), ("POST", "/user_message"), ("POST", "/user_message"),
    ("POST", "/history"), ("POST", "/history"), ("GET", "/conversations"),
    ("POST", "/conversations"), ("GET", "/conversations/{id}"), ("PATCH", "/conversations/{id}"),
    ("DELETE", "/conversations/{id}"), ("POST", "/runs/{id}/stop"), ("GET", "/messages"),
    ("GET", "/human_message_count"), ("GET", "/healthz"), ("GET", "/pow/challenge"),
    ("PUT", "/user_message"), ("GET", "/history"),
]


@st.composite
def rest_requests(draw) -> dict:
    if draw(st.integers(0, 9)) == 0:  # one in ten well formed, odd text allowed
        body = {"user_token": draw(st.sampled_from(POOL)),
                "message": draw(st.one_of(messages.filter(lambda m: isinstance(m, str)), text))}
        path = draw(st.sampled_from(["/user_message", "/user_message", "/history"]))
        return {"method": "POST", "path": path, "data": encode(body, True),
                "headers": {"Content-Type": "application/json"}, "params": {}}
    method, path = draw(st.sampled_from(ROUTES))
    if "{id}" in path:
        path = path.replace("{id}", quote(draw(st.one_of(ids, text)), safe="", errors="surrogatepass") or "x")
    body, ctype = draw(bodies())
    headers = {}
    if ctype:
        headers["Content-Type"] = ctype
    if draw(st.booleans()):
        headers["X-User-Token"] = draw(st.one_of(st.sampled_from(POOL), header_text))
    if draw(st.booleans()):
        headers["X-Request-ID"] = draw(header_text)
    if draw(st.booleans()):
        headers["Authorization"] = draw(st.sampled_from(["Bearer fuzz-admin", "Bearer x", "x"]))
    query = draw(st.dictionaries(st.sampled_from(["limit", "before", "x"]),
                                 st.one_of(header_text, st.integers().map(str)), max_size=2))
    return {"method": method, "path": path, "data": body, "headers": headers, "params": query}


@st.composite
def socket_emits(draw) -> tuple[str, tuple]:
    """(event, arguments): `user_message` as a dict or positional values, `stop`, others."""
    if draw(st.integers(0, 9)) == 0:  # one in ten well formed (old positional form too)
        token, message = draw(st.sampled_from(POOL)), draw(st.one_of(messages, text))
        if isinstance(message, str) and draw(st.booleans()):
            return "user_message", (token, message)
        return "user_message", ({"user_token": token, "message": message},)
    event = draw(st.sampled_from(["user_message"] * 6 + ["stop", "message", "connect", "x"]))
    shape = draw(st.sampled_from(["dict", "dict", "positional", "any"]))
    if shape == "dict":
        return event, (draw(payloads()),)
    if shape == "positional":
        return event, tuple(draw(st.lists(st.one_of(tokens, messages, text), max_size=4)))
    return event, tuple(draw(st.lists(json_values, max_size=3)))


raw_frames = st.one_of(
    st.text(max_size=100).map(lambda t: "42" + t),
    st.sampled_from(['42["user_message"', '42["user_message",{"user_token":1}]', "4", "40",
                     "41", "2", "3", "6", "1", '42[]', '42[{"a":1}]', "43[]", "45-[]", "9",
                     '42' + "[" * 5000, '42["user_message","\\ud800","hi"]']),
    st.binary(max_size=50),
)


@dataclass
class Observer:
    """A normal user chatting over REST while the fuzz runs: its turn times."""

    url: str
    times: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Observer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        user = f"observer-{uuid.uuid4().hex[:8]}"
        while not self._stop.wait(0.3):
            started = time.monotonic()
            try:
                r = requests.post(self.url + "/user_message", json={
                    "user_token": user, "message": "what is 2 + 2", "application": "observer",
                }, timeout=60)
                if r.status_code != 200 or "4" not in r.json()["response"]:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
            self.times.append(time.monotonic() - started)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(70)
        times = sorted(self.times)
        return {"turns": len(times), "median_s": statistics.median(times) if times else None,
                "p95_s": times[int(len(times) * 0.95) - 1] if times else None,
                "max_s": times[-1] if times else None, "failures": self.failures}


def check_response(response: requests.Response) -> None:
    status = response.status_code
    assert status < 500 or status == 503, f"{status}: {response.text[:300]}"
    if status >= 400 and status not in (414, 431):  # those two come from the HTTP server
        assert response.headers.get("Content-Type", "").startswith("application/json"), \
            f"{status} not JSON: {response.text[:200]}"
        assert "error" in response.json()


def fuzz_rest(url: str, examples: int, stats: dict) -> None:
    session = requests.Session()

    @settings(max_examples=examples, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(rest_requests())
    def case(req):
        response = session.request(req["method"], url + req["path"], data=req["data"],
                                   headers=req["headers"], params=req["params"], timeout=60)
        stats[response.status_code] = stats.get(response.status_code, 0) + 1
        check_response(response)

    case()


class SocketFuzzer:
    def __init__(self, url: str):
        self.url = url
        self.inbox: list[tuple[str, object]] = []
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", lambda event, *data: self.inbox.append((event, data)))
        self.sio.connect(url, transports=["websocket"], wait_timeout=20)

    def emit(self, event: str, args: tuple, timeout: float = 30) -> str | None:
        """Emit; for `user_message` and unknown events wait for the one terminal event.
        A message past the server's 256 KB buffer closes the connection (Engine.IO's
        documented answer): that one is expected, and the client reconnects."""
        if not self.sio.connected:
            self.sio.connect(self.url, transports=["websocket"], wait_timeout=20)
        self.inbox.clear()
        if len(json.dumps([event, *args])) > MAX_SOCKET_MESSAGE:
            self.sio.emit(event, args if len(args) != 1 else args[0])
            deadline = time.monotonic() + timeout
            while self.sio.connected and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not self.sio.connected, "an oversized message was accepted"
            return "closed"
        if not args:
            self.sio.emit(event)
        else:
            self.sio.emit(event, args if len(args) != 1 else args[0])
        if event in ("stop", "connect"):  # stop may answer nothing; connect is reserved
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [n for n, _ in self.inbox if n in ("final_message", "error")]
            if done:
                return done[0]
            assert self.sio.connected, "the server closed the connection"
            time.sleep(0.005)
        raise AssertionError(f"no final_message or error for {event} {str(args)[:300]}")

    def close(self):
        self.sio.disconnect()


def fuzz_socketio(url: str, examples: int, stats: dict) -> None:
    fuzzer = SocketFuzzer(url)
    try:
        @settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                  suppress_health_check=list(HealthCheck))
        @given(socket_emits())
        def case(emit):
            event, args = emit
            outcome = fuzzer.emit(event, args)
            stats[outcome or "none"] = stats.get(outcome or "none", 0) + 1
            assert outcome == "closed" or fuzzer.sio.connected

        case()
    finally:
        fuzzer.close()


def fuzz_frames(url: str, examples: int, stats: dict) -> None:
    """Malformed Engine.IO / Socket.IO frames on raw websockets: the server may close
    such a connection, never fail."""
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(raw_frames, min_size=1, max_size=4))
    def case(frames):
        ws = websocket.create_connection(ws_url, timeout=10)
        try:
            assert ws.recv().startswith("0")  # the open packet
            ws.send("40")
            for frame in frames:
                if isinstance(frame, bytes):
                    ws.send_binary(frame)
                else:
                    ws.send(frame)
            stats["sent"] = stats.get("sent", 0) + len(frames)
        except (websocket.WebSocketException, OSError):
            stats["closed"] = stats.get("closed", 0) + 1
        finally:
            ws.close()

    case()


def unanswered(url: str, admin_key: str) -> dict:
    """Questions without an answer: every human row must have its Q&A pair (written in
    the answer's transaction), and each pool user's transcript answers each question."""
    humans = requests.get(url + "/human_message_count", timeout=30).json()["status"]
    pairs, before = 0, None
    while True:
        r = requests.get(url + "/messages", params={"limit": 500, **({"before": before} if before else {})},
                         headers={"Authorization": f"Bearer {admin_key}"}, timeout=60)
        r.raise_for_status()
        pairs += len(r.json())
        before = r.headers.get("X-Next-Before")
        if not before:
            break
    open_questions = []
    for user in POOL:
        rows = requests.post(url + "/history", json={"user_token": user, "limit": 1000},
                             timeout=30).json()
        kinds = [r["type"] for r in rows if r["type"] in ("human", "jelly")]
        for i, kind in enumerate(kinds):
            if kind == "human" and (i + 1 == len(kinds) or kinds[i + 1] != "jelly"):
                open_questions.append(user)
    return {"human_messages": humans, "qa_pairs": pairs, "unanswered_in_transcripts": open_questions}
