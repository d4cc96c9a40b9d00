"""One client flooding REST turns with one token, against a server with the default
limits and, side by side, one with the limits off (the baseline); then /history
of the flooded user, whole and as its default page.

    .venv/bin/python -m bench limits [--seconds 10] [--clients 4]

Prints, per server: turns answered and refused per second, the time of an
answered turn and of a 429, and a normal user's turn time during the flood.
"""

from __future__ import annotations

import concurrent.futures
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import ServerProcess  # noqa: E402


def flood(url: str, seconds: float, clients: int) -> dict:
    user = f"flood-{uuid.uuid4().hex[:8]}"
    answered, refused, failed = [], [], []
    stop = time.monotonic() + seconds

    def worker():
        session = requests.Session()
        while time.monotonic() < stop:
            started = time.monotonic()
            r = session.post(url + "/user_message", json={"user_token": user, "message": "hi"},
                             timeout=60)
            took = time.monotonic() - started
            (answered if r.status_code == 200 else refused if r.status_code == 429
             else failed).append(took)

    normal = []

    def normal_user():
        other = f"normal-{uuid.uuid4().hex[:8]}"
        while time.monotonic() < stop:
            started = time.monotonic()
            r = requests.post(url + "/user_message", json={"user_token": other,
                                                           "message": "what is 2 + 2"}, timeout=60)
            normal.append((time.monotonic() - started, r.status_code))
            time.sleep(0.5)

    observer = threading.Thread(target=normal_user)
    observer.start()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(worker) for _ in range(clients)]:
            future.result()
    observer.join()
    ms = lambda xs: round(statistics.median(xs) * 1000, 1) if xs else None  # noqa: E731
    return {"flood_user": user, "answered_per_s": round(len(answered) / seconds, 1),
            "refused_per_s": round(len(refused) / seconds, 1), "other_status": len(failed),
            "answered_median_ms": ms(answered), "refused_median_ms": ms(refused),
            "normal_user_median_ms": ms([t for t, _ in normal]),
            "normal_user_max_ms": round(max(t for t, _ in normal) * 1000, 1) if normal else None,
            "normal_user_statuses": sorted({s for _, s in normal})}


def history_sizes(url: str, user: str) -> dict:
    out = {}
    for name, body in (("default page", {}), ("limit=1000", {"limit": 1000})):
        started = time.monotonic()
        r = requests.post(url + "/history", json={"user_token": user, **body}, timeout=60)
        out[name] = {"rows": len(r.json()), "bytes": len(r.content),
                     "ms": round((time.monotonic() - started) * 1000, 1)}
    return out


def add_arguments(parser) -> None:
    parser.add_argument("--seconds", type=float, default=10, help="length of the flood")
    parser.add_argument("--clients", type=int, default=4, help="flooding clients (one token)")


def run(args) -> dict:
    common = {"KNOWLEDGE_STARTER": "0", "LOG_LEVEL": "WARNING"}
    report = {}
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        servers = {
            "limits (defaults)": ServerProcess(d1, env=common).start(),
            "no limits (baseline)": ServerProcess(d2, env={
                **common, "RATE_LIMIT_TURNS_PER_TOKEN": "0", "RATE_LIMIT_TURNS_PER_ADDRESS": "0",
                "MAX_ACTIVE_RUNS_PER_USER": "0"}).start(),
        }
        try:
            for name, server in servers.items():
                report[name] = flood(server.url, args.seconds, args.clients)
            report["history of the baseline's flooded user"] = history_sizes(
                servers["no limits (baseline)"].url, report["no limits (baseline)"]["flood_user"])
        finally:
            for server in servers.values():
                server.stop()
    return {**report, "targets": {}}  # figures to compare: the limits' tests assert the behaviour
