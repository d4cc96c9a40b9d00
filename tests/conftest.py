import hashlib
import os
from pathlib import Path

import pytest

from tests.helpers import ChatClient, ServerProcess

# Checkouts that test side by side on one machine keep apart temp roots: pytest
# deletes all but the newest three numbered temp dirs of a root, even in use.
os.environ.setdefault(
    "PYTEST_DEBUG_TEMPROOT",
    str(Path("/tmp") / f"jelly-{hashlib.sha1(str(Path(__file__).parent).encode()).hexdigest()[:8]}"),
)
Path(os.environ["PYTEST_DEBUG_TEMPROOT"]).mkdir(exist_ok=True)

# The everyday loop (`make check`: pytest -m "not slow") leaves out the tests listed here
# by file or by test: those that start servers of their own, fuzz, drive the browser or
# load the machine. Listed here, not marked in each file, so that a new test runs in both
# loops until someone finds it slow; `make test` (CI) runs everything.
SLOW = {
    "tests/test_faults.py",  # model faults to their deadlines, a stopped database, kill -9
    "tests/test_fuzz.py",  # thousands of Hypothesis cases against a real server
    "tests/test_web_page.py",  # a real browser
    "tests/test_scaleout.py",  # two servers and Redis
    "tests/test_serving.py",  # its own servers: slow clients, a killed PostgreSQL
    "tests/test_openapi.py",  # schemathesis against the server
    "tests/test_lifecycle.py",  # signals to servers of its own
    "tests/test_limits.py",  # servers with limits of their own, floods
    "tests/test_examples.py",  # the Python and Node clients in their own processes
    "tests/test_first_run.py",  # a fresh clone's first start, the CLI
    "tests/test_jellychat_upgrade.py",  # an original database built and upgraded
    "tests/test_openai_path.py",  # its own server and model stub, connection pools under load
    "tests/test_client_api.py",  # its own server and model stub (SSE)
    "tests/test_runs.py",  # its own servers: stop, multitask, deadlines
    "tests/test_ocean_server.py",  # its own servers against a misbehaving Ocean
    "tests/test_knowledge_ingest.py",  # ingests the wiki, the CLI
    "tests/test_knowledge_chat.py",  # ingests the wiki into its own server
    "tests/test_supabase_backend.py",  # servers on a fake Supabase, the CLI
    "tests/test_bench.py::test_every_scenario_keeps_the_contract",  # imports every scenario
    "tests/test_busy_not_down.py",  # hundreds of turns at once, a stopped database
    "tests/test_shutdown_signals.py",  # double signals to `make run`-like process groups
    "tests/test_threading_mode.py",  # its own server in threading mode: stops and deadlines
    "tests/test_openai_compat.py",  # its own server, the openai SDK, a fuzz pass
    "tests/test_openai_compat_examples.py",  # the openai and ai npm packages in Node
    "tests/test_assistants.py",  # its own server: every selection rule on every transport
    "tests/test_models.py",  # its own metered server, concurrent budgets
    "tests/test_files.py",  # its own server: uploads of 5 and 10 MB, PDFs and Word files
    "tests/test_long_history.py",  # its own server: a long conversation
    "tests/test_multilingual_tool.py",  # ingests the wiki into its own server
    "tests/test_operations.py",  # servers with limits, tokens and admin keys of their own
    "tests/test_stop_room.py",  # its own server and a slow model
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        path, _, name = item.nodeid.partition("::")
        if path in SLOW or f"{path}::{name.split('[')[0]}" in SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The real server (offline model, embedded Postgres) for the whole session."""
    srv = ServerProcess(tmp_path_factory.mktemp("server-data"),
                        env={"ADMIN_API_KEY": "test-admin-key-0123456789abcdefghij"})
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def chat_client(server):
    client = ChatClient(server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory):
    """A real embedded PostgreSQL (with pgvector) for in-process store tests."""
    from storage.embedded import start_embedded_postgres

    return start_embedded_postgres(tmp_path_factory.mktemp("pg"))


@pytest.fixture
def pg_store(pg_dsn):
    """A migrated PostgresStore on the session's embedded PostgreSQL."""
    from storage.postgres import PostgresStore

    store = PostgresStore(pg_dsn)
    store.initialize()
    yield store
    store.close()


@pytest.fixture(scope="module")
def llm():
    """A local OpenAI-compatible server (tests/fakes/openai_server.py) for one test module."""
    from tests.fakes.openai_server import OpenAIServer

    fake = OpenAIServer().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def ocean():
    """A local Ocean-compatible HTTP server (tests/fakes/ocean_server.py) for one test module."""
    from tests.fakes.ocean_server import OceanServer

    server = OceanServer().start()
    yield server
    server.close()


@pytest.fixture
def fake(ocean):
    """The module's Ocean server, reset to its default data before and after the test."""
    ocean.reset()
    yield ocean
    ocean.reset()
