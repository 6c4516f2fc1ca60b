"""Context ladder: RULER-style tasks at growing fractions of a model's context window.

A few needles say whether a provider truncates; a ladder says how far into its advertised
window a model, as served, still finds and combines what it reads (RULER, Hsieh et al.,
2024). Each rung is a fraction of the window; at each rung up to four tasks with one
objectively right answer:

- `needle`: one planted sentence to retrieve (the floor), by default the first line of the
  text: a host that keeps only a prompt's end loses it at the first rung it cuts at all,
  where a needle mid-text survives any cut of less than half the prompt;
- `multikey`: several keyed numbers, one of them asked for (the others are distractors);
- `variable_tracking`: follow a chain of assignments back to its number, beside a decoy chain;
- `aggregation`: name the few words of a long list that occur clearly more often.

Lengths are estimated at `CHARS_PER_TOKEN` characters a token, which English filler beats
(about 4.5-5 with common tokenizers), so real prompts run a little shorter than their target.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import string
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from auditor.probes import filler
from auditor.probes.generators import CHARS_PER_TOKEN, GeneratorError, ProbeGenerator, generators

Task = Literal["needle", "multikey", "variable_tracking", "aggregation"]
TASKS: tuple[Task, ...] = get_args(Task)
DEFAULT_FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 0.95)
#: The needle's depth by default: the first line after the instructions.
DEFAULT_DEPTHS = (0.0,)

#: Tokens of the window kept free of the prompt: the chat template and the answer (a case's
#: `max_tokens` should stay within about 32). The fractions apply to what is left.
ANSWER_ALLOWANCE = 64
#: In `aggregation`, each asked word occurs at least this many times as often as any other.
FREQUENCY_RATIO = 4

#: Which param makes a task's fixed text longer: named when it fits no rung.
_SIZE_KEY: dict[Task, str] = {
    "needle": "fractions",
    "multikey": "keys",
    "variable_tracking": "hops",
    "aggregation": "words",
}
_READ = "Below is a long text. Read it carefully, then answer the question at the end.\n\n"
_READ_VARIABLES = (
    "Below is a long text with variable assignments (VAR name = value) hidden in it. Read it "
    "carefully and follow the assignments, then answer the question at the end.\n\n"
)
_READ_WORDS = "Below is a list of words. Some of them occur more often than the others.\n\n"
_COLOURS = ("blue", "red", "green", "yellow", "silver", "orange", "purple", "white")
_KEY_ADJECTIVES = (
    *("amber", "brave", "calm", "dusty", "eager", "fancy", "gentle", "hollow"),
    *("icy", "jolly", "lucky", "misty", "noble", "proud", "quiet", "rusty"),
)
_KEY_NOUNS = (
    *("badger", "comet", "dune", "ember", "falcon", "glacier", "harbor", "iris"),
    *("jaguar", "kestrel", "lagoon", "maple", "nebula", "otter", "prairie", "quartz"),
)
#: Short common nouns, so that a list of them costs few tokens a character; none is a word an
#: answer's own phrasing would use ("the", "words", "list"...).
_WORD_TEXT = """
    apple river candle garden window pencil mirror basket ladder rabbit bottle button carpet
    cookie dragon engine feather forest guitar hammer island jacket kettle lemon magnet meadow
    monkey orange parrot pepper pillow planet pocket puzzle rocket saddle spider spoon sugar
    tiger tomato tunnel turtle violin wallet wagon walnut whale wizard zebra anchor badge beacon
    blanket bridge cabin camera canvas castle cherry circle copper cotton crystal desert dolphin
    donkey eagle fence flower fountain glove helmet honey jungle kitten lantern marble medal
    melon muffin napkin ocean onion oyster paddle palace peach pearl pebble piano pirate pumpkin
    quilt radish ribbon robot salmon shovel statue tractor trumpet velvet village volcano
"""
_WORD_POOL = tuple(_WORD_TEXT.split())


def _fraction_list() -> list[float]:
    return list(DEFAULT_FRACTIONS)


def _depth_list() -> list[float]:
    return list(DEFAULT_DEPTHS)


def _task_list() -> list[Task]:
    return list(TASKS)


class LadderParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window: int = Field(ge=128, le=2_000_000)
    fractions: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=_fraction_list, min_length=1
    )
    tasks: list[Task] = Field(default_factory=_task_list, min_length=1)
    keys: int = Field(default=4, ge=2, le=64)
    hops: int = Field(default=3, ge=1, le=16)
    words: int = Field(default=3, ge=1, le=10)
    seed: int = 0
    # Independent instances of each task at each rung (other planted facts, other filler):
    # a rung's answers are then separate draws, not repeats of one prompt.
    instances: int = Field(default=1, ge=1, le=64)
    # Where the needle sits (0 = first line of the text, 1 = last), taken in turn by the
    # instances: instance i's needle is at depths[i % len(depths)].
    depths: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=_depth_list, min_length=1
    )
    min_tokens: int = Field(default=64, ge=1)

    @field_validator("fractions")
    @classmethod
    def _increasing(cls, fractions: list[float]) -> list[float]:
        ordered = sorted(fractions)
        for a, b in itertools.pairwise(ordered):
            if a == b:
                raise ValueError(f"fraction {a:g} is given twice")
        return ordered

    @field_validator("tasks")
    @classmethod
    def _distinct(cls, tasks: list[Task]) -> list[Task]:
        for task in tasks:
            if tasks.count(task) > 1:
                raise ValueError(f"task {task!r} is given twice")
        return tasks


@dataclass(frozen=True)
class Rung:
    index: int  # in the sorted fractions, skipped rungs included: rung i is fractions[i]
    fraction: float
    tokens: int


@dataclass
class _Planted:
    """A task's text but for the filler: the lines planted in it, at depths from 0 to 1."""

    intro: str
    lines: list[tuple[float, str]]
    question: str
    answer: int
    metadata: dict[str, Any] = field(default_factory=dict)


class _FillerStream:
    """The filler sentences of one (seed, task), drawn once: each rung takes the first ones it
    needs, so a shorter rung's filler is the start of a longer rung's and only the length (and
    the planted lines) differs between rungs."""

    def __init__(self, seed: str) -> None:
        self._rng = random.Random(seed)
        self._units: list[str] = []
        self._ends = [0]  # characters of the first n sentences, each with one space

    def take(self, budget: int) -> list[str]:
        """The first sentences whose length comes closest to `budget` characters."""
        while self._ends[-1] < budget:
            unit = filler.sentence(self._rng)
            self._units.append(unit)
            self._ends.append(self._ends[-1] + len(unit) + 1)
        n = bisect.bisect_left(self._ends, budget)
        if n > 0 and budget - self._ends[n - 1] <= self._ends[n] - budget:
            n -= 1
        return self._units[:n]


def rungs(p: LadderParams) -> list[Rung]:
    """The rungs at least `min_tokens` long: fractions of the window less the allowance."""
    usable = p.window - ANSWER_ALLOWANCE
    all_rungs = [Rung(i, f, round(f * usable)) for i, f in enumerate(p.fractions)]
    kept = [r for r in all_rungs if r.tokens >= p.min_tokens]
    if not kept:
        longest = all_rungs[-1]
        raise GeneratorError(
            f"no rung reaches min_tokens ({p.min_tokens}): the longest, {longest.fraction:g} of "
            f"the window {p.window} less {ANSWER_ALLOWANCE} tokens for the answer, is "
            f"{longest.tokens} tokens",
            key="fractions",
        )
    for a, b in itertools.pairwise(kept):
        if a.tokens == b.tokens:
            raise GeneratorError(
                f"fractions {a.fraction:g} and {b.fraction:g} both give {a.tokens} tokens "
                f"at window {p.window}",
                key="fractions",
            )
    return kept


#: The window `check` validates params with when `window` is left out (any valid value: no
#: field validator reads the window; what it makes of the rungs is checked per model).
_CHECK_WINDOW = 8192


@generators.register("context_ladder")
class ContextLadderGenerator(ProbeGenerator):
    """One case per (task, rung), ids `<task>.len<target tokens>`.

    A rung too short for a task's fixed text (instructions, planted lines, question) is left
    out for that task; a task that fits no rung is an error naming the param that sizes it.
    `window` left out is each model's `profile.context_window`.
    """

    profile_params: ClassVar[Mapping[str, str]] = {"window": "context_window"}

    def check(self, params: dict[str, Any]) -> None:
        LadderParams.model_validate({"window": _CHECK_WINDOW, **params})

    def generate(self, template: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
        p = LadderParams.model_validate(params)
        ladder = rungs(p)
        out: list[dict[str, Any]] = []
        for task in p.tasks:
            cases = []
            for instance in range(p.instances):
                stream = _FillerStream(f"ladder:{_tag(p, instance)}:{task}:filler")
                cases += [c for rung in ladder if (c := _case(p, task, rung, stream, instance))]
            if not cases:
                key = _SIZE_KEY[task]
                size = f"with {key} {getattr(p, key)} " if key != "fractions" else ""
                raise GeneratorError(
                    f"task {task} {size}does not fit in the longest rung "
                    f"({ladder[-1].tokens} tokens)",
                    key=key,
                )
            out.extend(cases)
        return out


def _tag(p: LadderParams, instance: int) -> str:
    """What seeds an instance's draws: the first instance is the seed's own ladder."""
    return str(p.seed) if instance == 0 else f"{p.seed}.{instance}"


def _case(
    p: LadderParams, task: Task, rung: Rung, stream: _FillerStream, instance: int = 0
) -> dict[str, Any] | None:
    # A string seed is hashed with SHA-512 by `random`, so it is stable across runs.
    rng = random.Random(f"ladder:{_tag(p, instance)}:{task}:{rung.fraction!r}")
    target_chars = rung.tokens * CHARS_PER_TOKEN
    answer: int | list[str]
    if task == "aggregation":
        built = _aggregation(rng, p.words, target_chars)
        if built is None:
            return None
        prompt, answer, regex, extra = built
    else:
        if task == "needle":
            # One needle per instance, the same at every rung: at depth 0 a shorter rung's
            # prompt, but for its question, is then the start of a longer rung's, which an
            # engine reusing prompt prefixes evaluates once.
            same_at_every_rung = random.Random(f"ladder:{_tag(p, instance)}:needle")
            planted = _needle(same_at_every_rung, p.depths[instance % len(p.depths)])
        elif task == "multikey":
            planted = _multikey(rng, p.keys)
        else:
            planted = _variables(rng, p.hops)
        suffix = f"\n\nQuestion: {planted.question}"
        fixed = len(planted.intro) + len(suffix) + sum(len(t) + 1 for _, t in planted.lines)
        if fixed > target_chars:
            return None
        units = _plant(stream.take(target_chars - fixed), planted.lines)
        paragraphs = random.Random(f"ladder:{_tag(p, instance)}:{task}:paragraphs")
        prompt = planted.intro + filler.join_units(units, paragraphs) + suffix
        answer, regex, extra = planted.answer, rf"\b{planted.answer}\b", planted.metadata
    several = p.instances > 1  # one instance: ids and metadata as before instances existed
    return {
        "id": f"{task}.len{rung.tokens}" + (f".i{instance}" if several else ""),
        "prompt": prompt,
        "expect": {"regex": regex},
        "signals": ["long_context"],
        "metadata": {
            "generator": "context_ladder",
            "task": task,
            "rung": rung.index,
            "fraction": rung.fraction,
            "window": p.window,
            "target_tokens": rung.tokens,
            **({"instance": instance} if several else {}),
            "prompt_chars": len(prompt),
            "answer": answer,
            **extra,
        },
    }


def _plant(units: list[str], lines: list[tuple[float, str]]) -> list[str]:
    """Put each line at the sentence boundary nearest its depth, keeping the lines' order."""
    ends = list(itertools.accumulate((len(u) + 1 for u in units), initial=0))
    at: dict[int, list[str]] = {}
    for depth, text in sorted(lines, key=lambda line: line[0]):
        target = depth * ends[-1]
        i = bisect.bisect_left(ends, target)
        if i == len(ends) or (i > 0 and target - ends[i - 1] <= ends[i] - target):
            i -= 1
        at.setdefault(i, []).append(text)
    out: list[str] = []
    for i in range(len(units) + 1):
        out.extend(at.get(i, ()))
        if i < len(units):
            out.append(units[i])
    return out


def _needle(rng: random.Random, depth: float) -> _Planted:
    colour, code = rng.choice(_COLOURS), rng.randint(1000, 9999)
    return _Planted(
        intro=_READ,
        lines=[(depth, f"The secret code of the {colour} door is {code}.")],
        question=f"What is the secret code of the {colour} door? Answer with the number only.",
        answer=code,
        metadata={"depth": depth},
    )


def _multikey(rng: random.Random, keys: int) -> _Planted:
    pairs = rng.sample(list(itertools.product(_KEY_ADJECTIVES, _KEY_NOUNS)), keys)
    names = [f"{adjective}-{noun}" for adjective, noun in pairs]
    numbers = rng.sample(range(1_000_000, 10_000_000), keys)
    asked = rng.randrange(keys)
    return _Planted(
        intro=_READ,
        lines=[
            ((i + 0.5) / keys, f"The special magic number for {name} is {number}.")
            for i, (name, number) in enumerate(zip(names, numbers, strict=True))
        ],
        question=f"What is the special magic number for {names[asked]}? "
        "Answer with the number only.",
        answer=numbers[asked],
        metadata={"keys": keys, "depth": (asked + 0.5) / keys},
    )


def _variables(rng: random.Random, hops: int) -> _Planted:
    """Two chains of `hops` + 1 variables: `VAR A = 12345.`, `VAR B = A.`, ...; the question
    asks the number the last variable of one holds, the other (its own number) a decoy. The
    statements of each chain come in order, the two chains interleaved."""
    names: list[str] = []
    while len(names) < 2 * (hops + 1):
        name = "".join(rng.choices(string.ascii_uppercase, k=5))
        if name not in names:
            names.append(name)
    value, decoy = rng.sample(range(10_000, 100_000), 2)
    chain_offset, decoy_offset = rng.choice([(0.25, 0.75), (0.75, 0.25)])
    lines: list[tuple[float, str]] = []
    for chain, number, offset in (
        (names[: hops + 1], value, chain_offset),
        (names[hops + 1 :], decoy, decoy_offset),
    ):
        statements = [f"VAR {chain[0]} = {number}."]
        statements += [f"VAR {b} = {a}." for a, b in itertools.pairwise(chain)]
        lines += [((j + offset) / (hops + 1), s) for j, s in enumerate(statements)]
    return _Planted(
        intro=_READ_VARIABLES,
        lines=lines,
        question=f"Following the assignments, what number does VAR {names[hops]} hold? "
        "Answer with the number only.",
        answer=value,
        metadata={"hops": hops, "decoy": decoy},
    )


def _aggregation(
    rng: random.Random, n: int, target_chars: int
) -> tuple[str, list[str], str, dict[str, Any]] | None:
    """A shuffled list: `n` asked words `FREQUENCY_RATIO * lo` times each, the others at most
    `lo` times, `lo` as small as the length allows. The counts scale with the length, so the
    list is drawn afresh for each rung (no shared prefix)."""
    pool = list(_WORD_POOL)
    rng.shuffle(pool)
    top, rest = sorted(pool[:n]), pool[n:]
    plural = f"the {n} most frequent words" if n > 1 else "the most frequent word"
    ask = f"What are {plural}" if n > 1 else f"What is {plural}"
    only = f"the {n} words only" if n > 1 else "the word only"
    suffix = f"\n\nQuestion: {ask} in the list? Answer with {only}."
    budget = target_chars - len(_READ_WORDS) - len(suffix)
    one_each = sum(len(w) + 1 for w in top)
    rest_chars = sum(len(w) + 1 for w in rest)
    if FREQUENCY_RATIO * one_each > budget:
        return None
    # The smallest `lo` for which `lo` passes over the other words fill what the asked words
    # leave, so that no other word occurs more than `lo` times.
    lo = max(1, math.ceil(budget / (FREQUENCY_RATIO * one_each + rest_chars)))
    hi = FREQUENCY_RATIO * lo
    words = top * hi
    left = budget - hi * one_each
    for word in itertools.cycle(rest):
        if len(word) + 1 > 2 * left:  # stop where the length is closest to the budget
            break
        words.append(word)
        left -= len(word) + 1
    others = Counter(words[n * hi :])
    rng.shuffle(words)
    prompt = _READ_WORDS + " ".join(words) + suffix
    lookaheads = "".join(rf"(?=.*\b{w}\b)" for w in top)
    # All of them in any order, and no more than a short sentence: listing every word fails.
    regex = rf"(?s)^{lookaheads}\W*(?:\w+\b\W*){{{n},{n + 10}}}$"
    counts = {"top_count": hi, "other_max_count": max(others.values(), default=0)}
    return prompt, top, regex, {"words": n, **counts}
