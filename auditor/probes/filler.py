"""Deterministic filler prose for long-context probes.

The text is built from a small built-in word list with `random.Random(seed)`, so a probe
suite needs no downloads or data files and the same seed always gives the same text. The
sentences contain no digits and never mention doors or codes, so a needle planted in them
is the only place its answer appears.
"""

from __future__ import annotations

import random

_SUBJECTS = (
    "The old farmer",
    "A young painter",
    "The village baker",
    "Our neighbour",
    "The river guide",
    "A quiet student",
    "The ship's cook",
    "The mayor",
    "A travelling musician",
    "The librarian",
    "Her grandmother",
    "The shepherd",
    "A tired merchant",
    "The blacksmith",
    "The schoolteacher",
    "A curious child",
)
_VERBS = (
    "carried",
    "painted",
    "found",
    "repaired",
    "described",
    "sold",
    "watched",
    "counted",
    "cleaned",
    "borrowed",
    "remembered",
    "wrapped",
    "admired",
    "forgot",
    "collected",
    "measured",
)
_OBJECTS = (
    "a basket of apples",
    "the wooden fence",
    "an old map",
    "a pair of copper kettles",
    "the garden gate",
    "a box of letters",
    "the broken lantern",
    "a bundle of dry firewood",
    "the linen curtains",
    "a jar of honey",
    "the narrow bridge",
    "a faded blue coat",
    "the stone well",
    "a small leather book",
    "the orchard ladder",
    "a sack of flour",
)
_PLACES = (
    "near the market",
    "before sunrise",
    "along the river",
    "behind the mill",
    "in the late afternoon",
    "after the storm",
    "on the hill road",
    "beside the chapel",
    "during the harvest",
    "at the edge of the forest",
    "under a grey sky",
    "while the bells rang",
    "outside the inn",
    "by the frozen pond",
    "across the meadow",
    "on a windy morning",
)
_AFTERTHOUGHTS = (
    "",
    "",
    "",
    ", and nobody seemed to mind",
    ", as they did every week",
    ", humming an old song",
    ", which surprised the whole village",
    ", slowly and with great care",
)


def sentence(rng: random.Random) -> str:
    """One plausible, unremarkable sentence."""
    return (
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
        f"{rng.choice(_PLACES)}{rng.choice(_AFTERTHOUGHTS)}."
    )


def filler_units(rng: random.Random, min_chars: int) -> list[str]:
    """Sentences whose joined length (with single spaces) reaches at least `min_chars`."""
    units: list[str] = []
    total = 0
    while total < min_chars:
        unit = sentence(rng)
        units.append(unit)
        total += len(unit) + 1
    return units


def join_units(units: list[str], rng: random.Random) -> str:
    """Join sentences into paragraphs of five to eight sentences."""
    out: list[str] = []
    left = rng.randint(5, 8)
    for i, unit in enumerate(units):
        if i:
            left -= 1
            if left == 0:
                out.append("\n\n")
                left = rng.randint(5, 8)
            else:
                out.append(" ")
        out.append(unit)
    return "".join(out)


def with_needle(units: list[str], needle: str, depth: float) -> list[str]:
    """Insert `needle` at the sentence boundary closest to `depth` (0 = start, 1 = end)."""
    total = sum(len(u) + 1 for u in units)
    target = depth * total
    best, best_gap, pos = 0, abs(target), 0
    for i, unit in enumerate(units, start=1):
        pos += len(unit) + 1
        gap = abs(target - pos)
        if gap < best_gap:
            best, best_gap = i, gap
    return [*units[:best], needle, *units[best:]]
