"""The stop handler joins the run's room only after the stop succeeded (issue 32): a
stranger's `stop` of someone else's run must not receive that run's final_message,
even when the run ends during the stop's database call.

In-process (Flask-SocketIO's test client, threading mode) on the real PostgreSQL:
the store's request_stop ends the run, as far as its room can tell, at the moment
the database is asked, then asks it."""

from __future__ import annotations

import uuid

from storage.postgres import PostgresStore
from web import sockets


class RunEndsDuringTheStop(PostgresStore):
    """The real store; the run's final_message goes to its room while the database
    decides whether the stop is allowed."""

    def request_stop(self, token, run_id):
        sockets.socketio.emit("final_message", {"run_id": run_id, "status": "succeeded",
                                                "message": "someone else's answer"},
                              to=sockets.run_room(run_id))
        return super().request_stop(token, run_id)


def test_a_strangers_stop_never_joins_the_run_room(pg_dsn, tmp_path):
    from app import create_app

    store = RunEndsDuringTheStop(pg_dsn)
    app = create_app({"socketio_async_mode": "threading", "knowledge_starter": False,
                      "embeddings": "none", "data_dir": str(tmp_path)}, store=store)
    client = sockets.socketio.test_client(app)
    try:
        run_id = str(uuid.uuid4())
        client.emit("stop", {"run_id": run_id, "user_token": f"stranger-{uuid.uuid4().hex[:8]}"})
        received = client.get_received()
        names = [r["name"] for r in received]
        assert "final_message" not in names, received
        assert names == ["error"] and received[0]["args"][0]["field"] == "run_id", received
    finally:
        client.disconnect()
        store.close()
