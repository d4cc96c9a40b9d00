"""A lean asyncio Socket.IO client for benchmarks: hundreds of websocket
connections in one thread of the benchmark process, so that the client's own
cost stays small next to the servers' (python-socketio's client runs two
threads per connection).

It speaks Engine.IO 4 / Socket.IO 5 over a websocket only: `0` open, `40`
connect, `2`/`3` ping/pong, `42[event, data]` events. Each received event is
kept with the wall-clock time it arrived.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field

import websockets

STAMP = re.compile(r"@(\d+\.\d+)")


@dataclass
class Turn:
    sent: float  # wall clock
    events: list[tuple[float, str, dict]] = field(default_factory=list)

    @property
    def end(self) -> str:
        return self.events[-1][1] if self.events else ""

    @property
    def first_token(self) -> float | None:
        """Seconds from sending to the first token."""
        for at, name, _ in self.events:
            if name == "final_answer_token":
                return at - self.sent
        return None

    def token_delays(self) -> list[float]:
        """For each stamped word: arrival minus the time the LLM server sent it."""
        delays = []
        for at, name, data in self.events:
            if name == "final_answer_token":
                delays.extend(at - float(s) for s in STAMP.findall(data.get("token", "")))
        return delays

    @property
    def text(self) -> str:
        return "".join(d.get("token", "") for _, n, d in self.events if n == "final_answer_token")


class Connection:
    def __init__(self, ws):
        self.ws = ws
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        url = base_url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        ws = await websockets.connect(url, compression=None, max_size=None, open_timeout=60,
                                      ping_interval=None)
        opened = await ws.recv()
        if not opened.startswith("0"):
            raise RuntimeError(f"no engine.io open packet: {opened[:80]}")
        await ws.send("40")
        connected = await ws.recv()
        if not connected.startswith("40"):
            raise RuntimeError(f"no socket.io connect: {connected[:80]}")
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                at = time.time()
                if message == "2":
                    await self.ws.send("3")
                elif message.startswith("42"):
                    event, *data = json.loads(message[2:])
                    await self.inbox.put((at, event, data[0] if data else None))
        except websockets.ConnectionClosed:
            pass
        await self.inbox.put((time.time(), "closed", {}))

    async def emit(self, event: str, data) -> None:
        await self.ws.send("42" + json.dumps([event, data]))

    async def turn(self, token: str, message: str, timeout: float = 120) -> Turn:
        """Send a user_message and collect events until final_message / error."""
        turn = Turn(time.time())
        await self.emit("user_message", {"user_token": token, "message": message,
                                         "application": "bench"})
        while True:
            at, name, data = await asyncio.wait_for(self.inbox.get(), timeout)
            turn.events.append((at, name, data if isinstance(data, dict) else {}))
            if name in ("final_message", "error", "closed"):
                return turn

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()

