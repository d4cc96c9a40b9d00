"""The parsing of a model's suggestions and the offline ones from related pages."""

from agent.suggestions import from_sources, parse


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
