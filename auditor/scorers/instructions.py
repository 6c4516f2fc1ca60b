"""Format instructions: did the answer do what the prompt asked about its form?

A model that "can't shut up and just answer with 1 number" is a different model, or the
right one behind a broken template. Each metric is 1.0 (followed), 0.0 (not followed) or
None (cannot tell), and is only produced for cases that ask for it:

- `follows_one_number`, asked by "answer with one number", "only the number", "number
  only": the stripped answer is one number, optionally with a final period ("42", "-3.5",
  "1,000"). Units, words or markdown around it ("42 km", "**42**") do not follow.
- `follows_one_word`, asked by "in one word", "a single word", "one-word answer": one word
  (letters or digits, inner ' or -), optionally in quotes and with a final "." or "!".
- `follows_yes_no`, asked by "answer yes or no", "just yes or no", "(yes/no)": "Yes" or
  "No", optionally with a final "." or "!" ("Yes, because..." does not follow).
- `follows_json_only`, asked by "JSON only", "only JSON", "respond in JSON" or a
  `response_format` of type json_object/json_schema: the whole stripped answer parses as
  JSON. NaN/Infinity are not JSON, and a fenced ```json block is not "only JSON".
- `follows_word_limit`, asked by "at most / no more than / up to / within N words" (<= N),
  "under / fewer than / less than N words" (< N) or "N words or less": the answer's word
  count (as in the tone scorer) is within the limit. Digits only, not "ten words".
- `follows_language`, asked by "answer / respond / reply / write in French" (English,
  French, Spanish, German, Italian, Portuguese, Dutch): an approximate guess from common
  function words and a few telltale letters (ñ, ß, ã, ...) names that language. None when
  the answer has too few clues, as a one-word answer usually does.
- `follows_uppercase`, asked by "answer in uppercase / all caps / capital letters" or
  "capital letters only": no lowercase letter. None when the answer has no cased letter.

Only English phrasings are detected; cases in other languages should declare their
instructions in metadata. Instructions are read from the case, first match wins:
1. `metadata.instruction` (a name or a list of names, e.g. `instruction: one_number`;
   arguments in `metadata.word_limit: 50` and `metadata.language: fr`), authoritative
   even when empty (`instruction: []` turns detection off);
2. tags `instruction:<name>` (e.g. `instruction:yes_no`), also authoritative;
3. otherwise the `DETECTORS` regexes below, run on the system messages and the last user message.
   `response_format: {type: json_object | json_schema}` also asks for JSON only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from auditor.records import CompletionResponse, ProbeCase, ScoreRecord
from auditor.scorers.base import Scorer, scorers
from auditor.scorers.expect import is_only_number
from auditor.scorers.text import count_words, normalise

NAMES = (
    "one_number",
    "one_word",
    "yes_no",
    "json_only",
    "word_limit",
    "language",
    "uppercase",
)


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(rf"\b(?:{p})" for p in patterns), re.IGNORECASE)


_ANSWER = r"answer|respond|reply|output|return|give"
DETECTORS: dict[str, re.Pattern[str]] = {
    "one_number": _rx(
        rf"(?:{_ANSWER})\s+(?:\w+\s+){{0,2}}?(?:with|using|in)\s+(?:only\s+|just\s+|exactly\s+)?"
        r"(?:one|a\s+single|a|1)\s+(?:number|integer|numeral)\b",
        r"(?:only|just)\s+(?:the|a|one|a\s+single)\s+(?:number|integer|numeral)\b",
        r"(?:number|integer|digits?)\s+only\b",
        r"(?:one|single)[-\s]number\s+(?:answer|reply|response)\b",
    ),
    "one_word": _rx(
        r"(?:in|with|using)\s+(?:only\s+|just\s+|exactly\s+)?(?:one|a\s+single|1)\s+word\b",
        r"(?:one|single)[-\s]word\s+(?:answer|reply|response)\b",
        r"(?:only|just)\s+(?:one|a\s+single)\s+word\b",
        r"one\s+word\s+only\b",
    ),
    "yes_no": _rx(
        rf"(?:{_ANSWER}|say)\b[^.?!\n]{{0,20}}?\byes\b\W{{0,3}}(?:or|/)\W{{0,3}}no\b",
        r"(?:just|only|simply)\s+[\"']?yes[\"']?\s+or\s+[\"']?no\b",
        r"yes\s*/\s*no\b",
        r"yes[\s-]or[\s-]no\s+(?:answer|reply|response|only)\b",
    ),
    "json_only": _rx(
        r"json\s+only\b",
        r"only\s+(?:valid\s+|raw\s+|pure\s+|a\s+)?json\b",
        r"nothing\s+but\s+(?:valid\s+)?json\b",
        rf"(?:{_ANSWER})\s+(?:only\s+)?(?:in|with|as|using)\s+(?:only\s+)?"
        r"(?:valid\s+|raw\s+|pure\s+|a\s+)?json\b(?:\s+only\b)?",
    ),
    "word_limit": _rx(
        r"(?P<kind>at\s+most|no\s+more\s+than|not\s+more\s+than|a\s+maximum\s+of|maximum\s+of|"
        r"max(?:imum)?|up\s+to|within|(?P<strict>under|below|fewer\s+than|less\s+than))\s+"
        r"(?P<n>\d{1,5})\s+words\b",
        r"(?P<n2>\d{1,5})\s+words\s+or\s+(?:less|fewer)\b",
    ),
    "language": _rx(
        r"(?:answer|respond|reply|write|speak|talk)\s+(?:only\s+|exclusively\s+|entirely\s+)?"
        r"in\s+(?P<lang>english|french|spanish|german|italian|portuguese|dutch)\b",
        r"in\s+(?P<lang2>english|french|spanish|german|italian|portuguese|dutch)\s+only\b",
    ),
    "uppercase": _rx(
        r"(?:answer|respond|reply|write|speak|talk|type)\b[^.?!\n]{0,30}?\b(?:upper[\s-]?case|"
        r"all\s+caps|all[\s-]capitals|capital\s+letters|block\s+capitals)",
        r"(?:upper[\s-]?case|capital)\s+letters\s+only\b",
        r"only\s+(?:use\s+)?(?:upper[\s-]?case|capital\s+letters|all\s+caps)\b",
    ),
}

LANGUAGES = {
    "english": "en",
    "french": "fr",
    "spanish": "es",
    "german": "de",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
}
# The commonest function words of each language; shared words count for every language
# that has them, so only the distinctive ones decide.
STOPWORDS: dict[str, frozenset[str]] = {
    code: frozenset(words.split())
    for code, words in {
        "en": "the and is are was of to in it that this with for you on be have not what a an "
        "my your they we at as",
        "fr": "le la les et est un une des du de en que qui dans pour pas je vous nous il elle "
        "sont ce cette sur au aux avec ne mais",
        "es": "el la los las y es un una de del en que por para con no se su al lo como más "
        "pero está son yo muy",
        "de": "der die das und ist ein eine nicht ich sie es zu den dem mit von auf für im sind "
        "auch wie aber oder wir du ja",
        "it": "il lo la gli le e è un una di del della che non per con sono mi ma anche come "
        "si ho questo nel",
        "pt": "o a os as e é um uma de do da dos das que não em no na para com por se mais mas "
        "eu você são",
        "nl": "de het een en is van niet dat die ik je zijn op te met voor er maar ook als wat "
        "wij hij aan bij",
    }.items()
}
# Letters that point to one language; each occurrence counts like a function word.
LETTERS = {"es": "ñ¿¡", "de": "ßäöü", "fr": "œêîôûëùÿ", "pt": "ãõ"}
_LETTER_WORD = re.compile(r"[^\W\d_]+")


def guess_language(text: str) -> str | None:
    """An approximate language code from function words and telltale letters, or None
    when no language has clues or two tie."""
    tokens = [t.casefold() for t in _LETTER_WORD.findall(text)]
    lowered = text.casefold()
    score = {
        code: sum(t in words for t in tokens) + sum(lowered.count(c) for c in LETTERS.get(code, ""))
        for code, words in STOPWORDS.items()
    }
    ranked = sorted(score.items(), key=lambda item: item[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    return best if top > 0 and top > second else None


@dataclass(frozen=True)
class Instruction:
    name: str
    source: str  # metadata, tags, prompt or params
    arg: int | str | None = None
    matched: str | None = None


def detect(case: ProbeCase) -> list[Instruction]:
    """The format instructions a case gives, metadata first (see the module docstring)."""
    meta = case.metadata
    if "instruction" in meta:
        declared = meta["instruction"]
        names = [declared] if isinstance(declared, str) else declared
        if not isinstance(names, list):
            names = []
        return _declared(case, [str(n) for n in names], "metadata")
    tagged = [t.split(":", 1)[1] for t in case.tags if t.startswith("instruction:")]
    if tagged:
        return _declared(case, tagged, "tags")
    return _from_prompt(case)


def _prompt_text(case: ProbeCase) -> str:
    system = [m.content or "" for m in case.messages if m.role == "system"]
    users = [m.content or "" for m in case.messages if m.role == "user"]
    return normalise("\n".join(system + users[-1:]))


def _from_prompt(case: ProbeCase) -> list[Instruction]:
    text = _prompt_text(case)
    found = []
    for name, pattern in DETECTORS.items():
        match = pattern.search(text)
        if match is not None:
            found.append(Instruction(name, "prompt", _argument(name, match), match.group(0)))
    response_format = case.params.response_format or {}
    if response_format.get("type") in ("json_object", "json_schema") and not any(
        i.name == "json_only" for i in found
    ):
        found.append(Instruction("json_only", "params", None, str(response_format.get("type"))))
    return found


def _argument(name: str, match: re.Match[str]) -> int | str | None:
    groups = match.groupdict()
    if name == "word_limit":
        if groups.get("n") is not None:
            return int(groups["n"]) - (1 if groups.get("strict") else 0)
        return int(groups["n2"])
    if name == "language":
        return LANGUAGES[(groups.get("lang") or groups["lang2"]).casefold()]
    return None


def _declared(case: ProbeCase, names: list[str], source: str) -> list[Instruction]:
    """Declared instructions; a word limit or language not given in metadata is read from
    the prompt, and stays None (unscorable) if the prompt does not say either."""
    found: list[Instruction] = []
    for raw in names:
        name = raw.removeprefix("follows_")
        if name not in NAMES or any(i.name == name for i in found):
            continue
        arg: int | str | None = None
        if name in ("word_limit", "language"):
            arg = _declared_argument(name, case.metadata.get(name))
            if arg is None:
                match = DETECTORS[name].search(_prompt_text(case))
                arg = None if match is None else _argument(name, match)
        found.append(Instruction(name, source, arg))
    return found


def _declared_argument(name: str, value: Any) -> int | str | None:
    if name == "word_limit":
        valid = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return value if valid else None
    if isinstance(value, str):
        lowered = value.casefold()
        return LANGUAGES.get(lowered, lowered if lowered in STOPWORDS else None)
    return None


# --- checks ------------------------------------------------------------------------------
_ONE_WORD = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")
_YES_NO = re.compile(r"yes|no", re.IGNORECASE)
_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}


def _bare(text: str) -> str:
    """The stripped answer without final "." or "!" and one pair of surrounding quotes."""
    out = text.strip().rstrip(".!").strip()
    if len(out) >= 2 and _QUOTES.get(out[0]) == out[-1]:
        out = out[1:-1].strip().rstrip(".!").strip()
    return out


def _is_json(text: str) -> bool:
    def reject(name: str) -> Any:
        raise ValueError(name)

    try:
        json.loads(text, parse_constant=reject)
    except (ValueError, RecursionError):
        return False
    return True


def check(instruction: Instruction, text: str) -> tuple[bool | None, dict[str, Any]]:
    """(followed, detail) for one instruction and one answer."""
    name, arg = instruction.name, instruction.arg
    if name == "one_number":
        return is_only_number(text), {}
    if name == "one_word":
        return _ONE_WORD.fullmatch(_bare(text)) is not None, {}
    if name == "yes_no":
        return _YES_NO.fullmatch(_bare(text)) is not None, {}
    if name == "json_only":
        stripped = text.strip()
        return _is_json(stripped), {"fenced": stripped.startswith(("```", "~~~"))}
    if name == "word_limit":
        words = count_words(text)
        return (None if arg is None else words <= int(arg)), {"limit": arg, "words": words}
    if name == "language":
        guess = guess_language(text)
        followed = None if arg is None or guess is None else guess == arg
        return followed, {"target": arg, "guess": guess}
    if name == "uppercase":
        if not any(c.isupper() or c.islower() for c in text):
            return None, {}
        return not any(c.islower() for c in text), {}
    raise AssertionError(f"unknown instruction {name!r}")


@scorers.register("instructions")
class InstructionScorer(Scorer):
    name = "instructions"

    def __init__(self, **params: Any) -> None:
        params = {"detectors": "v1", **params}
        if params["detectors"] != "v1":
            raise ValueError(f"unknown instruction detectors {params['detectors']!r} (known: v1)")
        super().__init__(**params)

    def score(self, case: ProbeCase, response: CompletionResponse) -> list[ScoreRecord]:
        if not response.ok:
            return []
        text = response.text or ""
        records = []
        for instruction in detect(case):
            followed, detail = check(instruction, text)
            records.append(
                self._record(
                    f"follows_{instruction.name}",
                    None if followed is None else float(followed),
                    {"source": instruction.source, "matched": instruction.matched, **detail},
                    passed=followed,
                )
            )
        return records
