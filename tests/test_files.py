"""A user's files in a conversation and memories, through the real server and the
offline model: upload, list and delete with scoping, every refusal, real PDFs,
the cascade on conversation delete, answers from files with their names as
sources, and memories saved, found in another conversation, deduped, deleted
and switched off."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest
import requests

from tests.docs_for_files import big_pdf, docx_file, image_pdf, text_pdf
from tests.helpers import RunClient


def _token() -> str:
    return f"files-{uuid.uuid4().hex[:10]}"


def _conversation(server, token: str) -> str:
    r = server.post("/conversations", json={}, headers={"X-User-Token": token})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _upload(server, token, conversation, name, data, mime="application/octet-stream"):
    return requests.post(f"{server.url}/conversations/{conversation}/files",
                         headers={"X-User-Token": token}, files={"file": (name, data, mime)},
                         timeout=60)


class Client(RunClient):
    EVENTS = (*RunClient.EVENTS, "memory_saved", "file_ready")


@pytest.fixture
def client(server):
    c = Client(server.url)
    yield c
    c.close()


def _ask(client, token, conversation, message):
    client.start({"user_token": token, "message": message, "application": "pytest",
                  "conversation_id": conversation})
    return client.until("final_message")


def test_upload_list_delete_scoped_to_user_and_conversation(server):
    alice, bob = _token(), _token()
    conv, other = _conversation(server, alice), _conversation(server, alice)
    r = _upload(server, alice, conv, "notes.md", b"# Notes\n\nThe harbour opens at dawn.\n")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "ready" and body["chunks"] >= 1 and body["mime_type"] == "text/markdown"
    assert body["name"] == "notes.md" and body["size"] == 36 and body["error"] is None
    listed = server.get(f"/conversations/{conv}/files", headers={"X-User-Token": alice}).json()
    assert [f["id"] for f in listed] == [body["id"]]
    assert server.get(f"/conversations/{other}/files", headers={"X-User-Token": alice}).json() == []
    # another user: 404 for everything
    assert server.get(f"/conversations/{conv}/files", headers={"X-User-Token": bob}).status_code == 404
    assert _upload(server, bob, conv, "x.txt", b"hello there").status_code == 404
    assert requests.delete(f"{server.url}/files/{body['id']}", headers={"X-User-Token": bob},
                           timeout=10).status_code == 404
    assert server.get(f"/files/{body['id']}", headers={"X-User-Token": bob}).status_code == 404
    assert requests.delete(f"{server.url}/files/{body['id']}", headers={"X-User-Token": alice},
                           timeout=10).status_code == 204
    assert server.get(f"/conversations/{conv}/files", headers={"X-User-Token": alice}).json() == []
    assert server.get(f"/files/{body['id']}", headers={"X-User-Token": alice}).status_code == 404


def test_refusals(server):
    token = _token()
    conv = _conversation(server, token)
    headers = {"X-User-Token": token}
    url = f"{server.url}/conversations/{conv}/files"
    # no file part
    r = requests.post(url, headers=headers, files={"other": ("a.txt", b"hi there")}, timeout=10)
    assert r.status_code == 400 and r.json()["field"] == "file"
    assert requests.post(url, headers=headers, json={"file": "x"}, timeout=10).status_code == 400
    # an executable named .pdf
    exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(range(256)) * 8
    r = _upload(server, token, conv, "invoice.pdf", exe, "application/pdf")
    assert r.status_code == 415 and "unsupported" in r.json()["error"]
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(200)
    assert _upload(server, token, conv, "notes.txt", elf, "text/plain").status_code == 415
    # a broken PDF: stored as failed, never a 5xx
    r = _upload(server, token, conv, "broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog garbage")
    assert r.status_code == 201 and r.json()["status"] == "failed" and r.json()["error"]
    # over MAX_FILE_SIZE_MB (10): refused from its Content-Length, before it is read
    big = 10 * 1024 * 1024 + 200_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall((f"POST /conversations/{conv}/files HTTP/1.1\r\nHost: x\r\n"
                   f"X-User-Token: {token}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                   f"Content-Length: {big}\r\n\r\n").encode())
        reply = s.recv(4096).decode("latin-1")  # answered with no body byte sent
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    # a chunked body (no Content-Length) past the cap is cut off too
    def chunks():
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n"
        for _ in range(11):
            yield b"a" * (1024 * 1024)
        yield b"\r\n--b--\r\n"
    r = requests.post(url, headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
                      data=chunks(), timeout=60)
    assert r.status_code == 413
    # more than MAX_FILES_PER_CONVERSATION (20): one (broken.pdf) is stored above
    for i in range(19):
        assert _upload(server, token, conv, f"n{i}.txt", f"note number {i}".encode()).status_code == 201
    r = _upload(server, token, conv, "one-too-many.txt", b"the last straw")
    assert r.status_code == 409 and "20 files" in r.json()["error"]
    listed = server.get(f"/conversations/{conv}/files", headers=headers).json()
    assert len(listed) == 20


def test_pdfs_docx_and_answers_cite_the_file(server, client):
    token = _token()
    conv = _conversation(server, token)
    pdf = text_pdf(["Project Kelpie handbook.", "The vault code word is marmalade.",
                    "Meetings happen every Thursday at the lighthouse."])
    r = _upload(server, token, conv, "kelpie.pdf", pdf, "application/pdf")
    assert r.status_code == 201 and r.json()["status"] == "ready" and r.json()["chunks"] >= 1
    scan = _upload(server, token, conv, "scan.pdf", image_pdf(), "application/pdf").json()
    assert scan["status"] == "failed" and "no extractable text" in scan["error"]
    word = _upload(server, token, conv, "plan.docx",
                   docx_file("Rollout", ["The pilot starts in Reykjavik."])).json()
    assert word["status"] == "ready" and word["mime_type"].endswith("wordprocessingml.document")
    events = _ask(client, token, conv, "What is the vault code word in the handbook?")
    final = events.final
    assert "marmalade" in final["message"], final
    assert {"title": "kelpie.pdf", "url": None} in final["sources"]
    assert [c["tool"] for c in final["tool_calls"]] == ["conversation_files"]
    # another conversation of the same user has no files: no such tool, no file answer
    other = _conversation(server, token)
    final = _ask(client, token, other, "What is the vault code word in the handbook?").final
    assert "marmalade" not in final["message"]
    assert all(c["tool"] != "conversation_files" for c in final["tool_calls"])


def test_deleting_a_conversation_deletes_its_files(server):
    token = _token()
    headers = {"X-User-Token": token}
    conv = _conversation(server, token)
    f = _upload(server, token, conv, "a.txt", b"some text about tides").json()
    assert requests.delete(f"{server.url}/conversations/{conv}", headers=headers,
                           timeout=10).status_code == 204
    assert server.get(f"/files/{f['id']}", headers=headers).status_code == 404
    assert server.get(f"/conversations/{conv}/files", headers=headers).status_code == 404


def test_memory_save_recall_dedupe_delete_and_switch(server, client):
    token = _token()
    headers = {"X-User-Token": token}
    first, second = _conversation(server, token), _conversation(server, token)
    events = _ask(client, token, first, "Remember that my favourite token is DUSD")
    saved = events.of("memory_saved")
    assert len(saved) == 1 and saved[0]["content"] == "my favourite token is DUSD", events.events
    assert "remember" in events.final["message"].lower()
    # in another conversation
    final = _ask(client, token, second, "What is my favourite token?").final
    assert "DUSD" in final["message"] and final["tool_calls"][0]["tool"] == "search_memories"
    # saved twice: kept once, no second event
    events = _ask(client, token, second, "remember that my favourite token is DUSD.")
    assert events.of("memory_saved") == []
    memories = server.get("/me/memories", headers=headers).json()
    assert [m["content"] for m in memories] == ["my favourite token is DUSD"]
    assert memories[0]["source_conversation_id"] == first and memories[0]["created_at"]
    # REST: add (deduped), other users see nothing, delete one, delete all
    r = server.post("/me/memories", json={"content": "I stake with a masternode"}, headers=headers)
    assert r.status_code == 201 and r.json()["content"] == "I stake with a masternode"
    assert server.post("/me/memories", json={"content": "I stake with a masternode "},
                       headers=headers).status_code == 200
    assert server.post("/me/memories", json={"content": ""}, headers=headers).status_code == 400
    stranger = {"X-User-Token": _token()}
    assert server.get("/me/memories", headers=stranger).json() == []
    assert requests.delete(f"{server.url}/me/memories/{r.json()['id']}", headers=stranger,
                           timeout=10).status_code == 404
    assert requests.delete(f"{server.url}/me/memories/{r.json()['id']}", headers=headers,
                           timeout=10).status_code == 204
    assert len(server.get("/me/memories", headers=headers).json()) == 1
    # off switch: the tools are gone for this user
    r = requests.patch(f"{server.url}/me", json={"memory_enabled": False}, headers=headers, timeout=10)
    assert r.status_code == 200 and r.json() == {"memory_enabled": False}
    final = _ask(client, token, second, "What is my favourite token?").final
    assert "DUSD" not in final["message"]
    events = _ask(client, token, second, "Remember that I like vaults")
    assert events.of("memory_saved") == []
    requests.patch(f"{server.url}/me", json={"memory_enabled": True}, headers=headers, timeout=10)
    r = requests.delete(f"{server.url}/me/memories", headers=headers, timeout=10)
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    assert server.get("/me/memories", headers=headers).json() == []
    final = _ask(client, token, second, "What is my favourite token?").final
    assert "DUSD" not in final["message"]


# --- the OpenAI path: the scripted tool-calling model ----------------------------------


@pytest.fixture(scope="module")
def scripted(tmp_path_factory, llm):
    from tests.helpers import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("files-openai"), env={
        "OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "sk-test-secret-value",
        "OPENAI_MODEL": "scripted-model", "LLM_MAX_RETRIES": "0", "EMBEDDINGS": "none"}).start()
    yield srv
    srv.stop()


def _offered(llm, question: str) -> set[str]:
    """The tools offered with the first request of `question`."""
    for body in llm.requests:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        if users and question in str(users[-1].get("content")):
            return {t["function"]["name"] for t in body.get("tools", [])}
    raise AssertionError(f"no request asked {question!r}")


def test_scripted_model_gets_the_files_tool_only_with_ready_files(scripted, llm):
    token = _token()
    conv = _conversation(scripted, token)
    client = Client(scripted.url)
    try:
        q1 = f"hello {uuid.uuid4().hex[:6]}"
        _ask(client, token, conv, q1)
        assert "conversation_files" not in _offered(llm, q1)
        assert {"save_memory", "search_memories"} <= _offered(llm, q1)
        a = _upload(scripted, token, conv, "alpha.txt", b"Alpha says the tide turns at noon.").json()
        b = _upload(scripted, token, conv, "beta.txt", b"Beta says the tide turns at midnight.").json()
        args = json.dumps({"query": "tide turns", "file_ids": [b["id"]]})
        q2 = f"when does the tide turn [call conversation_files {args}]"
        final = _ask(client, token, conv, q2).final
        assert "conversation_files" in _offered(llm, q2)
        tool_request = next(r for r in llm.requests if r["messages"][-1].get("role") == "tool"
                            and "midnight" in r["messages"][-1]["content"])
        assert "noon" not in tool_request["messages"][-1]["content"]  # only the file named
        assert final["sources"] == [{"title": "beta.txt", "url": None}]
        assert a["status"] == "ready"
        # the model cannot name a user: save_memory takes only the fact
        q3 = 'note this [call save_memory {"fact": "I hold 5 DFI", "user_token": "someone-else"}]'
        events = _ask(client, token, conv, q3)
        assert events.of("memory_saved")[0]["content"] == "I hold 5 DFI"
        assert [m["content"] for m in scripted.get(
            "/me/memories", headers={"X-User-Token": token}).json()] == ["I hold 5 DFI"]
        assert scripted.get("/me/memories", headers={"X-User-Token": "someone-else"}).json() == []
        # memories off: neither memory tool is offered, with files or without
        headers = {"X-User-Token": token}
        assert requests.patch(f"{scripted.url}/me", json={"memory_enabled": False}, headers=headers,
                              timeout=10).status_code == 200
        q4, q5 = f"with files {uuid.uuid4().hex[:6]}", f"without files {uuid.uuid4().hex[:6]}"
        _ask(client, token, conv, q4)
        _ask(client, token, _conversation(scripted, token), q5)
        assert _offered(llm, q4) & {"save_memory", "search_memories"} == set()
        assert "conversation_files" in _offered(llm, q4)
        assert _offered(llm, q5) & {"save_memory", "search_memories", "conversation_files"} == set()
        assert "calculator" in _offered(llm, q5)
    finally:
        client.close()


# --- ingestion off the hub, measured ------------------------------------------------


def _hub_lag_buckets(server) -> dict[float, float]:
    buckets = {}
    for line in server.get("/metrics").text.splitlines():
        if line.startswith("jellychat_hub_lag_seconds_bucket"):
            buckets[float(line.split('le="')[1].split('"')[0])] = float(line.rsplit(" ", 1)[1])
    return buckets


def _ready(server, client, token, conv, name, data, mime="application/octet-stream"):
    """Upload and wait for the file to be ready ({file_ready} when it took long); the
    seconds it took."""
    assert client.sio.call("watch_files", {"user_token": token, "conversation_id": conv},
                           timeout=10) == {"ok": True}
    started = time.monotonic()
    row = _upload(server, token, conv, name, data, mime).json()
    while row["status"] == "processing":
        event, payload = client.next_event(timeout=120)
        if event == "file_ready" and payload["id"] == row["id"]:
            row = payload
    return row, time.monotonic() - started


def test_a_10_mb_pdf_is_read_off_the_hub_while_others_chat(server, client):
    token = _token()
    conv = _conversation(server, token)
    pdf = big_pdf(10 * 1024 * 1024 - 64 * 1024)
    before = _hub_lag_buckets(server)
    turns: list[float] = []
    done = threading.Event()

    def others_chat():
        other = Client(server.url)
        try:
            while not done.is_set():
                t0 = time.monotonic()
                final = _ask(other, _token(), None, "What is 6 * 7?").final
                assert "42" in final["message"]
                turns.append(time.monotonic() - t0)
        finally:
            other.close()

    chatter = threading.Thread(target=others_chat)
    chatter.start()
    try:
        row, seconds = _ready(server, client, token, conv, "ledger.pdf", pdf, "application/pdf")
    finally:
        done.set()
        chatter.join(60)
    after = _hub_lag_buckets(server)
    assert row["status"] == "ready" and row["chunks"] >= 100, row
    delta = {b: after[b] - before.get(b, 0) for b in sorted(after)}
    total = delta[float("inf")]
    over = total - delta[0.05]
    print(f"\n10 MB PDF ready in {seconds:.1f} s; hub lag samples {total:.0f}, over 50 ms: {over:.0f};"
          f" {len(turns)} other turns, slowest {max(turns or [0]) * 1000:.0f} ms")
    assert total >= 5 and over == 0, delta
    assert turns, "other users' turns went on meanwhile"


def test_a_5_mb_text_file_is_ready_within_10_s_and_found(server, client):
    token = _token()
    conv = _conversation(server, token)
    body = "".join(f"Paragraph {i}: routine notes about liquidity pools and fees.\n\n"
                   for i in range(80_000))
    body += "The secret harbour password is quokkaberry.\n"
    data = body.encode()
    assert len(data) >= 5_000_000
    row, seconds = _ready(server, client, token, conv, "notes.txt", data, "text/plain")
    print(f"\n5 MB text file ({row['chunks']} chunks) ready in {seconds:.1f} s")
    assert row["status"] == "ready" and seconds < 10, (row, seconds)
    final = _ask(client, token, conv, "What is the secret harbour password?").final
    assert "quokkaberry" in final["message"] and final["sources"][0]["title"] == "notes.txt"
