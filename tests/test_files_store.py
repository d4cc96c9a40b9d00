"""Files and memories in the store, on both backends (the SQL functions of
supabase/migrations/*_files_memory.sql): scoping, the file cap, search, cascade,
dedupe, and that memories never reach knowledge-base search."""

from __future__ import annotations

import pytest

from storage import files as fs
from storage.base import Busy, Chunk, KnowledgeDocument, NotFound
from tests.test_store_contract import BACKENDS, GREETING, backends, both  # noqa: F401 - fixtures


def _conversation(store, token):
    return store.create_conversation(token, GREETING)["id"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_files_are_scoped_capped_searched_and_deleted(both, backend):  # noqa: F811
    store = both[backend].store
    conv = _conversation(store, "alice")
    other = _conversation(store, "bob")
    with pytest.raises(NotFound):
        fs.add_file(store, "bob", conv, "a.txt", "text/plain", 10, 3)
    first = fs.add_file(store, "alice", conv, "notes.txt", "text/plain", 42, 2)
    assert first["status"] == "processing" and first["chunks"] == 0
    assert fs.run_context(store, "alice", conv)["files"] == []  # not ready yet
    vector = [1.0, 0.0, 0.0]
    done = fs.finish_file(store, first["id"], "ready", [
        {"content": "The launch code is pineapple.", "metadata": {"section": "one"}, "embedding": vector},
        {"content": "Unrelated words about weather.", "metadata": {}, "embedding": [0.0, 1.0, 0.0]},
    ], embedder="test")
    assert done["status"] == "ready" and done["chunks"] == 2
    second = fs.add_file(store, "alice", conv, "scan.pdf", "application/pdf", 99, 2)
    fs.finish_file(store, second["id"], "failed", [], error="no text")
    with pytest.raises(Busy):
        fs.add_file(store, "alice", conv, "third.txt", "text/plain", 1, 2)
    listed = fs.list_files(store, "alice", conv)
    assert [(f["name"], f["status"], f["error"]) for f in listed] == [
        ("notes.txt", "ready", None), ("scan.pdf", "failed", "no text")]
    with pytest.raises(NotFound):
        fs.list_files(store, "bob", conv)
    assert fs.run_context(store, "alice", conv)["files"] == [{"id": first["id"], "name": "notes.txt"}]
    hits = fs.search_files(store, conv, "what is the launch code?")
    assert hits[0]["name"] == "notes.txt" and "pineapple" in hits[0]["content"]
    hits = fs.search_files(store, conv, "zzz", embedding=[0.9, 0.1, 0.0])
    assert hits[0]["content"].startswith("The launch code")
    assert fs.search_files(store, other, "launch code") == []  # another conversation
    assert fs.search_files(store, conv, "launch code", file_ids=[second["id"]]) == []
    with pytest.raises(NotFound):
        fs.delete_file(store, "bob", first["id"])
    fs.delete_file(store, "alice", first["id"])
    assert both[backend].execute("select count(*) from conversation_file_chunks")[0][0] == 0
    assert fs.search_files(store, conv, "launch code") == []
    store.delete_conversation("alice", conv)  # cascade
    assert both[backend].execute("select count(*) from conversation_files")[0][0] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_conversation_delete_drops_its_files(both, backend):  # noqa: F811
    store = both[backend].store
    conv = store.get_conversation("carol")
    if conv is None:
        store.create_run("carol", GREETING, None, None, "enqueue", "h:1:x", "m")
        conv = store.get_conversation("carol")
    f = fs.add_file(store, "carol", conv["id"], "a.md", "text/markdown", 3, 5)
    fs.finish_file(store, f["id"], "ready", [{"content": "alpha"}])
    store.delete_conversation("carol", conv["id"])
    assert both[backend].execute("select count(*) from conversation_file_chunks")[0][0] == 0
    assert fs.list_files(store, "carol", conv["id"]) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_memories_dedupe_search_delete_and_switch(both, backend):  # noqa: F811
    store = both[backend].store
    saved = fs.save_memory(store, "dave", GREETING, "My favourite token is DUSD.")
    again = fs.save_memory(store, "dave", GREETING, "  my favourite token is   DUSD ")
    assert saved["created"] and not again["created"] and again["id"] == saved["id"]
    fs.save_memory(store, "dave", GREETING, "I run a masternode", embedding=[0.0, 1.0],
                   embedder="test")
    fs.save_memory(store, "erin", GREETING, "My favourite token is BTC")
    assert [m["content"] for m in fs.list_memories(store, "dave")] == [
        "I run a masternode", "My favourite token is DUSD."]
    found = fs.search_memories(store, "dave", "what is my favourite token?")
    assert [m["content"] for m in found] == ["My favourite token is DUSD."]
    assert fs.search_memories(store, "dave", "zzz", embedding=[0.1, 0.9])[0]["content"] == \
        "I run a masternode"
    # never in knowledge-base search
    store.replace_document("wiki", KnowledgeDocument("a", "A", "h"), [Chunk("tokens of DeFiChain")])
    assert all("DUSD" not in c.content for c in store.search("wiki", "favourite token DUSD"))
    with pytest.raises(NotFound):
        fs.delete_memory(store, "erin", saved["id"])
    fs.delete_memory(store, "dave", saved["id"])
    assert [m["content"] for m in fs.list_memories(store, "dave")] == ["I run a masternode"]
    assert fs.clear_memories(store, "dave") == 1
    assert fs.list_memories(store, "dave") == [] and len(fs.list_memories(store, "erin")) == 1
    assert fs.preferences(store, "dave") == {"memory_enabled": True}
    fs.set_memory_enabled(store, "dave", GREETING, False)
    assert fs.preferences(store, "dave") == {"memory_enabled": False}
    conv = _conversation(store, "dave")
    assert fs.run_context(store, "dave", conv)["memory_enabled"] is False


def test_files_and_memory_modules_do_not_import_flask():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, agent.files, tools.files, knowledge.uploads, storage.files; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('flask', 'flask_socketio')]; "
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("data", "expected"), [
    (b"%PDF-1.7\n...", "application/pdf"),
    (b"<!DOCTYPE html><html><body>x</body></html>", "text/html"),
    (b"  <html lang='en'><p>x</p></html>", "text/html"),
    (b"# Heading\n\nSome text.", "text/markdown"),
    (b"Just words, no markup at all.", "text/plain"),
    ("Grüße aus Zürich".encode("utf-16"), "text/plain"),
])
def test_types_come_from_the_content(data, expected):
    from knowledge.uploads import detect

    assert detect(data) == expected


@pytest.mark.parametrize("data", [
    b"MZ\x90\x00\x03\x00\x00\x00" + bytes(300),  # a Windows executable
    b"\x7fELF\x02\x01\x01" + bytes(300),  # a Linux one
    b"PK\x03\x04" + bytes(100),  # a zip that is no Word file
    b"\x89PNG\r\n\x1a\n" + bytes(100),  # an image
    b"",
])
def test_other_types_are_refused(data):
    from knowledge.uploads import Unsupported, detect

    with pytest.raises(Unsupported):
        detect(data)
