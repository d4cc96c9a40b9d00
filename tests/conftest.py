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
