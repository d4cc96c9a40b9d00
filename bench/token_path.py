"""CPU per turn of three ways for a run to get its tokens, in-process (issue 31).

- hook: what the project does (agent/run.py): `graph.stream(stream_mode="updates")`,
  the model step reads its reply into the run's `RunSteps` (agent/steps.py), found
  in the context variable `current_run`
- custom: the same hook, but each token goes out through LangGraph's public
  `get_stream_writer()` and comes back from `graph.stream(stream_mode=["updates",
  "custom"])`
- messages: LangGraph's public token streaming, `stream_mode=["updates",
  "messages"]`: LangChain streams the model through callbacks and LangGraph hands
  each chunk back

The agent is the project's (`create_agent` with its `ToolSteps` middleware) over a
scripted chat model that answers `--tokens` tokens in one step, so only the token
path differs. Each way runs in its own process, the ways alternate, and the
report gives each one's lowest figure (the machine is shared: the lowest is the
one least disturbed), with the load average.

Run: .venv/bin/python -m bench token_path [--tokens 50] [--turns 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

WAYS = ("hook", "custom", "messages")


def measure(way: str, tokens: int, turns: int) -> float:
    """ms of CPU per turn (this process, all threads) for one way."""
    from langchain.agents import create_agent
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessageChunk, HumanMessage
    from langchain_core.outputs import ChatGenerationChunk
    from langchain_core.tools import tool
    from langgraph.config import get_stream_writer

    from agent.cancel import CancelHandle
    from agent.steps import RunSteps, ToolSteps, current_run, model_step_in_run

    class Scripted(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "scripted"

        def bind_tools(self, tools, **kwargs):
            return self

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            streamed = model_step_in_run(lambda: self._stream(messages))
            if streamed is None:
                raise RuntimeError("the hook was expected")
            return streamed

        def _stream(self, messages, stop=None, run_manager=None, **kwargs):
            for n in range(tokens):
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=f"w{n} "))
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            yield ChatGenerationChunk(message=AIMessageChunk(content=""),
                                      generation_info={"finish_reason": "stop"})

    @tool
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression."""
        return expression

    graph = create_agent(Scripted(), [calculator], system_prompt="Be brief.",
                         middleware=[ToolSteps()])
    question = {"messages": [HumanMessage("hi")]}
    config = {"recursion_limit": 13}

    def turn() -> str:
        got: list[str] = []
        if way == "messages":
            for mode, data in graph.stream(question, config, stream_mode=["updates", "messages"]):
                if mode == "messages" and data[0].text:
                    got.append(data[0].text)
            return "".join(got)
        if way == "hook":
            steps = RunSteps(CancelHandle(), lambda _step, text: got.append(text))
            modes = "updates"
        else:
            steps = RunSteps(CancelHandle(), lambda _step, text: get_stream_writer()(text))
            modes = ["updates", "custom"]
        reset = current_run.set(steps)
        try:
            for item in graph.stream(question, config, stream_mode=modes):
                if way == "custom" and item[0] == "custom":
                    got.append(item[1])
        finally:
            current_run.reset(reset)
        return "".join(got)

    if way == "messages":
        Scripted._generate = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("not streamed"))
    for _ in range(30):  # warm up
        answer = turn()
    assert answer.startswith("w0 w1 "), answer[:20]
    begin = time.process_time()
    for _ in range(turns):
        turn()
    return (time.process_time() - begin) / turns * 1000


def add_arguments(parser) -> None:
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # one measurement


def run(args) -> dict:
    """Each way in its own process (a patched model class must not leak), `--repeat` times."""
    figures: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(args.repeat):
        for way in WAYS:
            out = subprocess.run([sys.executable, "-m", "bench.token_path", "--way", way,
                                  "--tokens", str(args.tokens), "--turns", str(args.turns)],
                                 capture_output=True, text=True, check=True)
            figures[way].append(float(out.stdout.split()[-1]))
    print(f"load average {os.getloadavg()[0]:.2f}; {args.tokens} tokens, lowest of "
          f"{args.repeat} x {args.turns} turns")
    print("| tokens from | ms CPU per turn | more than the hook |")
    print("|---|---|---|")
    hook = min(figures["hook"])
    for way in WAYS:
        low = min(figures[way])
        print(f"| {way} | {low:.2f} | {low - hook:+.2f} |")
    return {"ms_cpu_per_turn": {way: min(figures[way]) for way in WAYS}, "targets": {}}


def _one() -> None:
    """`python -m bench.token_path --way W`: one measurement, printed (used by `run`)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args()
    print(measure(args.way, args.tokens, args.turns))


if __name__ == "__main__":
    _one()
