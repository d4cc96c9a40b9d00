"""What can be checked of the Docker image without building it.

No container engine runs here (`docker info` finds no daemon, and no registry
but PyPI, Debian and npm is reachable), so these tests read the Dockerfile and
.dockerignore instead: base image pinned by digest, the lock installed with
hashes, a non-root user, HOST=0.0.0.0, and no .venv/data/.env/node_modules in
the build context. The lock's installability is what `make install` does on
every CI run.
"""

from __future__ import annotations

import re

from tests.helpers import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule for a path of the context: a pattern (with *, ? and **)
    matching the path or one of its parent folders excludes it; `!` re-includes."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, c) for c in candidates):
            result = not negate
    return result


def test_base_image_is_pinned_by_digest():
    froms = [args for word, args in instructions() if word == "FROM"]
    assert froms
    for image in froms:
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}( AS \w+)?", image), image


def test_installs_the_lock_with_hashes():
    runs = " ".join(args for word, args in instructions() if word == "RUN")
    assert "pip install --require-hashes -r requirements.txt" in runs
    assert ("COPY", "requirements.txt .") in instructions()
    assert "requirements-dev" not in DOCKERFILE and "requirements-local" not in DOCKERFILE
    # every package of the lock is pinned to one version with at least one hash
    lock = (ROOT / "requirements.txt").read_text()
    entry = r"^([A-Za-z0-9_.-]+)==(\S+?)(?: ;[^\\\n]*)? \\\n((?:\s+--hash=sha256:[0-9a-f]{64}.*\n)+)"
    entries = re.findall(entry, lock, re.M)
    pinned = [line for line in lock.splitlines() if line and not line[0].isspace() and line[0] != "#"]
    assert len(entries) == len(pinned) > 80


def test_runs_as_a_non_root_user_on_all_interfaces():
    rows = instructions()
    users = [args for word, args in rows if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    last_user = max(i for i, (word, _) in enumerate(rows) if word == "USER")
    assert [word for word, _ in rows].index("CMD") > last_user
    env = " ".join(args for word, args in rows if word == "ENV")
    assert re.search(r"\bHOST=0\.0\.0\.0\b", env) and re.search(r"\bPORT=8080\b", env)
    assert ("CMD", '["python", "app.py"]') in rows


def test_build_context_leaves_out_local_state():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".venv/bin/python", "data/postgres/PG_VERSION", ".env", ".git/HEAD",
                 "examples/js/node_modules/socket.io-client/package.json", "web/__pycache__/kb.pyc"):
        assert ignored(path, patterns), path
    for path in ("app.py", "requirements.txt", "web/kb.py", "knowledge/starter/dex.md",
                 "supabase/migrations", "examples/js/jelly.mjs", ".env.sample"):
        assert not ignored(path, patterns), path
