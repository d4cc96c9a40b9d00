"""The parsing of a model's suggestions and the offline ones from related pages."""

from agent.suggestions import from_sources, parse, parse_with_title


def test_parse_keeps_three_clean_questions():
    text = '1. What is DFI?\n- "How do vaults work?"\n\n2) What is DFI?\n(3) Wie hoch ist der Block?\n5. x'
    assert parse(text) == ["What is DFI?", "How do vaults work?", "Wie hoch ist der Block?"]
    assert parse("") == [] and parse("a" * 400) == []


def test_offline_suggestions_are_the_related_pages():
    sources = [{"title": "Masternodes", "url": "u1"}, {"title": "Masternodes", "url": "u2"},
               {"title": "  Vaults  and loans", "url": None}, {"title": None, "url": "u3"},
               {"title": "DEX"}, {"title": "Governance"}]
    assert from_sources(sources) == ["Tell me more about Masternodes",
                                     "Tell me more about Vaults and loans",
                                     "Tell me more about DEX"]
    assert from_sources([]) == []


def test_the_title_line_of_a_first_answers_call():
    text = '**Title:** "Vaults and loans"\n1. What is a vault?\n- How do loans work?'
    assert parse_with_title(text) == ("Vaults and loans", ["What is a vault?", "How do loans work?"])
    assert parse_with_title("title: Staking DFI\nWhat is staking?") == ("Staking DFI", ["What is staking?"])
    # no title line: the questions alone, and the conversation keeps the question's words
    assert parse_with_title("1. What is DFI?") == ("", ["What is DFI?"])
