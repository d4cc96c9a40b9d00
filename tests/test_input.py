"""web/input.py: JSON that parses but cannot be handled or stored is InvalidInput."""

import pytest

from agent.turn import InvalidInput
from web.input import MAX_DEPTH, check_payload, loads_checked


def test_deeply_nested_json_is_invalid_input_not_recursion_error():
    with pytest.raises(InvalidInput, match="nested too deeply"):
        loads_checked("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidInput, match="nested too deeply"):
        loads_checked("[" * 100_000)  # unterminated too
    with pytest.raises(InvalidInput, match="nested too deeply"):
        loads_checked("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert loads_checked('{"a": [[["ok"]]]}') == {"a": [[["ok"]]]}


@pytest.mark.parametrize("raw, field", [
    ('{"message": "a \\ud800 b"}', "message"),
    ('{"message": "\\udfff"}', "message"),
    ('{"user_token": "x", "meta": {"tags": ["ok", "\\udc00"]}}', "meta.tags[1]"),
])
def test_lone_surrogates_are_refused_and_named(raw, field):
    with pytest.raises(InvalidInput) as caught:
        loads_checked(raw)
    assert caught.value.field == field


def test_valid_text_passes_including_astral_characters():
    assert loads_checked('{"message": "\\ud83d\\ude00 jelly 🪼"}') == {"message": "😀 jelly 🪼"}
    check_payload(["token", "message", None])
    with pytest.raises(InvalidInput):
        check_payload({"\ud800": "key"})
    with pytest.raises(InvalidInput, match="not valid JSON"):
        loads_checked(b"\xff\xfe{")
