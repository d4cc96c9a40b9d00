"""The benchmark harness: `python -m bench` lists every scenario, each one has the
contract, and the exit status follows the targets."""

import json
import subprocess
import sys
import textwrap

import pytest

from bench import __main__ as harness
from bench.harness import percentile, target
from tests.helpers import ROOT


def bench(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, **kwargs)


def test_help_lists_every_scenario_with_one_line():
    out = bench("--help")
    assert out.returncode == 0, out.stderr
    listing = out.stdout.split("scenarios:")[1]
    for name, (_, line) in harness.SCENARIOS.items():
        assert f"  {name} " in listing, name
        assert " ".join(line.split()) in " ".join(listing.split()), name


def test_every_scenario_keeps_the_contract():
    """One fresh process imports them all (some monkey-patch at import, as the server
    does) and builds each one's parser; a module registered ahead of its merge is skipped."""
    code = textwrap.dedent("""
        import argparse, importlib, sys
        from bench.__main__ import SCENARIOS, load, Unavailable
        for name, (module, _) in SCENARIOS.items():
            try:
                m = load(name)
            except Unavailable as exc:
                if "is not in this checkout" not in str(exc):
                    raise
                print("absent", name)
                continue
            parser = argparse.ArgumentParser()
            m.add_arguments(parser)
            parser.parse_args([])  # every option has a default
            print("ok", name)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    seen = dict(line.split()[::-1] for line in out.stdout.splitlines() if line.split()[0] in ("ok", "absent"))
    assert set(seen) == set(harness.SCENARIOS)
    for name, state in seen.items():
        if state == "absent":
            assert not (ROOT / (harness.SCENARIOS[name][0].replace(".", "/") + ".py")).exists()


def test_a_missing_scenario_module_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(harness.SCENARIOS, "absent", ("bench.no_such_scenario", "registered, not here"))
    assert harness.main(["absent"]) == 2
    assert "bench/no_such_scenario.py" in capsys.readouterr().err


@pytest.mark.parametrize("value, status", [(3, 0), (30, 1)])
def test_exit_status_follows_the_targets(tmp_path, value, status):
    """A scenario of its own: its result is printed and written, and a missed target fails."""
    (tmp_path / "tiny_scenario.py").write_text(textwrap.dedent(f'''
        """A scenario for the harness's test."""
        from bench.harness import target

        def add_arguments(parser):
            parser.add_argument("--x", type=int, default={value})

        def run(args):
            return {{"x": args.x, "targets": {{"x_ms": target(args.x, 10, unit=" ms")}}}}
    '''))
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from bench import __main__ as h
        h.SCENARIOS["tiny"] = ("tiny_scenario", "a test")
        sys.exit(h.main(["tiny", "--json", {str(tmp_path / "out.json")!r}]))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == status, out.stderr
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["scenario"] == "tiny" and written["x"] == value
    assert written["targets"]["x_ms"] == {"value": value, "limit": 10, "op": "<=", "unit": " ms",
                                          "met": value <= 10}
    assert len(written["load_average_before"]) == 3
    assert ("MISSED x_ms" in out.stderr) == bool(status)


def test_percentile_and_target():
    assert percentile([5, 1, 4, 2, 3], 50) == 3
    assert percentile(range(1, 101), 99) == 99
    assert percentile([], 50) != percentile([], 50)  # NaN
    assert target(0.95, 0.9, at_least=True)["met"]
    assert not target(float("nan"), 10)["met"]
    assert not target(None, 10)["met"]
