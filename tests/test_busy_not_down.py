"""Busy is not down (issue 32): a burst of turns queues for database connections and is
answered on default settings; a database that stops answers 503 / an `error` event
within 2 s, queued requests included (the breaker, storage/breaker.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import uuid

import psycopg
import pytest
import requests

from bench.burst import burst
from storage.breaker import Breaker, Unavailable, WaitingLine
from tests.helpers import RunClient, ServerProcess
from tests.test_faults import Database

BURST = 300
OUTAGE_BOUND = 2.0  # seconds from the database's stop to every 503


def test_a_burst_on_default_settings_is_answered(tmp_path, llm):
    """300 users send at once over Socket.IO; nothing but the model is configured."""
    server = ServerProcess(tmp_path / "data", env={"OPENAI_BASE_URL": llm.url,
                                                   "OPENAI_API_KEY": "sk-test-burst"}).start()
    try:
        result = asyncio.run(burst(server.url, BURST, "[long 5] [slow 0.02] hello"))
    finally:
        server.stop()
    print(f"\nburst of {BURST} on defaults: {result}")
    assert result["answered"] == BURST, result
    assert "storage unavailable" not in server.log() and "marked down" not in server.log()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    database = Database(tmp_path_factory.mktemp("busy-pg"))
    yield database
    try:
        database.stop()
    except Exception:  # noqa: BLE001 - already stopped
        pass


def test_a_stopped_database_answers_503_within_2_s_even_to_queued_requests(tmp_path, llm, db):
    server = ServerProcess(tmp_path / "data", env={
        "OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "sk-test-outage", "DATABASE_URL": db.dsn,
        "KNOWLEDGE_STARTER": "0"}).start()
    waiting = 25  # more than the pool's 10 connections: 15 wait in line for one
    try:
        assert requests.get(server.url + "/human_message_count", timeout=10).status_code == 200
        # closed, not left through `with`: their connections die with the database
        locker, watcher = psycopg.connect(db.dsn), psycopg.connect(db.dsn, autocommit=True)
        with concurrent.futures.ThreadPoolExecutor(waiting) as pool:
            locker.execute("lock table public.chat_messages in access exclusive mode")
            ended: list[tuple[int, float]] = []

            def count():
                r = requests.get(server.url + "/human_message_count", timeout=30)
                ended.append((r.status_code, time.monotonic()))

            futures = [pool.submit(count) for _ in range(waiting)]
            deadline = time.monotonic() + 15
            blocked = 0
            while blocked < 10 and time.monotonic() < deadline:  # the pool is busy, the rest queue
                blocked = watcher.execute(
                    "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                    " and query like '%human_messages%'").fetchone()[0]
            assert blocked == 10, blocked
            assert not ended  # busy: nobody was refused
            stopped = time.monotonic()  # pg_ctl -m fast: backends end at once, then it waits
            db.stop()
            for f in futures:
                f.result(30)
            # and new requests, REST and Socket.IO, while it stays down
            began = time.monotonic()
            r = requests.post(server.url + "/user_message", timeout=10,
                              json={"user_token": f"t-{uuid.uuid4().hex[:8]}", "message": "hi"})
            rest_took = time.monotonic() - began
            client = RunClient(server.url)
            try:
                began = time.monotonic()
                client.start({"user_token": f"t-{uuid.uuid4().hex[:8]}", "message": "hi"})
                got = client.until("final_message", timeout=10)
                socket_took = time.monotonic() - began
            finally:
                client.close()
        locker.close()
        watcher.close()
        late = [(code, round(at - stopped, 2)) for code, at in ended]
        print(f"\nqueued requests after the stop: {late}; new REST {rest_took:.2f} s, "
              f"Socket.IO {socket_took:.2f} s")
        assert all(code == 503 and t < OUTAGE_BOUND for code, t in late), late
        assert r.status_code == 503 and "storage" in r.json()["error"] and rest_took < OUTAGE_BOUND
        assert got.names()[-1] == "error" and "storage" in got.events[-1][1]["error"]
        assert socket_took < OUTAGE_BOUND
        db.start()
        # back: the breaker's next probe (at most `retry_every`, 0.5 s, after the last one)
        # closes it; /healthz, as a load balancer polls it, says so within about a second
        back_by = time.monotonic() + 5
        while requests.get(server.url + "/healthz", timeout=30).status_code != 200:
            assert time.monotonic() < back_by, "the breaker did not close within 5 s"
            time.sleep(0.05)  # polling a condition with a deadline, not a synchronisation sleep
        r = requests.post(server.url + "/user_message", timeout=60,
                          json={"user_token": f"t-{uuid.uuid4().hex[:8]}", "message": "hi again"})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        assert "database is back" in server.log()
    finally:
        server.stop()


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_probes_once_per_interval_while_down_and_closes_on_success():
    clock, answers, probes = Clock(), [False], []

    def probe():
        probes.append(clock.now)
        if not answers[0]:
            raise OSError("connection refused")
        return True

    breaker = Breaker(probe, retry_every=0.5, clock=clock)
    assert breaker.allow() and probes == []  # up: no probe at all
    breaker.trip("connecting failed")
    assert breaker.is_down and not breaker.allow() and len(probes) == 1
    assert not breaker.allow() and len(probes) == 1  # within the interval: no second probe
    assert breaker.reason == "connection refused"
    clock.now += 0.6
    answers[0] = True
    assert breaker.allow() and not breaker.is_down and len(probes) == 2


def test_the_waiting_line_is_emptied_when_the_breaker_opens():
    breaker = Breaker(lambda: False)
    line = WaitingLine(1, breaker)
    breaker._on_trip = line.wake_all
    line.enter(time.monotonic() + 1)  # the one place taken
    failed: list[str] = []

    def wait():
        try:
            line.enter(time.monotonic() + 30)
        except Unavailable as exc:
            failed.append(str(exc))

    waiter = threading.Thread(target=wait)
    waiter.start()
    began = time.monotonic()
    breaker.trip("gone")
    waiter.join(5)
    assert failed and "unavailable" in failed[0] and time.monotonic() - began < 1
    # while up, a place that frees up goes to the one waiting
    breaker.reset()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(line.enter(time.monotonic() + 30) is None))
    waiter.start()
    line.leave()
    waiter.join(5)
    assert got == [True]


def test_a_busy_pool_is_up_and_its_queue_waits_past_a_second(pg_dsn):
    """The store on a real PostgreSQL with one connection, held: /healthz's ping says
    up (its probe connects), and a request queued behind the holder waits for it
    (longer than the old 1 s DB_POOL_TIMEOUT) instead of failing."""
    from storage.postgres import PostgresStore

    store = PostgresStore(pg_dsn, max_size=1)
    store.initialize()
    try:
        held = threading.Event()
        release = threading.Event()

        def hold():
            with store._connection():
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(10)
        assert store.ping(timeout=0.3) and not store.breaker.is_down
        result: list = []
        waiter = threading.Thread(target=lambda: result.append(store.count_human_messages()))
        began = time.monotonic()
        waiter.start()
        waiter.join(1.5)
        assert waiter.is_alive() and not result  # still queued, not refused
        release.set()
        waiter.join(10)
        holder.join(10)
        assert result == [result[0]] and isinstance(result[0], int)
        assert time.monotonic() - began > 1.5
    finally:
        store.close()
