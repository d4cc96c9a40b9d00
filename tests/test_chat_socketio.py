"""The chat protocol over a real Socket.IO websocket to the real server process."""

import uuid

import pytest

from tests.helpers import ChatClient


def token() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


def test_calculator_turn_event_order(chat_client):
    result = chat_client.ask(token(), "What is 20000 divided by 33.3?")
    names = result.names()
    assert names[0] == "tool_start"
    assert result.of("tool_start")[0]["tool_name"] == "Let's do the math together 🧮"
    first_token = names.index("final_answer_token")
    assert names.index("tool_start") < first_token
    assert names[-1] == "final_message" and names.count("final_message") == 1
    assert "600.6" in result.final["message"]
    assert result.tokens == result.final["message"]
    assert result.final["sources"] == []


def test_positional_arguments_are_accepted(chat_client):
    result = chat_client.send(token(), "what is 6 * 7", "positional-app")
    assert "42" in result.final["message"]


def test_small_talk_uses_no_tool(chat_client):
    result = chat_client.ask(token(), "Hello Jelly!")
    assert result.of("tool_start") == []
    assert result.tokens == result.final["message"]
    assert "Jelly" in result.final["message"] or "Hello" in result.final["message"]


def test_huge_power_gets_clear_error_quickly(chat_client):
    result = chat_client.ask(token(), "what is 9**9**9**9", timeout=10)
    assert "digits" in result.final["message"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"message": "hi", "application": "a"}, "user_token"),
        ({"user_token": "", "message": "hi"}, "user_token"),
        ({"user_token": "u", "message": ""}, "message"),
        ({"user_token": "u", "message": "   "}, "message"),
        ({"user_token": "u", "message": 42}, "message"),
        ({"user_token": ["x"], "message": "hi"}, "user_token"),
        ({"user_token": "u", "message": "x" * 10001}, "message"),
        ({"user_token": "u", "message": "hi", "application": 7}, "application"),
    ],
)
def test_bad_input_gets_error_event(chat_client, server, payload, field):
    before = server.get("/human_message_count").json()["status"]
    result = chat_client.send(payload)
    assert result.names() == ["error"]
    assert field in result.of("error")[0]["error"]
    assert server.get("/human_message_count").json()["status"] == before


def test_wrong_shape_and_unknown_event(chat_client):
    assert chat_client.send("just a string").names() == ["error"]
    assert chat_client.send([1, 2, 3]).names() == ["error"]
    unknown = chat_client.send({"x": 1}, event="shout")
    assert "unknown event 'shout'" in unknown.of("error")[0]["error"]
    # the connection still works afterwards
    assert "42" in chat_client.ask(token(), "6*7").final["message"]


def test_events_go_only_to_the_caller(server):
    alice, bob = ChatClient(server.url), ChatClient(server.url)
    try:
        result = alice.ask(token(), "what is 2 + 2")
        assert "4" in result.final["message"]
        assert bob.inbox.empty()
    finally:
        alice.close()
        bob.close()


def test_memory_follow_up_sees_earlier_turn(chat_client):
    user = token()
    chat_client.ask(user, "What is 20000 divided by 33.3?")
    follow_up = chat_client.ask(user, "What did I just ask?")
    assert "20000 divided by 33.3" in follow_up.final["message"]
    times_two = chat_client.ask(user, "multiply that by 2")
    assert "1201.2" in times_two.final["message"]
