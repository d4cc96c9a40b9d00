"""Long histories through the real server and the scripted model (issue 26): past
MAX_HISTORY_TOKENS the model's request carries the conversation's summary and the
newest messages within the budget, while the stored transcript stays complete and
GET /conversations/<id> shows the summary."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately

from agent.history import SUMMARY_INTRO, History
from tests.helpers import ServerProcess

BUDGET = 300  # MAX_HISTORY_TOKENS for the server below
TURNS = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory, llm):
    srv = ServerProcess(
        tmp_path_factory.mktemp("history-data"),
        env={"OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "sk-test-secret-value",
             "OPENAI_MODEL": "scripted-model", "LLM_MAX_RETRIES": "0",
             "MAX_HISTORY_TOKENS": str(BUDGET), "MEMORY_MESSAGES": "10"},
    ).start()
    yield srv
    srv.stop()


def question(n: int) -> str:
    # about 60 tokens each: the memory alone would outgrow the budget in a few turns
    return f"Question {n}: " + " ".join(f"topic{n}-{i}" for i in range(30))


def past_of(body: dict) -> list:
    """The conversation's past in a model request: neither the system prompt nor the turn."""
    mapped = {"user": HumanMessage, "assistant": AIMessage}
    return [mapped[m["role"]](m["content"]) for m in body["messages"][:-1]
            if m["role"] in mapped]


def test_a_long_conversation_stays_within_the_budget(server, llm):
    conversation = None
    for n in range(TURNS):
        body = {"user_token": "long-talker", "message": question(n)}
        if conversation:
            body["conversation_id"] = conversation
        response = server.post("/user_message", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "succeeded"
        conversation = response.json()["conversation_id"]

    asked = {}
    for request in llm.requests:
        last = request["messages"][-1]
        if last.get("role") == "user" and last["content"].startswith("Question "):
            asked[last["content"]] = request
    assert len(asked) == TURNS
    summarised = 0
    for n in range(TURNS):
        past = past_of(asked[question(n)])
        assert count_tokens_approximately(past) <= BUDGET, n
        if past and past[0].content.startswith(SUMMARY_INTRO):
            summarised += 1
    assert summarised >= 3  # the later turns saw a summary, not the old messages
    last = past_of(asked[question(TURNS - 1)])
    assert last[0].content.startswith(SUMMARY_INTRO + "Scripted summary of")
    # the summary request itself is small: a budget, and the messages it folds in
    summaries = [r for r in llm.requests
                 if r["messages"][-1]["content"].startswith("Update the running summary")]
    assert summaries and all(r["max_tokens"] <= BUDGET // 4 for r in summaries)
    # incremental: no message is folded into two summaries
    folded = [line for r in summaries
              for line in r["messages"][-1]["content"].split("New messages:\n", 1)[1].splitlines()]
    assert len(folded) == len(set(folded))

    shown = server.get(f"/conversations/{conversation}",
                       headers={"X-User-Token": "long-talker"})
    assert shown.status_code == 200, shown.text
    conversation = shown.json()
    assert conversation["summary"].startswith("Scripted summary of")
    humans = [m["content"] for m in conversation["messages"] if m["type"] == "human"]
    assert humans == [question(n) for n in range(TURNS)]  # the transcript stays complete
    assert len([m for m in conversation["messages"] if m["type"] == "jelly"]) == TURNS + 1


def test_the_offline_summary_is_extractive_and_within_its_budget():
    history = History(200, 10)
    fold = []
    for n in range(20):
        fold += [{"id": 2 * n, "type": "human", "content": f"What is thing {n}?"},
                 {"id": 2 * n + 1, "type": "jelly",
                  "content": f"Thing {n} is a coin. It has many uses. " * 5}]
    summary = history.summarise("", fold)
    assert summary.endswith("Jelly said: Thing 19 is a coin.")  # the newest stay
    assert "thing 0?" not in summary  # the oldest go first
    assert count_tokens_approximately([HumanMessage(summary)]) <= history.summary_tokens


def test_the_model_input_keeps_whole_turns_within_the_budget():
    history = History(100, 50)
    memory = []
    for n in range(10):
        memory += [{"id": 2 * n, "type": "human", "content": f"question {n} " + "x " * 20},
                   {"id": 2 * n + 1, "type": "jelly", "content": f"answer {n} " + "y " * 20}]
    seen = history.model_input({"memory": memory, "summary": "earlier: questions 0 to 3"})
    assert seen[0].content == SUMMARY_INTRO + "earlier: questions 0 to 3"
    assert isinstance(seen[1], HumanMessage)  # never an answer without its question
    assert count_tokens_approximately(seen) <= 100
    assert seen[-1].content.startswith("answer 9")
    assert len(History(0, 50).model_input({"memory": memory})) == 20  # 0: no limit
