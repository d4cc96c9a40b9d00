"""Baseline A for bench/relay.py: the floor of the stack the project chose.

A bare Flask-SocketIO + eventlet server that streams a completion from an
OpenAI-compatible server with the `openai` client and emits each token to the
asking client: no agent, no database, no validation. It answers the same
`user_message` event and `POST /user_message` as the project, so one
benchmark drives both.

With `--database URI` it is "A + one database call": around each turn it makes
the project's own run calls through the project's store (`start_run` before the
model request: the run, the question and the memory in one call; `finish_run`
after it), and the request carries the memory, its body sent as JSON bytes as
the project sends it. That is the floor of any design that keeps a conversation
in the database, as the product must, with no agent.

Run: .venv/bin/python -m bench.bare_relay --port 8099 --llm http://127.0.0.1:9000/v1 [--nodelay]
     [--database postgresql://...]
"""

from __future__ import annotations

import os

os.environ.setdefault("PYTHONWARNINGS", "ignore")

import warnings  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402

from flask import Flask, jsonify, request  # noqa: E402
from flask_socketio import SocketIO, emit  # noqa: E402
from openai import OpenAI, Stream  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpx2").setLevel(logging.WARNING)

app = Flask(__name__)
socketio = SocketIO(app, async_mode="eventlet", cors_allowed_origins="*")
client: OpenAI | None = None
store = None  # with --database: the project's PostgresStore


def stream(messages: list[dict]):
    response = client.chat.completions.create(model="bare", messages=messages, stream=True)
    for chunk in response:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


def stream_json(messages: list[dict]):
    """The same request with its body sent as JSON bytes and its chunks read as dicts, as
    the project sends and reads them: the SDK's typed transform of every message (about
    1.3 ms for ten messages of memory) is no part of a database call's cost."""
    body = json.dumps({"model": "bare", "messages": messages, "stream": True}).encode()
    for chunk in client.post("/chat/completions", body=body, cast_to=object, stream=True,
                             stream_cls=Stream[object]):
        delta = ((chunk.get("choices") or [{}])[0]).get("delta") or {}
        if delta.get("content"):
            yield delta["content"]


def turn(data: dict, on_token=None) -> str:
    """Stream the answer to one message (tokens to `on_token`); with a store, inside a run."""
    question = {"role": "user", "content": data["message"]}
    if store is None:
        return "".join(_relay(stream([question]), on_token))
    ticket = store.start_run(data.get("user_token") or "bench", "Hi!", None, "bench", "enqueue",
                             "bench-a-db", "bare", data["message"], 10, 120.0)
    roles = {"human": "user", "jelly": "assistant"}
    memory = [{"role": roles[m["type"]], "content": m["content"]}
              for m in ticket.get("memory") or [] if m["type"] in roles]
    answer = "".join(_relay(stream_json([*memory, question]), on_token))
    store.finish_run(ticket["run_id"], "succeeded", question=data["message"], answer=answer)
    return answer


def _relay(tokens, on_token):
    for token in tokens:
        if on_token is not None:
            on_token(token)
        yield token


@socketio.on("user_message")
def on_user_message(data):
    answer = turn(data, lambda token: emit("final_answer_token", {"token": token}))
    emit("final_message", {"message": answer})


@app.post("/user_message")
def user_message():
    return jsonify({"response": turn(request.get_json())})


def main() -> None:
    global client, store
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--llm", required=True, help="the OpenAI-compatible base URL")
    parser.add_argument("--nodelay", action="store_true",
                        help="TCP_NODELAY on accepted sockets, as the project sets it")
    parser.add_argument("--database", metavar="URI",
                        help="a PostgreSQL with the project's schema: A + one database call")
    args = parser.parse_args()
    client = OpenAI(base_url=args.llm, api_key="bench", max_retries=0)
    if args.database:
        from storage.green_psycopg import use_green_psycopg

        use_green_psycopg()  # the project's driver set-up, before psycopg is imported
        from storage.postgres import PostgresStore

        store = PostgresStore(args.database, max_size=10, request_timeout=10.0)
        store.initialize()
    print(f"READY http://127.0.0.1:{args.port}", flush=True)
    if not args.nodelay:
        socketio.run(app, host="127.0.0.1", port=args.port, log_output=False)
        return
    import socket

    import eventlet.wsgi

    listener = eventlet.listen(("127.0.0.1", args.port))
    # Linux hands the listening socket's TCP_NODELAY down to every accepted socket
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    eventlet.wsgi.server(listener, app, log_output=False)


if __name__ == "__main__":
    main()
