"""What idle connections in the model client's pool cost each request (issue 12).

httpx's pool asks every idle connection whether the server closed it each time
a request starts and ends. Under eventlet, as the server runs, this fills the
project's model client's pool with 1, 20 and 100 idle connections (that many
replies at once; `provider_http.KEPT_IDLE` raised for the run) and times
`--steps` streamed model steps against the stub (tests/fakes/openai_server.py,
its own process). Prints, for each, the idle count and the p50 time and mean
CPU of one step.

Run: .venv/bin/python -m bench.idle_pool [--steps 300]
"""

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402 - after monkey patching, as in app.py
import statistics  # noqa: E402
import time  # noqa: E402

import provider_http  # noqa: E402
from agent.models import make_chat_model  # noqa: E402
from bench.relay import start_stub  # noqa: E402
from settings import Settings  # noqa: E402
from web.serving import keep_idle_checks_off_the_hub  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    keep_idle_checks_off_the_hub()  # as app.py does
    stub, url = start_stub()
    try:
        for idle in (1, 20, 100):
            provider_http.KEPT_IDLE = idle
            provider_http.provider_http_client.cache_clear()
            model = make_chat_model(Settings(openai_base_url=url, openai_api_key="bench"))

            def ask(text="[long 2] hi", model=model):
                return "".join(c.text for c in model.stream(text))

            pile = eventlet.GreenPile(idle)
            for _ in range(idle):
                pile.spawn(ask, "[silent 0.3] [long 2] hi")
            list(pile)
            held = len(model.root_client._client._transport._pool.connections)
            times, cpu = [], time.process_time()
            for _ in range(args.steps):
                started = time.perf_counter()
                ask()
                times.append(time.perf_counter() - started)
            cpu = (time.process_time() - cpu) / args.steps
            print(f"{held} idle connections: one model step p50 "
                  f"{1000 * statistics.median(times):.2f} ms, CPU {1000 * cpu:.2f} ms", flush=True)
    finally:
        stub.terminate()
        stub.wait(10)


if __name__ == "__main__":
    main()
