"""Does embedding questions with the local model (MiniLM) block the eventlet hub?

    .venv/bin/python -m bench embedding_hub [-n 20] [--rounds 3]

Under eventlet monkey-patching (as in `python app.py`), N green threads each
embed one knowledge question at the same moment, while a ticker green thread
sleeps 10 ms at a time and records how late it wakes up (the hub lag: how long
every other connection of the process would wait). Measured side by side in
one run, alternating:

- inline: `embedder.embed_query(q)` called in the green thread (what
  `Retriever.search` did before issue 12);
- off the hub: `knowledge.retrieval.embed_query`, which runs a CPU-bound
  embedder on eventlet's thread pool (`tpool`).

Target (issue 12): 20 concurrent knowledge questions leave the hub lag under 50 ms.
"""

import eventlet

eventlet.monkey_patch()

import time  # noqa: E402

from bench.harness import target  # noqa: E402

QUESTIONS = [
    "how much dfi do i need for a masternode", "what is a vault", "how do liquidity tokens work",
    "why does defichain anchor to bitcoin", "how do i restore my wallet", "what is impermanent loss",
    "how often can i get testnet dfi", "what fees does the dex charge", "what are future swaps for",
    "how do i read out my private key",
]


def lag_while(n: int, embed) -> dict:
    """Hub lag (ms) of a 10 ms ticker while `n` green threads each call `embed`."""
    lags, running = [], [True]

    def ticker():
        while running[0]:
            started = time.perf_counter()
            eventlet.sleep(0.01)
            lags.append((time.perf_counter() - started - 0.01) * 1000)

    tick = eventlet.spawn(ticker)
    eventlet.sleep(0.05)
    lags.clear()
    pool = eventlet.GreenPool(n)
    started = time.perf_counter()
    list(pool.imap(lambda i: embed(QUESTIONS[i % len(QUESTIONS)] + f" ({i})"), range(n)))
    wall = time.perf_counter() - started
    running[0] = False
    tick.wait()
    ordered = sorted(lags) or [0.0]
    return {"max": ordered[-1], "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "wall": wall, "ticks": len(lags)}


def add_arguments(parser) -> None:
    parser.add_argument("-n", type=int, default=20, help="embeddings at once")
    parser.add_argument("--rounds", type=int, default=3)


def run(args) -> dict:

    from bench.kb_common import local_embedder
    from knowledge.retrieval import embed_query

    embedder = local_embedder()  # loads the model and starts the thread pool (warm_up)
    modes = {"inline": embedder.embed_query, "off the hub": lambda q: embed_query(embedder, q)}
    results = {mode: [] for mode in modes}
    for mode, embed in modes.items():  # the first concurrent round of each is slower: not counted
        first = lag_while(args.n, embed)
        print(f"first round, not counted: {mode}: hub lag max {first['max']:.0f} ms")
    for _ in range(args.rounds):
        for mode, embed in modes.items():
            results[mode].append(lag_while(args.n, embed))
    print(f"{args.n} concurrent query embeddings (MiniLM, CPU), {args.rounds} rounds each, alternating")
    print(f"{'mode':<12} {'hub lag max':>12} {'hub lag p99':>12} {'wall':>8}")
    out: dict = {"modes": {}}
    for mode, runs in results.items():
        worst = max(r["max"] for r in runs)
        p99 = max(r["p99"] for r in runs)
        wall = sorted(r["wall"] for r in runs)[len(runs) // 2]
        rounds = ", ".join(f"{r['max']:.0f}" for r in runs)
        print(f"{mode:<12} {worst:>9.1f} ms {p99:>9.1f} ms {wall:>6.2f} s   (max per round: {rounds} ms)")
        out["modes"][mode] = {"hub_lag_max_ms": round(worst, 1), "hub_lag_p99_ms": round(p99, 1),
                              "wall_s": round(wall, 3)}
    out["targets"] = {"hub_lag_max_ms_off_the_hub": target(out["modes"]["off the hub"]["hub_lag_max_ms"],
                                                           50, unit=" ms")}
    return out
