def test_calculator_question_over_socketio(chat_client):
    result = chat_client.ask("smoke-user", "What is 20000 divided by 33.3?")
    names = result.names()
    assert names[0] == "tool_start"
    assert names[-1] == "final_message"
    assert "600.6" in result.final["message"]
    assert result.tokens == result.final["message"]
