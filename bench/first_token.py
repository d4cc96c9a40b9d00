"""Where the project's time to first token goes, next to the bare relay's (issue 12).

The same stub, turn and baseline A as bench/relay.py. In each round, for A and
then the project (the order rotates): `--single` turns of one conversation,
one after another, then 50 turns at once. Prints the time to first token added
over the stub's 220 ms (p50, as the client sees it; the median over the rounds,
and each round's ratio to A, whose median and range follow) and, for the
project, the mean of each phase its /metrics recorded meanwhile
(`jellychat_turn_phase_seconds`, `jellychat_first_token_seconds`):

- admit: validation and rate limits
- store: the run's one database call (run, question, memory)
- queue: waiting behind an earlier run of the conversation (none here)
- agent: LangGraph's step and LangChain's model call up to the run's model hook
- model: the request from there (built, sent, answered) to its first chunk, less
  the stub's 200 ms of silence
- to token: first chunk to the first token sent, less the stub's 20 ms gap
- transport: what the client saw beyond the server's own time to first token
  (Socket.IO both ways)

`--project-root PATH` adds the project of another checkout (a worktree of an
earlier commit, or one with a change to try), measured the same way in the same
rounds. `--with-database` adds "A + one database call" (bench/bare_relay.py
`--database`): A making the project's run call on the project's PostgreSQL
before its model request, the floor of a turn whose conversation lives in the
database.

Target: the project's p50, one conversation, <= A's + 8 ms.

Run: .venv/bin/python -m bench first_token [--single 30] [--burst 50] [--rounds 3]
     [--project-root PATH] [--with-database]
"""

from __future__ import annotations

import asyncio
import statistics

from agent.turn import PHASES
from bench.harness import percentile, target
from bench.relay import FIRST_TOKEN_FLOOR, STREAMED, Project, batch, sequential, side_by_side
from tests.helpers import first_token_figures as figures

SILENCE = 0.2  # of the stub's first-token floor; the rest is its gap before the first word


def phase_means(before: dict, after: dict, client_ttft: float) -> dict:
    """Mean ms per turn of each phase between two readings of /metrics."""

    def mean(name: str, phase: str | None = None) -> float:
        count = after.get((name + "_count", phase), 0) - before.get((name + "_count", phase), 0)
        total = after.get((name + "_sum", phase), 0) - before.get((name + "_sum", phase), 0)
        return 1000 * total / count if count else 0.0

    out = {phase: mean("jellychat_turn_phase_seconds", phase) for phase, _, _ in PHASES}
    out["model"] -= 1000 * SILENCE
    server = mean("jellychat_first_token_seconds")
    out["to token"] = server - sum(out.values()) - 1000 * FIRST_TOKEN_FLOOR
    out["transport"] = 1000 * (client_ttft + FIRST_TOKEN_FLOOR) - server
    return out


def measure(server, args, is_project: bool) -> dict:
    out = {}
    for label, run in (("alone", lambda: asyncio.run(sequential(server.url, args.single, STREAMED))),
                       ("burst", lambda: asyncio.run(batch(server.url, args.burst, STREAMED))["turns"])):
        before = figures(server.url) if is_project else {}
        turns = run()
        added = [t.first_token - FIRST_TOKEN_FLOOR for t in turns if t.first_token is not None]
        out[label] = {"p50": 1000 * percentile(added, 50)}
        # the phases are means (sums over counts), so "transport" takes the client's mean
        if is_project:
            out[label]["phases"] = phase_means(before, figures(server.url), statistics.mean(added))
    return out


def report(rounds: dict[str, list[dict]], args) -> None:
    a = rounds.pop("bare relay (A)")
    for label, title in (("alone", "one conversation"), ("burst", f"{args.burst} at once")):
        a50 = statistics.median(r[label]["p50"] for r in a)
        print(f"\nTime to first token added, {title}, p50 (median of {len(a)} rounds): "
              f"A +{a50:.1f} ms")
        for name, p in rounds.items():
            p50 = statistics.median(r[label]["p50"] for r in p)
            print(f"  {name} +{p50:.1f} ms ({p50 / a50:.2f} x A)" + ("; mean per turn: " + ", ".join(
                f"{phase} {statistics.median(r[label]['phases'][phase] for r in p):.2f} ms"
                for phase in p[0][label]["phases"]) if "phases" in p[0][label] else ""))
            # each round's ratio: A and the project measured minutes apart, not hours
            ratios = sorted(r[label]["p50"] / ra[label]["p50"] for r, ra in zip(p, a, strict=True))
            print(f"    the rounds' ratios: median {statistics.median(ratios):.2f} x A, "
                  f"from {ratios[0]:.2f} to {ratios[-1]:.2f} x A")


def add_arguments(parser) -> None:
    parser.add_argument("--single", type=int, default=30, help="turns of the one conversation")
    parser.add_argument("--burst", type=int, default=50, help="turns at once")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--project-root", action="append", default=[], metavar="PATH",
                        help="also measure the project of another checkout")
    parser.add_argument("--with-database", action="store_true",
                        help="also measure A + one database call (the project's run call)")


def run(args) -> dict:
    rounds = side_by_side(
        args.rounds, lambda server, _: measure(server, args, isinstance(server, Project)),
        prefix="bench-ttft-", project_roots=args.project_root, with_database=args.with_database)
    a50 = statistics.median(r["alone"]["p50"] for r in rounds["bare relay (A)"])
    p50 = statistics.median(r["alone"]["p50"] for r in rounds["project"])
    result = {"rounds": rounds, "targets": {"ttft_added_one_conversation_ms": target(
        round(p50, 2), round(a50 + 8, 2), unit=" ms")}}
    report(dict(rounds), args)
    return result
