"""Word-level differences for the evidence shown side by side: pure function tests."""

from __future__ import annotations

import random
import re
import time
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from auditor.web.diff import EXACT_LIMIT, Segment, SideBySide, tokens, word_diff


def marked(segments: list[Segment]) -> list[str]:
    return [s.text for s in segments if s.op != "equal"]


def joined(segments: list[Segment]) -> str:
    return "".join(s.text for s in segments)


def test_identical_texts_have_nothing_marked() -> None:
    text = "The capital of France is Paris.\nIt is on the Seine."
    diff = word_diff(text, text)
    assert diff == SideBySide([Segment(text, "equal")], [Segment(text, "equal")])
    assert diff.identical


def test_a_changed_word_is_deleted_on_one_side_and_inserted_on_the_other() -> None:
    diff = word_diff("The capital of France is Paris.", "The capital of France is Lyon.")
    assert diff.reference == [
        Segment("The capital of France is ", "equal"),
        Segment("Paris", "delete"),
        Segment(".", "equal"),
    ]
    assert diff.provider == [
        Segment("The capital of France is ", "equal"),
        Segment("Lyon", "insert"),
        Segment(".", "equal"),
    ]
    assert not diff.identical


def test_insertions_mark_only_the_provider() -> None:
    diff = word_diff("Paris is the capital.", "What a great question! Paris is the capital.")
    assert marked(diff.reference) == []
    assert marked(diff.provider) == ["What a great question!"]
    assert [s.op for s in diff.provider] == ["insert", "equal"]
    assert diff.provider[1].text == " Paris is the capital.", "the space after it is not marked"


def test_deletions_mark_only_the_reference() -> None:
    diff = word_diff("one two three four", "one four")
    assert marked(diff.reference) == ["two three"]
    assert marked(diff.provider) == []


def test_empty_texts() -> None:
    assert word_diff("", "") == SideBySide([], [])
    assert word_diff("", "").identical
    assert word_diff("", "abc") == SideBySide([], [Segment("abc", "insert")])
    assert word_diff("abc def", "") == SideBySide([Segment("abc def", "delete")], [])


def test_whitespace_alone_is_no_difference() -> None:
    diff = word_diff("a\n\nb  c", "a b c")
    assert diff.identical
    assert joined(diff.reference) == "a\n\nb  c" and joined(diff.provider) == "a b c"
    assert word_diff("  lead", "lead").identical


def test_unicode_words_scripts_and_emoji_stay_whole() -> None:
    accents = word_diff("héllo wörld", "héllo world")
    assert marked(accents.reference) == ["wörld"] and marked(accents.provider) == ["world"]

    combining = word_diff("cafe\u0301 au lait", "cafe au lait")
    assert marked(combining.reference) == ["cafe\u0301"], "the accent is not cut from its e"

    # No spaces between Japanese words: one character is one word.
    cjk = word_diff("東京は日本の首都です", "京都は日本の首都です")
    assert marked(cjk.reference) == ["東"] and marked(cjk.provider) == ["都"]

    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    other = "\U0001f468\u200d\U0001f469\u200d\U0001f466"
    emoji = word_diff(
        f"{family} family \U0001f44d\U0001f3fd", f"{other} family \U0001f44d\U0001f3fd"
    )
    assert marked(emoji.reference) == [family] and marked(emoji.provider) == [other]
    assert tokens("\U0001f44d\U0001f3fd!") == ["\U0001f44d\U0001f3fd", "!"]


def test_long_texts_are_fast_and_precise() -> None:
    rng = random.Random(7)
    vocabulary = [f"w{i}" for i in range(60)]
    words = [rng.choice(vocabulary) for _ in range(20_000)]  # the same start and end are cheap
    changed = [*words]
    changed[2500] = "CHANGED"
    del changed[6000:6003]
    t0 = time.perf_counter()
    diff = word_diff(" ".join(words), " ".join(changed))
    assert marked(diff.reference) == [words[2500], " ".join(words[6000:6003])]
    assert marked(diff.provider) == ["CHANGED"]

    # Differing throughout, over the limit: coarser but quick, and still the texts.
    other = [rng.choice(vocabulary[:5]) for _ in range(EXACT_LIMIT + 1000)]
    diff = word_diff(" ".join(words), " ".join(other))
    assert joined(diff.reference) == " ".join(words)
    assert joined(diff.provider) == " ".join(other)
    assert time.perf_counter() - t0 < 5.0


def test_segments_are_merged_and_never_empty() -> None:
    diff = word_diff("a b c d e", "a x y d e")
    for side in (diff.reference, diff.provider):
        assert all(s.text for s in side)
        assert all(a.op != b.op for a, b in pairwise(side))
    assert marked(diff.reference) == ["b c"] and marked(diff.provider) == ["x y"]


texts = st.text(
    alphabet=st.sampled_from(
        [*"ab .,!\n\t", "é", "\u0301", "東", "京", "\U0001f468", "\u200d", "\U0001f3fd", "ß"]
    ),
    max_size=40,
) | st.text(max_size=40)


@given(texts, texts)
def test_each_side_joins_back_to_its_text(reference: str, provider: str) -> None:
    diff = word_diff(reference, provider)
    assert joined(diff.reference) == reference
    assert joined(diff.provider) == provider
    assert {s.op for s in diff.reference} <= {"equal", "delete"}
    assert {s.op for s in diff.provider} <= {"equal", "insert"}
    assert all(s.text.strip() for s in (*diff.reference, *diff.provider) if s.op != "equal"), (
        "a highlight holds more than whitespace"
    )

    def same(segments: list[Segment]) -> str:
        return re.sub(r"\s", "", "".join(s.text for s in segments if s.op == "equal"))

    assert same(diff.reference) == same(diff.provider), "what is unmarked is the same on both"
    if reference.split() == provider.split():
        assert diff.identical, "the same words: only whitespace differs"
    if diff.identical:
        assert re.sub(r"\s", "", reference) == re.sub(r"\s", "", provider)


@given(texts)
def test_tokens_cover_the_text(text: str) -> None:
    assert "".join(tokens(text)) == text
    assert word_diff(text, text).identical
