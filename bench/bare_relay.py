"""Baseline A for bench/relay.py: the floor of the stack the project chose.

A bare Flask-SocketIO + eventlet server that streams a completion from an
OpenAI-compatible server with the `openai` client and emits each token to the
asking client: no agent, no database, no validation. It answers the same
`user_message` event and `POST /user_message` as the project, so one
benchmark drives both.

Run: .venv/bin/python -m bench.bare_relay --port 8099 --llm http://127.0.0.1:9000/v1 [--nodelay]
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
import logging  # noqa: E402

from flask import Flask, jsonify, request  # noqa: E402
from flask_socketio import SocketIO, emit  # noqa: E402
from openai import OpenAI  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpx2").setLevel(logging.WARNING)

app = Flask(__name__)
socketio = SocketIO(app, async_mode="eventlet", cors_allowed_origins="*")
client: OpenAI | None = None


def stream(message: str):
    response = client.chat.completions.create(
        model="bare", messages=[{"role": "user", "content": message}], stream=True)
    for chunk in response:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


@socketio.on("user_message")
def on_user_message(data):
    answer = []
    for token in stream(data["message"]):
        answer.append(token)
        emit("final_answer_token", {"token": token})
    emit("final_message", {"message": "".join(answer)})


@app.post("/user_message")
def user_message():
    data = request.get_json()
    return jsonify({"response": "".join(stream(data["message"]))})


def main() -> None:
    global client
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--llm", required=True, help="the OpenAI-compatible base URL")
    parser.add_argument("--nodelay", action="store_true",
                        help="TCP_NODELAY on accepted sockets, as the project sets it")
    args = parser.parse_args()
    client = OpenAI(base_url=args.llm, api_key="bench", max_retries=0)
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
