"""The project's cost per streamed turn against a bare relay, side by side (issue 12).

Starts one OpenAI-compatible stub (tests/fakes/openai_server.py, its own
process), the project (`python app.py`: eventlet, embedded PostgreSQL, every
tool) and baseline A (bench/bare_relay.py: Flask-SocketIO + eventlet + the
`openai` client, emitting each token; no agent, no database), also with
TCP_NODELAY as the project sets it. All stream from the same stub and run at
once; in each round every server is measured in turn (who goes first rotates),
and the report gives each figure's median over the rounds and the median of
the rounds' ratios (this machine is shared: one run of one server decides
nothing). `--project-root` adds the project of another checkout, e.g. an
earlier commit; `--variant NAME=VALUE` this checkout's with a variable set.
`--tls`: the stub serves HTTPS (a certificate of its own, trusted through
SSL_CERT_FILE), so a new connection to the model costs a TLS handshake, as
with a real provider.

The streamed turn: 50 tokens 20 ms apart, the first after 200 ms (stub floor
1.2 s per turn). The fixed-cost turn: 5 tokens, no delay. Prints, for each server:

- server CPU per streamed turn, N at once (user + system time of the server
  process; the project's PostgreSQL processes separately)
- fixed CPU per turn (5 tokens, no delay; 20 connections x 10 turns)
- time to first token added over the stub's 220 ms: one conversation (p50 of
  `--single` turns) and 50 at once (p50)
- relay delay per token, one conversation: arrival minus the time the stub
  sent the word (the stub stamps each word), p50 / p99
- wall time of the N-at-once batch over the stub's own 1.2 s floor
- the project's garbage collection during that batch, per turn, and its longest
  pause since start (the server's /metrics: `jellychat_gc_pause_seconds`)
- REST `POST /user_message` (fixed-cost turn) at 200 concurrent: req/s and p99

Targets (issue 31): CPU per streamed turn <= 1.3 x A (median of the rounds'
ratios), time to first token added, one conversation, <= A's + 8 ms, relay
delay p99 <= 10 ms.

Run: .venv/bin/python -m bench relay [--n 400] [--single 20] [--rest 1000] [--rounds 3]
     [--project-root PATH] [--variant NAME=VALUE] [--tls]
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import percentile, target
from bench.sio_client import Connection
from tests.helpers import ROOT, ServerProcess, free_port

STREAMED = "[silent 0.2] [long 50] [slow 0.02] [stamp] tell me a story"
FIXED = "[long 5] hi"
FIRST_TOKEN_FLOOR = 0.22  # silent 0.2 s, then the first word after one 20 ms gap
STREAM_FLOOR = 0.2 + 50 * 0.02


def start_stub(tls_dir: str | None = None) -> tuple[subprocess.Popen, str]:
    """The stub; with `tls_dir`, over HTTPS, and every process started after this
    trusts its certificate."""
    stub = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server",
                             *(["--tls", tls_dir] if tls_dir else [])], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    if tls_dir:
        os.environ["SSL_CERT_FILE"] = os.path.join(tls_dir, "cert.pem")
    return stub, stub.stdout.readline().split()[1]


class Bare:
    """Baseline A in its own process; with `nodelay`, A with TCP_NODELAY like the project;
    with `database` (a URI), A + one database call (bench/bare_relay.py)."""

    NAMES = {False: "bare relay (A)", True: "A + TCP_NODELAY"}  # by `nodelay`
    WITH_DATABASE = "A + one database call"

    def __init__(self, llm_url: str, nodelay: bool = False, database: str | None = None):
        self.name = self.WITH_DATABASE if database else self.NAMES[nodelay]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_relay", "--port", str(self.port), "--llm", llm_url,
             *(["--nodelay"] if nodelay else []), *(["--database", database] if database else [])],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.proc.stdout.readline()
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)  # waiting for the port to be bound
        self.pid = self.proc.pid

    def db_cpu(self) -> float:
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Project:
    """The project (`python app.py`) from this checkout or another one (`root`)."""

    def __init__(self, llm_url: str, data_dir: str, env: dict | None = None, root=ROOT):
        self.server = ServerProcess(data_dir, root=root, env={
            "OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "bench", "LOG_LEVEL": "WARNING",
            "MAX_CONNECTIONS_PER_IP": "0",  # every client comes from 127.0.0.1
            "RATE_LIMIT_TURNS_PER_ADDRESS": "0",  # the same: one address (0: no limit)
            **(env or {})}).start()
        self.url = self.server.url
        self.pid = self.server.proc.pid
        self.data_dir = data_dir

    def database_uri(self) -> str:
        """Where its embedded PostgreSQL listens."""
        from storage.embedded import running_uri

        uri = running_uri(self.data_dir)
        if uri is None:
            raise RuntimeError(f"no embedded PostgreSQL runs for {self.data_dir}")
        return uri

    def db_cpu(self) -> float:
        """CPU seconds of the PostgreSQL server of this data dir and its backends."""
        total = 0.0
        for proc in psutil.process_iter(["name", "cmdline"]):
            if proc.info["name"] != "postgres" or self.data_dir not in " ".join(
                    proc.info["cmdline"] or []):
                continue
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    times = p.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    continue
        return total

    def gc_pauses(self) -> tuple[float, float] | None:
        """Seconds the collector has stopped the server in all, and its longest pause
        (the server's own /metrics; None from a checkout without them)."""
        text = httpx.get(self.url + "/metrics", timeout=30).text
        total, longest = None, 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "jellychat_gc_pause_seconds_sum":
                    total = (total or 0.0) + sample.value
                elif sample.name == "jellychat_gc_pause_max_seconds":
                    longest = sample.value
        return None if total is None else (total, longest)

    def stop(self) -> None:
        self.server.stop()


def checkout(root: str) -> str:
    """A checkout's commit, "with changes" when its tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", root, *args], capture_output=True,
                              text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or root
    return commit + (" with changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def other_checkouts(roots: list[str]) -> dict[str, str]:
    """{label: root} for `--project-root`: "project at <commit>", and the path too
    when two checkouts are of one commit."""
    labels: dict[str, str] = {}
    for root in roots:
        label = f"project at {checkout(root)}"
        labels[f"{label} ({root})" if label in labels else label] = root
    return labels


def cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def batch(url: str, clients: int, message: str, turns_each: int = 1) -> dict:
    """`clients` connections each send `turns_each` turns, all starting together."""
    conns = await asyncio.gather(*(Connection.open(url) for _ in range(clients)))
    tokens = [f"bench-{uuid.uuid4().hex[:10]}" for _ in conns]
    start = time.perf_counter()

    async def one(conn, token):
        return [await conn.turn(token, message) for _ in range(turns_each)]

    results = await asyncio.gather(*(one(c, t) for c, t in zip(conns, tokens, strict=True)))
    wall = time.perf_counter() - start
    await asyncio.gather(*(c.close() for c in conns))
    turns = [t for r in results for t in r]
    return {"wall": wall, "turns": turns,
            "answered": sum(t.end == "final_message" for t in turns)}


async def sequential(url: str, count: int, message: str) -> list:
    conn = await Connection.open(url)
    token = f"bench-{uuid.uuid4().hex[:10]}"
    turns = [await conn.turn(token, message) for _ in range(count)]
    await conn.close()
    return turns


async def rest(url: str, total: int, concurrency: int) -> dict:
    """`concurrency` users, each with its own HTTP connection, share `total` requests.

    One client per user: httpx's shared pool looks through every connection and
    queued request for each request it sends, and at 200 connections the
    benchmark's own process was the bottleneck (0.8 of a core, the servers idle
    between its bursts). Each user sends an equal share, as a user would (a shared
    queue let fast users past the per-user limit of 30 a minute).
    """
    latencies: list[float] = []
    failures: collections.Counter = collections.Counter()  # by status code or exception

    async def user(count: int):
        token = f"bench-{uuid.uuid4().hex[:10]}"
        async with httpx.AsyncClient(timeout=120) as client:
            for _ in range(count):
                t = time.perf_counter()
                try:
                    response = await client.post(url + "/user_message", json={
                        "user_token": token, "message": FIXED, "application": "bench"})
                    if response.status_code != 200:
                        failures[str(response.status_code)] += 1
                except httpx.HTTPError as exc:
                    failures[type(exc).__name__] += 1  # counted; the figure says how many
                latencies.append(time.perf_counter() - t)

    shares = [total // concurrency + (i < total % concurrency) for i in range(concurrency)]
    start = time.perf_counter()
    await asyncio.gather(*(user(n) for n in shares if n))
    wall = time.perf_counter() - start
    return {"rps": total / wall, "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99), "failures": failures}


def measure(server, args) -> dict:
    url = server.url
    out: dict = {}
    single = asyncio.run(sequential(url, args.single, STREAMED))
    out["ttft1"] = percentile([t.first_token for t in single], 50) - FIRST_TOKEN_FLOOR
    delays = [d for t in single for d in t.token_delays()]
    out["delay_p50"], out["delay_p99"] = percentile(delays, 50), percentile(delays, 99)

    fifty = asyncio.run(batch(url, 50, STREAMED))
    out["ttft50"] = percentile([t.first_token for t in fifty["turns"]], 50) - FIRST_TOKEN_FLOOR

    cpu0, db0 = cpu(server.pid), server.db_cpu()
    fixed = asyncio.run(batch(url, 20, FIXED, 10))
    out["fixed_cpu"] = (cpu(server.pid) - cpu0) / len(fixed["turns"])
    out["fixed_db"] = (server.db_cpu() - db0) / len(fixed["turns"])

    cpu0, db0 = cpu(server.pid), server.db_cpu()
    gc0 = server.gc_pauses() if isinstance(server, Project) else None
    many = asyncio.run(batch(url, args.n, STREAMED))
    out["cpu_n"] = (cpu(server.pid) - cpu0) / args.n
    if gc0 is not None:
        total, out["gc_longest"] = server.gc_pauses()  # the longest since the server started
        out["gc_n"] = (total - gc0[0]) / args.n
    out["db_n"] = (server.db_cpu() - db0) / args.n
    out["wall_ratio"] = many["wall"] / STREAM_FLOOR
    out["answered"] = many["answered"] + fifty["answered"] + fixed["answered"]
    out["asked"] = len(many["turns"]) + len(fifty["turns"]) + len(fixed["turns"])
    out["ttft_n_p99"] = percentile([t.first_token for t in many["turns"]
                                    if t.first_token is not None], 99)
    if args.rest:
        out["rest"] = rest_result = asyncio.run(rest(url, args.rest, 200))
        out["answered"] += args.rest - sum(rest_result["failures"].values())
        out["asked"] += args.rest
    return out


def warm_up(server) -> None:
    """Imports, pools, first connections: before any figure is taken."""
    asyncio.run(batch(server.url, 5, STREAMED))
    asyncio.run(batch(server.url, 5, FIXED, 2))


def side_by_side(rounds: int, measure, *, prefix: str, project_roots=(),
                 with_database: bool = False) -> dict[str, list]:
    """Start the stub, A and the project (and the projects of `project_roots`; with
    `with_database`, A + one database call on the project's PostgreSQL), warm them
    up, and measure each in turn for `rounds` rounds, who goes first rotating:
    {name: [measure(server, llm_url) of each round]}. Everything stops at the end,
    and the projects' data dirs go."""
    stub, llm_url = start_stub()
    try:
        with contextlib.ExitStack() as stack:  # each server stops before its data dir goes
            def project(root=ROOT):
                data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix))
                server = Project(llm_url, data_dir, None, root)
                stack.callback(server.stop)
                return server

            servers: dict = {"bare relay (A)": Bare(llm_url)}
            stack.callback(servers["bare relay (A)"].stop)
            servers["project"] = project()
            if with_database:
                servers[Bare.WITH_DATABASE] = Bare(llm_url,
                                                   database=servers["project"].database_uri())
                stack.callback(servers[Bare.WITH_DATABASE].stop)
            for label, root in other_checkouts(list(project_roots)).items():
                servers[label] = project(root)
            for server in servers.values():
                warm_up(server)
            names = list(servers)
            out: dict[str, list] = {name: [] for name in names}
            for n in range(rounds):
                for name in names[n % len(names):] + names[:n % len(names)]:
                    out[name].append(measure(servers[name], llm_url))
                print(f"round {n + 1} of {rounds} done", flush=True)
            return out
    finally:
        stub.terminate()
        stub.wait(10)


def median_of(rounds: list[dict]) -> dict:
    """One server's figures over the rounds: medians, and the counts summed."""
    out = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]
           if key not in ("rest", "answered", "asked")}
    out["answered"] = sum(r["answered"] for r in rounds)
    out["asked"] = sum(r["asked"] for r in rounds)
    if "gc_longest" in rounds[0]:
        out["gc_longest"] = max(r["gc_longest"] for r in rounds)
    if "rest" in rounds[0]:
        out["rest"] = {"rps": statistics.median(r["rest"]["rps"] for r in rounds),
                       "p99": statistics.median(r["rest"]["p99"] for r in rounds),
                       "failures": sum((r["rest"]["failures"] for r in rounds), collections.Counter())}
    return out


def report(per_round: dict, args) -> dict:
    """Prints the table; returns the medians and the targets."""
    results = {name: median_of(rounds) for name, rounds in per_round.items()}
    names = list(results)
    rows = [
        (f"server CPU per streamed turn, {args.n} at once",
         lambda r: f"{1000 * r['cpu_n']:.1f} ms" + (f" (+{1000 * r['db_n']:.1f} ms PostgreSQL)"
                                                    if r["db_n"] else "")),
        ("fixed CPU per turn (5 tokens, no delay)",
         lambda r: f"{1000 * r['fixed_cpu']:.1f} ms" + (f" (+{1000 * r['fixed_db']:.1f} ms PostgreSQL)"
                                                        if r["fixed_db"] else "")),
        ("time to first token added, one conversation, p50", lambda r: f"+{1000 * r['ttft1']:.1f} ms"),
        ("time to first token added, 50 at once, p50", lambda r: f"+{1000 * r['ttft50']:.0f} ms"),
        ("relay delay per token, one conversation, p50 / p99",
         lambda r: f"{1000 * r['delay_p50']:.1f} / {1000 * r['delay_p99']:.1f} ms"),
        (f"wall time, {args.n} at once / stub floor {STREAM_FLOOR:.1f} s",
         lambda r: f"{r['wall_ratio']:.2f}x"),
        (f"time to first token, {args.n} at once, p99", lambda r: f"{r['ttft_n_p99']:.2f} s"),
        (f"garbage collection per streamed turn, {args.n} at once; longest pause",
         lambda r: f"{1000 * r['gc_n']:.2f} ms; {1000 * r['gc_longest']:.0f} ms" if "gc_n" in r
         else "not measured"),
    ]
    if args.rest:
        rows.append((f"REST POST /user_message, 200 concurrent ({args.rest} requests)",
                     lambda r: f"{r['rest']['rps']:.0f} req/s, p99 {r['rest']['p99']:.2f} s"
                     + "".join(f", {n} failed ({kind})" for kind, n in r["rest"]["failures"].items())))
    rows.append(("answered / asked", lambda r: f"{r['answered']}/{r['asked']}"))
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(results[n]) for n in names) + " |")
    out: dict = {"servers": {name: {k: v for k, v in r.items() if k != "rest"} | (
        {"rest": {**r["rest"], "failures": dict(r["rest"]["failures"])}} if "rest" in r else {})
        for name, r in results.items()}, "targets": {}}
    for name in Bare.NAMES.values():
        if "project" not in per_round or name not in per_round:
            continue
        pairs = list(zip(per_round["project"], per_round[name], strict=True))

        def ratio(key, pairs=pairs):
            return statistics.median(p[key] / max(a[key], 1e-4) for p, a in pairs)

        p = results["project"]
        print(f"\nproject / {name}, median of the rounds' ratios: CPU per streamed turn "
              f"{ratio('cpu_n'):.2f} (target <= 1.3), TTFT added at 50 {ratio('ttft50'):.2f}; "
              f"project's medians: fixed CPU {1000 * p['fixed_cpu']:.1f} ms, TTFT added alone "
              f"{1000 * p['ttft1']:.1f} ms (target <= A's {1000 * results[name]['ttft1']:.1f} + 8), "
              f"relay delay p99 {1000 * p['delay_p99']:.1f} ms (target <= 10)")
        if name == Bare.NAMES[False]:
            out["targets"] = {
                "cpu_per_streamed_turn_over_A": target(round(ratio("cpu_n"), 3), 1.3, unit=" x A"),
                "ttft_added_one_conversation_ms": target(
                    round(1000 * p["ttft1"], 2), round(1000 * results[name]["ttft1"] + 8, 2), unit=" ms"),
                "relay_delay_p99_ms": target(round(1000 * p["delay_p99"], 2), 10, unit=" ms"),
                # on the default settings a burst may be refused (DB_POOL_TIMEOUT): users see that
                "project_answered": target(p["answered"], p["asked"], at_least=True),
            }
    return out


def add_arguments(parser) -> None:
    parser.add_argument("--n", type=int, default=400, help="streamed turns at once")
    parser.add_argument("--single", type=int, default=20, help="turns of the one conversation")
    parser.add_argument("--rest", type=int, default=1000, help="REST requests (0: skip)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds; the servers take turns within each, medians are reported")
    parser.add_argument("--only", choices=["project", "bare", "nodelay"],
                        help="measure one server (bare: A; nodelay: A with TCP_NODELAY)")
    parser.add_argument("--project-root", action="append", default=[], metavar="PATH",
                        help="also measure the project of another checkout (e.g. a worktree of "
                             "an earlier commit: git worktree add /tmp/old <commit>)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=VALUE",
                        help="also measure this checkout's project with this variable set "
                             "(e.g. DATABASE_POOL_SIZE=20)")
    parser.add_argument("--tls", action="store_true",
                        help="the stub serves HTTPS: new connections cost a TLS handshake")


def run(args) -> dict:
    raise_file_limit()
    tls_dir = tempfile.mkdtemp() if args.tls else None
    stub, llm_url = start_stub(tls_dir)
    per_round: dict[str, list[dict]] = {}
    try:
        with contextlib.ExitStack() as stack:  # each server stops before its data dir goes
            def data_dir() -> str:
                return stack.enter_context(tempfile.TemporaryDirectory())

            def started(server):
                stack.callback(server.stop)
                return server

            servers: dict = {}
            if args.only in (None, "project"):
                servers["project"] = started(Project(llm_url, data_dir()))
            for label, root in other_checkouts(args.project_root).items():
                servers[label] = started(Project(llm_url, data_dir(), None, root))
            for variant in args.variant:
                name, _, value = variant.partition("=")
                servers[f"project with {variant}"] = started(Project(llm_url, data_dir(), {name: value}))
            for nodelay, key in ((False, "bare"), (True, "nodelay")):
                if args.only in (None, key):
                    bare = started(Bare(llm_url, nodelay))
                    servers[bare.name] = bare
            for server in servers.values():
                warm_up(server)
            names = list(servers)
            for number in range(args.rounds):
                order = names[number % len(names):] + names[:number % len(names)]
                for name in order:  # who goes first changes from round to round
                    per_round.setdefault(name, []).append(measure(servers[name], args))
                print(f"round {number + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    finally:
        stub.terminate()
        stub.wait(10)
        if tls_dir:
            shutil.rmtree(tls_dir)
    return report(per_round, args)  # the first round's order is the servers' order


def raise_file_limit() -> None:
    """Open files up to the hard limit: hundreds of clients here, the servers inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
