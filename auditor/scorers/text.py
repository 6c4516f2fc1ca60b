"""Small text helpers shared by the tone, instruction and template scorers.

Everything here is deliberately simple and documented, because the scores only need to be
computed the same way for a provider and for the reference: a heuristic that is slightly
wrong but identical on both sides still exposes a difference in behaviour.
"""

from __future__ import annotations

import re

# A word is a run of letters or digits, possibly joined by apostrophes or hyphens
# ("don't", "state-of-the-art", "3.5" counts as two). Scripts written without spaces
# (Chinese, Japanese) count a whole run as one word: an approximation.
WORD = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")

# A fenced code block: ``` or ~~~ at the start of a line, up to the matching closing fence
# or, for an answer cut off by max_tokens, to the end of the text.
FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*\n?.*?(?:^[ \t]{0,3}\1[ \t]*$|\Z)", re.M | re.S)

# A sentence ends at . ! ? or an ellipsis, with any closing quotes, brackets or emphasis,
# followed by whitespace.
_SENTENCE_END = re.compile(r"([.!?\u2026][\"'\u201d\u2019)\]*_]*)[ \t]+")
# List markers at the start of a line, which are not sentences of their own ("1. Start").
_LIST_MARKER = re.compile(r"^[ \t]*(?:[-*+\u2022]|\d{1,3}[.)])[ \t]+", re.M)
_SENTENCE_PUNCTUATION = ".!?\u2026"

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201b": "'"})

# --- emoji -------------------------------------------------------------------------------
# Pictographs that are emoji on their own (Unicode Emoji_Presentation, supplementary planes).
_PICTO = (
    "\U0001f004\U0001f0cf\U0001f18e\U0001f191-\U0001f19a\U0001f201\U0001f21a\U0001f22f"
    "\U0001f232-\U0001f236\U0001f238-\U0001f23a\U0001f250\U0001f251"
    "\U0001f300-\U0001f5ff\U0001f600-\U0001f64f\U0001f680-\U0001f6ff\U0001f7e0-\U0001f7f0"
    "\U0001f900-\U0001f9ff\U0001fa70-\U0001faff"
)
# Symbols of the Basic Multilingual Plane shown as emoji by default (Emoji_Presentation=Yes).
_BMP_EMOJI = (
    "\u231a\u231b\u23e9-\u23ec\u23f0\u23f3\u25fd\u25fe\u2614\u2615\u2648-\u2653\u267f\u2693"
    "\u26a1\u26aa\u26ab\u26bd\u26be\u26c4\u26c5\u26ce\u26d4\u26ea\u26f2\u26f3\u26f5\u26fa"
    "\u26fd\u2705\u270a\u270b\u2728\u274c\u274e\u2753-\u2755\u2757\u2795-\u2797\u27b0\u27bf"
    "\u2b1b\u2b1c\u2b50\u2b55"
)
# Text symbols that become emoji when followed by the variation selector U+FE0F (e.g. the
# heart U+2764, the sun U+2600, the check mark U+2714): arrows, misc symbols, dingbats.
_TEXT_SYMBOLS = (
    "\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u21aa\u2300-\u23ff\u25aa-\u27bf"
    "\u2934\u2935\u2b05-\u2b55\u3030\u303d\u3297\u3299"
)
_MODIFIERS = "\U0001f3fb-\U0001f3ff"  # skin tones: part of the emoji before them
_TAGS = "\U000e0020-\U000e007f"  # subdivision flags (England, Scotland, Wales)
_BASE = rf"(?:[{_PICTO}{_BMP_EMOJI}]\ufe0f?|[{_TEXT_SYMBOLS}]\ufe0f)"
_ELEMENT = rf"{_BASE}[{_MODIFIERS}]?[{_TAGS}]*"
EMOJI = re.compile(
    r"[\U0001f1e6-\U0001f1ff]{1,2}"  # a flag is two regional indicators
    r"|[0-9#*]\ufe0f?\u20e3"  # keycaps: 1️⃣ #️⃣
    rf"|{_ELEMENT}(?:\u200d{_ELEMENT})*"  # joined sequences (families, professions) count once
)


def normalise(text: str) -> str:
    """Typographic apostrophes to ASCII and runs of whitespace to one space, so that the
    phrase lists can be written once with plain "'" and single spaces."""
    return " ".join(text.translate(_APOSTROPHES).split())


def count_words(text: str) -> int:
    return sum(1 for _ in WORD.finditer(text))


def strip_code(text: str, placeholder: str = "") -> str:
    """The text with each fenced code block replaced by `placeholder`, so that the line
    structure around it survives."""
    return FENCE.sub(placeholder, text)


def sentences(text: str) -> list[str]:
    """Split prose into sentences: after . ! ? or an ellipsis (and any closing quote or
    bracket) followed by spaces, and at line breaks (list items and headings are sentences
    of their own). Pieces with no letter or digit (a lone emoji, a horizontal rule) are not
    sentences. Abbreviations such as "e.g. this" are split wrongly, identically for every
    provider."""
    pieces = _SENTENCE_END.sub("\\1\n", _LIST_MARKER.sub("", text)).splitlines()
    return [s.strip() for s in pieces if re.search(r"[^\W_]", s)]


def sentence_end(sentence: str) -> str:
    """The sentence without whatever trails its last letter, digit or punctuation: quotes,
    brackets, markdown emphasis, emoji and other symbols. What is left ends with "!" or "?"
    if the sentence does. (A loop rather than a regex, which would be quadratic on a long
    run of symbols.)"""
    end = len(sentence)
    while end and not (
        sentence[end - 1] in _SENTENCE_PUNCTUATION
        or (sentence[end - 1].isalnum() and sentence[end - 1] != "_")
    ):
        end -= 1
    return sentence[:end]


def count_emoji(text: str) -> int:
    return sum(1 for _ in EMOJI.finditer(text))
