"""Does I/O block the eventlet hub? Run N concurrent calls in green threads.

Under eventlet monkey-patching and psycopg configured as in `python app.py`
(storage.green_psycopg: the C implementation when installed, green waits), N green
threads each run one slow call: a PostgreSQL `pg_sleep(0.5)` through the store's pool, and a
chat completion through the real langchain-openai client against a local
OpenAI-compatible server taking 1 s. If the hub were blocked, the calls would
serialize (wall ≈ N × call); if not, wall ≈ one call.

Targets: each batch's wall time at most 3 x one call. Serialized would be N x (10 x);
the margin is for opening N pooled connections on a 2-core machine other work shares.

Run: .venv/bin/python -m bench hub_blocking [-n 10]
"""

import eventlet

eventlet.monkey_patch()

from storage.green_psycopg import use_green_psycopg  # noqa: E402

use_green_psycopg()

import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench.harness import target  # noqa: E402


def timed(n: int, call) -> float:
    pool = eventlet.GreenPool(n)
    started = time.perf_counter()
    list(pool.imap(lambda _: call(), range(n)))
    return time.perf_counter() - started


def add_arguments(parser) -> None:
    parser.add_argument("-n", type=int, default=10, help="calls at once")


def run(args) -> dict:

    import psycopg
    import psycopg.waiting

    from agent.models import make_chat_model
    from settings import Settings
    from storage.embedded import start_embedded_postgres
    from storage.postgres import PostgresStore
    from tests.helpers import ROOT

    with tempfile.TemporaryDirectory() as data:
        store = PostgresStore(start_embedded_postgres(data), max_size=args.n)
        store.initialize()

        def pg_sleep():
            with store.pool.connection() as conn:
                conn.execute("select pg_sleep(0.5)")

        pg_sleep()
        pg_wall = timed(args.n, pg_sleep)
        store.close()

    llm = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server", "--delay", "1"],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = llm.stdout.readline().split()[1]
        model = make_chat_model(Settings(openai_base_url=url, openai_api_key="bench"))
        model.invoke("warm up")
        llm_wall = timed(args.n, lambda: model.invoke("Tell me something nice"))
    finally:
        llm.terminate()
        llm.wait(10)
    print(f"psycopg {psycopg.pq.__impl__} implementation ({psycopg.waiting.wait.__name__}): "
          f"{args.n} x pg_sleep(0.5) in {pg_wall:.2f} s "
          f"(serialized would be {0.5 * args.n:.1f} s; ratio to one call {pg_wall / 0.5:.2f})")
    print(f"langchain-openai (httpx): {args.n} x 1 s completion in {llm_wall:.2f} s "
          f"(serialized would be {1.0 * args.n:.1f} s; ratio to one call {llm_wall / 1.0:.2f})")
    return {"psycopg": f"{psycopg.pq.__impl__} ({psycopg.waiting.wait.__name__})",
            "pg_sleep_wall_s": round(pg_wall, 3), "completion_wall_s": round(llm_wall, 3),
            "targets": {"pg_sleep_over_one_call": target(round(pg_wall / 0.5, 2), 3, unit=" x"),
                        "completion_over_one_call": target(round(llm_wall / 1.0, 2), 3, unit=" x")}}
