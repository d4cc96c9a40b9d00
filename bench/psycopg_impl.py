"""psycopg's C implementation against the pure-Python one, under eventlet like the server.

Each configuration runs in its own process (psycopg picks its implementation and wait
function once, at import), all on one embedded PostgreSQL, alternated so that both see
the same machine. Each process is patched like `python app.py` and configured by
storage.green_psycopg, then measures, while a green thread probes the hub's lag
(sleeps of 5 ms; the lag is how late they wake):

- connect: `PostgresStore.initialize()` (one direct connection, then the pool opening
  `-n` connections in its worker threads);
- sleep: `-n` green threads each running `select pg_sleep(0.5)` at once (a wait that
  blocked the hub would serialize them: wall ≈ n × 0.5 s and a lag ≈ 0.5 s);
- cpu: `--calls` sequential `stop_requested()` calls (one small `select fn(...)` through
  `PostgresStore._fn`), CPU seconds of the process per call.

Before connecting, each process opens file descriptors up to 1,100 so that libpq's
sockets land above FD_SETSIZE (1024), where a real select() would fail: the green one
must not care. The control `c+wait_c` is the C implementation with its default C poll(),
which blocks the hub: it shows that the probe sees blocking.

Run: .venv/bin/python -m bench.psycopg_impl [-n 10] [--calls 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CONFIGS = {  # name -> environment set before psycopg is imported
    "python": {"PSYCOPG_IMPL": "python"},
    "c": {},
    "c+wait_c": {"PSYCOPG_WAIT_FUNC": "wait_c"},
}


def child(dsn: str, n: int, calls: int) -> dict:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import eventlet
    eventlet.monkey_patch()
    from storage.green_psycopg import use_green_psycopg

    use_green_psycopg()
    import time
    import uuid

    import psycopg
    import psycopg.waiting

    from storage.postgres import PostgresStore

    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # noqa: F841 - kept open
    lags: list[float] = []
    state = {"on": True}

    def probe():
        while state["on"]:
            started = time.perf_counter()
            eventlet.sleep(0.005)
            lags.append(time.perf_counter() - started - 0.005)

    def worst_lag_during(work) -> tuple[float, float]:
        lags.clear()
        eventlet.sleep(0.02)
        started = time.perf_counter()
        work()
        wall = time.perf_counter() - started
        eventlet.sleep(0.02)
        return wall, max(lags)

    ticker = eventlet.spawn(probe)
    store = PostgresStore(dsn, min_size=n, max_size=n)
    connect_wall, connect_lag = worst_lag_during(store.initialize)
    with store.pool.connection() as conn:
        socket_fd = conn.pgconn.socket

    def pg_sleep():
        with store.pool.connection() as conn:
            conn.execute("select pg_sleep(0.5)")

    pool = eventlet.GreenPool(n)
    sleep_wall, sleep_lag = worst_lag_during(lambda: list(pool.imap(lambda _: pg_sleep(), range(n))))
    state["on"] = False
    ticker.wait()

    ids = [str(uuid.uuid4())]
    for _ in range(100):  # warm up: prepared statements, caches
        store.stop_requested(ids)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        store.stop_requested(ids)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    store.close()
    return {"impl": psycopg.pq.__impl__, "wait": psycopg.waiting.wait.__name__, "socket_fd": socket_fd,
            "connect_s": connect_wall, "connect_lag_ms": connect_lag * 1000,
            "sleep_wall_s": sleep_wall, "sleep_lag_ms": sleep_lag * 1000,
            "cpu_us_per_call": cpu / calls * 1e6, "wall_us_per_call": wall / calls * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", metavar="DSN")
    parser.add_argument("--config", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.calls)))
        return

    from storage.embedded import start_embedded_postgres, stop_embedded_postgres
    from storage.postgres import PostgresStore
    from tests.helpers import ROOT

    with tempfile.TemporaryDirectory() as data:
        dsn = start_embedded_postgres(data)
        store = PostgresStore(dsn, min_size=1, max_size=1)
        store.initialize()  # migrations once, outside the measured processes
        store.close()
        print(f"{'config':9} {'impl':7} {'wait':12} {'fd':>5} {'connect s':>9} {'lag ms':>7} "
              f"{'sleep wall s':>12} {'lag ms':>7} {'CPU µs/call':>11} {'wall µs/call':>12}")
        try:
            for _ in range(args.rounds):
                for name in args.config:
                    env = {k: v for k, v in os.environ.items() if not k.startswith("PSYCOPG_")}
                    env.update(CONFIGS[name])
                    done = subprocess.run(
                        [sys.executable, "-m", "bench.psycopg_impl", "-n", str(args.n),
                         "--calls", str(args.calls), "--child", dsn],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
                    if done.returncode:
                        sys.exit(done.stderr)
                    r = json.loads(done.stdout.splitlines()[-1])
                    print(f"{name:9} {r['impl']:7} {r['wait']:12} {r['socket_fd']:5} "
                          f"{r['connect_s']:9.3f} {r['connect_lag_ms']:7.1f} {r['sleep_wall_s']:12.2f} "
                          f"{r['sleep_lag_ms']:7.1f} {r['cpu_us_per_call']:11.0f} "
                          f"{r['wall_us_per_call']:12.0f}",
                          flush=True)
        finally:
            stop_embedded_postgres(data)


if __name__ == "__main__":
    main()
