"""Word-level differences between two texts, for showing them side by side.

`word_diff(reference, provider)` splits both texts into words (each with the whitespace that
follows it), matches the words with `difflib.SequenceMatcher` and returns the two texts cut
into segments: `equal` where they agree, `delete` for what only the reference says and
`insert` for what only the provider says. Joining a side's segments gives its text back,
character for character. Pure: no I/O, no HTML (the template escapes and marks up).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Literal

Op = Literal["equal", "delete", "insert"]

# Scripts written without spaces: one character is one word.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
# Marks that belong to the character before them: combining accents, variation selectors,
# emoji skin tones and tag characters (kept whole, so no highlight cuts a character apart).
_MARK = (
    "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe00-\ufe0f\ufe20-\ufe2f"
    "\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f"
)
_TOKEN = re.compile(
    rf"\s+"  # leading whitespace (every other token carries its trailing whitespace)
    rf"|(?:[{_CJK}][{_MARK}]*"  # one ideograph or kana
    rf"|(?:(?![{_CJK}])\w|[{_MARK}])+"  # a word
    rf"|[^\w\s][{_MARK}]*(?:\u200d[^\w\s][{_MARK}]*)*"  # a symbol, emoji sequences whole
    rf")\s*"
)
# Beyond this many differing words a side (once the common start and end are set aside),
# popular words stop anchoring matches (difflib's autojunk): the comparison stays fast on
# long texts, at the cost of a coarser diff.
EXACT_LIMIT = 5000


@dataclass(frozen=True)
class Segment:
    text: str
    op: Op


@dataclass(frozen=True)
class SideBySide:
    """The reference's text and the provider's, each cut into segments."""

    reference: list[Segment] = field(default_factory=list)
    provider: list[Segment] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return all(s.op == "equal" for s in (*self.reference, *self.provider))


def tokens(text: str) -> list[str]:
    """The text as words, each with its trailing whitespace; `"".join(tokens(t)) == t`."""
    return _TOKEN.findall(text)


def word_diff(reference: str, provider: str) -> SideBySide:
    ref, prov = tokens(reference), tokens(provider)
    # Words are compared without their whitespace: a changed line break is no difference.
    a, b = [t.strip() for t in ref], [t.strip() for t in prov]
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    middle = SequenceMatcher(
        None,
        a[start : len(a) - end],
        b[start : len(b) - end],
        autojunk=max(len(a), len(b)) - start - end > EXACT_LIMIT,
    )
    left: list[Segment] = []
    right: list[Segment] = []
    _append(left, "".join(ref[:start]), "equal")
    _append(right, "".join(prov[:start]), "equal")
    for tag, i1, i2, j1, j2 in middle.get_opcodes():
        i1, i2, j1, j2 = i1 + start, i2 + start, j1 + start, j2 + start
        if tag == "equal":
            _append(left, "".join(ref[i1:i2]), "equal")
            _append(right, "".join(prov[j1:j2]), "equal")
        else:  # replace, delete or insert
            _append(left, "".join(ref[i1:i2]), "delete")
            _append(right, "".join(prov[j1:j2]), "insert")
    _append(left, "".join(ref[len(ref) - end :]), "equal")
    _append(right, "".join(prov[len(prov) - end :]), "equal")
    return SideBySide(reference=left, provider=right)


def _append(segments: list[Segment], text: str, op: Op) -> None:
    """Add a segment, merged into the last one when they have the same op; a changed word's
    trailing whitespace is left unmarked, so highlights end at the word."""
    if not text:
        return
    if op != "equal":
        word = text.rstrip()
        if word:
            _append_one(segments, word, op)
        _append_one(segments, text[len(word) :], "equal")
        return
    _append_one(segments, text, op)


def _append_one(segments: list[Segment], text: str, op: Op) -> None:
    if not text:
        return
    if segments and segments[-1].op == op:
        segments[-1] = Segment(segments[-1].text + text, op)
    else:
        segments.append(Segment(text, op))
