"""A local OpenAI-compatible chat-completions server for tests and benchmarks.

It speaks the real wire protocol (JSON, or server-sent events when
`stream: true`, sent chunked on a connection kept alive for the next request,
as the real API does) so the real `openai` / `langchain-openai` clients talk
to it over HTTP. Its replies are scripted from the request it receives:

- last message from a tool            -> stream "The result is <tool output>."
- user asks "what did I ask"           -> stream the previous user message it was sent
- user message with arithmetic         -> a `calculator` tool call
- `[call NAME {json args}]`            -> a call of tool NAME with those arguments
- user message containing "explode"    -> HTTP 500
- a request for a conversation title   -> "Scripted title" (also as the first line of a
                                         suggestions request that asks for one)
- a request for follow-up suggestions  -> four numbered questions, one repeated
- with `ask_tool` (a tool name) and that tool offered -> a call of it with the user's
  own words, `{"question": <the user message>}`, as a tool-calling model
  relays a question (benchmarks of what retrieval hands the model)
- a request to update a summary        -> "Scripted summary of N messages; the user asked: ..."
- anything else                        -> stream "Hello from the scripted model!"

Misbehaviours real models show, asked for by directives in the user message:
- `[preamble]`  text before the tool call in the same step ("Let me work that out.")
- `[silent N]`  say nothing at all for N seconds before answering (no headers either)
- `[slow S]`    S seconds between streamed tokens
- `[long N]`    answer with N words ("word0 word1 ...")
- `[stamp]`     each word carries the wall-clock time it was sent ("word0@1700000000.123456"),
                so a client can measure what a relay adds per token (benchmarks)
- `[ratelimit S]` answer 429 with `Retry-After: S` (S seconds)
- `[stall S]`   send the headers and the first words, then nothing for S seconds
- `[truncate]`  stop the stream after a few words and close the connection: no
                finish_reason, no [DONE]
- `[linger S]`  send `data: [DONE]`, then keep the chunked body open S seconds before
                its last chunk (a proxy or provider that is slow to end the response)
- `[huge N]`    an answer of about N characters ("abc abc ...") in 4-character chunks,
                written as fast as the socket takes them (64 KiB at a time)
- `[surrogate]` an answer holding a lone surrogate, a NUL and a surrogate pair
                split across two chunks (valid JSON escapes, as some models send)
- usage: a streamed reply asked for `stream_options.include_usage` ends with a chunk
                holding the usage (no choices), as the real API's does; a whole reply
                carries it too; a `[truncate]`d stream has none
- `[once]`      the failure directives (`explode`, `[ratelimit]`) apply to the first
                request with this question only; later ones (retries) succeed

`delay` seconds pass before each completion starts (simulated model latency).
With `tls` (a certificate and its key, e.g. from `self_signed_certificate`) it
serves HTTPS, as a real provider does: each new connection costs a TLS handshake.
With `idle_timeout` it closes a kept-alive connection left idle that long, as
real servers and proxies do.
Every request body is kept in `requests`; `connections` counts the connections
accepted (a client that reuses its connections opens few; `GET /stats` tells,
for a benchmark that runs this server in its own process, and `GET /stats?since=N`
adds when each request from the N-th on arrived); `closed` records each
streamed response whose client went away: when it was noticed and how many
chunks were still unsent (the server stops generating at once).
"""

from __future__ import annotations

import json
import re
import select
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARITHMETIC = re.compile(r"\d[\d.\s]*(?:[-+*/%]|\*\*)[\s(]*\d[\d.\s()+\-*/%]*")
WORD = re.compile(r"\S+\s*")
# a lone high surrogate, a NUL, and a smiley's surrogate pair split over two chunks
SURROGATE_PIECES = ["Odd ", "text \ud800 here", ", a NUL \x00 there", " and a smile \ud83d",
                    "\ude00 done."]


def _text(message: dict) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content


def script(messages: list[dict], first: bool = True, ask_tool: str | None = None,
           offered: tuple[str, ...] = ()) -> dict:
    """Decide the reply: {'text': ...} or {'tool': name, 'args': {...}} or {'status': 500}.

    `first`: no earlier request carried this question (for `[once]`); `ask_tool`:
    a tool to call with the user's words when it is among the `offered` tools."""
    last = messages[-1]
    if last.get("role") == "tool":
        return {"text": f"The result is {_text(last).split('=')[-1].strip()}."}
    users = [_text(m) for m in messages if m.get("role") == "user"]
    question = users[-1] if users else ""
    directives = dict(
        (name, float(value) if value else True)
        for name, value in re.findall(
            r"\[(preamble|silent|slow|long|ratelimit|stall|truncate|huge|surrogate|once|stamp|linger)\s*([\d.]*)\]",
            question)
    )
    if question.startswith("Give a title"):
        return {"text": "Scripted title"}
    if question.startswith("Update the running summary"):
        # a summary of the new messages: how many, and each question's opening words
        asked = re.findall(r"^User: (\S+(?: \S+){0,3})", question, re.M)
        count = len(re.findall(r"^(?:User|Jelly): ", question, re.M))
        return {"text": f"Scripted summary of {count} messages; the user asked: "
                        f"{'; '.join(asked)}."}
    if question.startswith("Suggest up to three"):
        # as models do: numbered, one line too many, a duplicate; a title line first when
        # the request also asks for the conversation's title
        title = "**Title:** \"Scripted title\"\n" if "'Title: '" in question else ""
        return {"text": title + "1. What is DFI?\n2. How do masternodes work?\n"
                        "2. How do masternodes work?\n3. What is a vault?\n4. One more?"}
    if ask_tool and ask_tool in offered and last.get("role") == "user":
        return {"tool": ask_tool, "args": {"question": question}}
    failing = not directives.get("once") or first
    if "explode" in question and failing:
        return {"status": 500}
    if "ratelimit" in directives and failing:
        return {"status": 429, "retry_after": directives["ratelimit"]}
    if "huge" in directives:
        return {"text": "", **directives}
    if "surrogate" in directives:
        return {"text": "", **directives}
    if "long" in directives:
        mark = "@T" if "stamp" in directives else ""
        return {"text": " ".join(f"word{i}{mark}" for i in range(int(directives["long"]))),
                **directives}
    if re.search(r"what did i (just )?ask", question, re.I):
        earlier = users[-2] if len(users) > 1 else "nothing yet"
        return {"text": f"You asked: {earlier}"}
    call = re.search(r"\[call (\w+) (\{.*\})\]", question)
    if call:
        return {"tool": call[1], "args": json.loads(call[2]), **directives}
    match = ARITHMETIC.search(question.replace("divided by", "/").replace("times", "*"))
    if match:
        reply = {"tool": "calculator", "args": {"expression": " ".join(match.group(0).split())}}
        if "preamble" in directives:
            reply["text"] = "Let me work that out."
        return {**reply, **directives}
    return {"text": "Hello from the scripted model! How can I help?", **directives}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: hundreds of clients connect at once in benchmarks


class OpenAIServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, delay: float = 0.0,
                 tls: tuple[str, str] | None = None, idle_timeout: float | None = None,
                 ask_tool: str | None = None):
        self.delay = delay
        self.ask_tool = ask_tool
        self.tls = tls
        self.requests: list[dict] = []
        self.usages: list[dict] = []  # the usage reported for each completion (see `usage`)
        self.arrivals: list[float] = []  # wall-clock time each completion request arrived
        self.connections = 0
        self.closed: list[dict] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._closed_event = threading.Condition(self._lock)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body are two writes: with Nagle's algorithm the body waited for
            # the client's delayed ACK (40 ms per non-streamed reply); providers do not
            disable_nagle_algorithm = True
            # like a real server (uvicorn's 5 s, a proxy's minute), it closes a kept-alive
            # connection that stays idle this long; None keeps it until the client closes it
            timeout = idle_timeout

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                if isinstance(self.request, ssl.SSLSocket):
                    self.request.do_handshake()  # here, not in the one thread that accepts
                super().setup()
                with outer._lock:
                    outer.connections += 1

            def do_GET(self):
                path, _, query = self.path.partition("?")
                if not path.rstrip("/").endswith("/stats"):
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                since = re.fullmatch(r"since=(\d+)", query)
                with outer._lock:  # for a benchmark that runs this server in its own process
                    stats = {"connections": outer.connections, "requests": len(outer.requests)}
                    if since:  # when each request from the `since`-th on arrived
                        stats["arrivals"] = outer.arrivals[int(since[1]):]
                    return self._json(200, stats)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                users = [_text(m) for m in body.get("messages", []) if m.get("role") == "user"]
                with outer._lock:
                    outer.requests.append(body)
                    outer.arrivals.append(time.time())
                    key = users[-1] if users else ""
                    first = key not in outer._seen
                    outer._seen.add(key)
                if outer.delay:
                    time.sleep(outer.delay)  # simulated model latency, not synchronisation
                offered = tuple((t.get("function") or {}).get("name", "") for t in body.get("tools") or [])
                reply = script(body.get("messages", []), first, outer.ask_tool, offered)
                if reply.get("silent"):
                    time.sleep(reply["silent"])  # a model that says nothing for a while
                if reply.get("status"):
                    headers = {}
                    if reply.get("retry_after") is not None:
                        headers["Retry-After"] = f"{reply['retry_after']:g}"
                    # providers echo request details in their errors; a key-like string
                    # shows whether it reaches a log or the client
                    message = "scripted failure for key sk-proj-ECHOEDSECRET0123456789"
                    return self._json(reply["status"], {"error": {"message": message}}, headers)
                if body.get("stream"):
                    return self._stream(body, reply)
                return self._json(200, outer.completion(body, reply))

            def _json(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body, reply):
                # like the real API: chunked, and the connection stays open for the next
                # request; a truncated answer is a connection that drops mid-stream
                self.chunked = not reply.get("truncate")
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                if self.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if reply.get("huge"):
                    return self._flood(body, int(reply["huge"]))
                chunks = list(outer.chunks(body, reply))
                if ((body.get("stream_options") or {}).get("include_usage")
                        and not reply.get("truncate")):
                    # like the real API: a last chunk with no choices and the usage
                    chunks.append({**outer._base(body), "object": "chat.completion.chunk",
                                   "choices": [], "usage": outer.usage(body, chunks)})
                if reply.get("truncate"):
                    chunks = chunks[:4]  # the connection ends mid-answer (no usage chunk)
                for n, chunk in enumerate(chunks):
                    if reply.get("slow") and n:
                        time.sleep(reply["slow"])  # the model's pace between tokens
                    if reply.get("stall") and n == 3:
                        time.sleep(reply["stall"])  # headers and a few words sent, then silence
                    data = json.dumps(chunk)
                    if reply.get("stamp"):
                        data = data.replace("@T", f"@{time.time():.6f}")
                    if not self._send(f"data: {data}\n\n".encode()):
                        return outer._record_close(len(chunks) - n)
                if reply.get("truncate"):
                    return
                if reply.get("linger"):
                    if not self._send(b"data: [DONE]\n\n"):
                        return outer._record_close(0)
                    time.sleep(reply["linger"])  # the answer is done; the body ends later
                    if not self._send(b"", last=True):
                        outer._record_close(0)
                elif not self._send(b"data: [DONE]\n\n", last=True):
                    outer._record_close(0)

            def _flood(self, body, size):
                """`size` characters in 4-character chunks, as fast as the socket takes
                them, 64 KiB per write."""
                base = {**outer._base(body), "object": "chat.completion.chunk"}

                def event(delta, finish=None):
                    chunk = {**base, "choices": [{"index": 0, "delta": delta,
                                                  "finish_reason": finish}]}
                    return f"data: {json.dumps(chunk)}\n\n".encode()

                word = event({"content": "abc "})
                per_write = max(1, 65536 // len(word))
                total = (size + 3) // 4
                if not self._send(event({"role": "assistant", "content": ""})):
                    return outer._record_close(total)
                sent = 0
                while sent < total:
                    n = min(per_write, total - sent)
                    if not self._send(word * n):
                        return outer._record_close(total - sent)
                    sent += n
                if not self._send(event({}, "stop") + b"data: [DONE]\n\n", last=True):
                    outer._record_close(0)

            def _send(self, data: bytes, last: bool = False) -> bool:
                """Write unless the client has gone; False once it has. `last` ends
                a chunked body."""
                try:
                    # poll, not select: a benchmark holds more than 1,024 connections
                    poller = select.poll()
                    poller.register(self.connection, select.POLLIN)
                    readable = poller.poll(0)
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        self.close_connection = True
                        return False
                    if self.chunked:
                        end = b"0\r\n\r\n" if last else b""
                        data = b"%x\r\n%s\r\n%s" % (len(data), data, end) if data else end
                    self.wfile.write(data)
                    self.wfile.flush()
                    return True
                except OSError:
                    self.close_connection = True
                    return False

        self.httpd = _Server((host, port), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True,
                                                    do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _record_close(self, unsent: int) -> None:
        with self._lock:
            self.closed.append({"at": time.monotonic(), "unsent_chunks": unsent})
            self._closed_event.notify_all()

    def wait_closed(self, count: int, timeout: float) -> bool:
        """Block until `count` closed streams were recorded (the test's sync point)."""
        with self._lock:
            return self._closed_event.wait_for(lambda: len(self.closed) >= count, timeout)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}/v1"

    def start(self) -> OpenAIServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def _base(body) -> dict:
        return {"id": "chatcmpl-scripted", "created": int(time.time()),
                "model": body.get("model", "scripted")}

    def completion(self, body, reply) -> dict:
        message = {"role": "assistant", "content": reply.get("text")}
        finish = "stop"
        if "tool" in reply:
            message["tool_calls"] = [{"id": "call_1", "type": "function", "function": {
                "name": reply["tool"], "arguments": json.dumps(reply["args"])}}]
            finish = "tool_calls"
        return {**self._base(body), "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": self.usage(body, [{"choices": [{"delta": message}]}],
                                    words=len(WORD.findall(message["content"] or "")))}

    def usage(self, body, chunks, words: int | None = None) -> dict:
        """Scripted token counts: a token per 4 characters of the request's messages, one
        per streamed chunk that carries content or tool arguments (or per word); each is
        kept in `usages` ({model, prompt_tokens, completion_tokens, stream})."""
        prompt = max(1, len(json.dumps(body.get("messages", []))) // 4)
        if words is None:
            words = sum(1 for c in chunks for choice in c.get("choices", [])
                        if choice["delta"].get("content") or choice["delta"].get("tool_calls"))
        completion = max(1, words)
        with self._lock:
            self.usages.append({"model": body.get("model"), "prompt_tokens": prompt,
                                "completion_tokens": completion, "stream": bool(body.get("stream"))})
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def chunks(self, body, reply):
        base = {**self._base(body), "object": "chat.completion.chunk"}

        def chunk(delta, finish=None):
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        if "tool" in reply:
            if reply.get("text"):
                yield chunk({"role": "assistant", "content": ""})
                for word in WORD.findall(reply["text"]):
                    yield chunk({"content": word})
            yield chunk({"role": "assistant", "content": None, "tool_calls": [{
                "index": 0, "id": "call_1", "type": "function",
                "function": {"name": reply["tool"], "arguments": ""}}]})
            arguments = json.dumps(reply["args"])
            for i in range(0, len(arguments), 8):
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i:i + 8]}}]})
            yield chunk({}, "tool_calls")
            return
        yield chunk({"role": "assistant", "content": ""})
        if reply.get("surrogate"):
            for piece in SURROGATE_PIECES:
                yield chunk({"content": piece})
        else:
            for word in WORD.findall(reply["text"]):
                yield chunk({"content": word})
        yield chunk({}, "stop")


def self_signed_certificate(directory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, written to `directory` as cert.pem and
    key.pem; clients trust it with SSL_CERT_FILE=<directory>/cert.pem."""
    import datetime
    import ipaddress
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory = Path(directory)
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return str(directory / "cert.pem"), str(directory / "key.pem")


def main() -> None:
    """Run standalone: `python -m tests.fakes.openai_server --port 0 --delay 1`
    (`--tls DIR`: HTTPS with a certificate written to DIR/cert.pem)."""
    import argparse

    parser = argparse.ArgumentParser(description="scripted OpenAI-compatible server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--tls", metavar="DIR", help="serve HTTPS; cert.pem and key.pem go in DIR")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="close a kept-alive connection idle this many seconds")
    parser.add_argument("--ask-tool", help="call this tool with the user's words")
    args = parser.parse_args()
    server = OpenAIServer(port=args.port, delay=args.delay,
                          tls=self_signed_certificate(args.tls) if args.tls else None,
                          idle_timeout=args.idle_timeout, ask_tool=args.ask_tool)
    print(f"READY {server.url}", flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
