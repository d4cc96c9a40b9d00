"""Ask Jelly one question over Socket.IO and print the answer as it streams.

    pip install "python-socketio[client]"
    python ask.py [URL] QUESTION...      e.g. python ask.py http://localhost:8080 What is DFI?
"""

import sys

import socketio


def ask(url: str, user_token: str, message: str) -> dict:
    """Stream the answer's tokens to stdout; return the final message {message, sources}."""
    with socketio.SimpleClient() as sio:
        sio.connect(url, transports=["websocket"])
        sio.emit("user_message", {"user_token": user_token, "message": message, "application": "py-example"})
        while True:
            event, data = sio.receive(timeout=120)
            if event == "final_answer_token":
                print(data["token"], end="", flush=True)
            elif event == "final_message":
                print()
                return data
            elif event == "error":
                raise SystemExit(f"error: {data['error']}")


if __name__ == "__main__":
    args = sys.argv[1:]
    url = args.pop(0) if args and args[0].startswith(("http://", "https://")) else "http://localhost:8080"
    final = ask(url, "python-example", " ".join(args) or "What is a masternode?")
    for source in final["sources"]:
        print(f"source: {source['title']} {source['url'] or ''}")
