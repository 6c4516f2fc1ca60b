"""A deviant finding's evidence: where the context is found cut, the answers the reference got
right and the provider got wrong come first, longest prompts first; otherwise the answers that
differ most."""

from __future__ import annotations

from helpers.observations import observation

from auditor.comparisons.observation import Observation
from auditor.judging.evidence import pick_evidence
from auditor.records import Diagnosis

CUT = Diagnosis(kind="context_truncation", confidence=0.9, summary="fails retrieval at 1,256")
VARIANT = Diagnosis(kind="model_variant", confidence=0.6, summary="behaves unlike the reference")


def pair(probe: int, tokens: int, ref: str, got: str, passed: bool) -> list[Observation]:
    """The reference right at `tokens` prompt tokens; the provider right or not."""
    return [
        observation(probe, endpoint="reference", text=ref, prompt_tokens=tokens,
                    scores={"expect_pass": 1.0}),
        observation(probe, text=got, prompt_tokens=tokens,
                    scores={"expect_pass": 1.0 if passed else 0.0}),
    ]  # fmt: skip


def round_of() -> tuple[list[Observation], list[Observation]]:
    pairs = [
        # right on both sides, worded apart from the first character: the most different
        pair(1, 500, "The code is 9499.", "Sure! The code is 9499, as planted.", True),
        pair(2, 850, "The code is 2553.", "The code is 1234.", False),
        pair(3, 1600, "The number is 2595928.", "The number is 8128176.", False),
        pair(4, 1250, "The code is 3878.", "The code is 3878. The river", True),
        pair(5, 300, "Same answer.", "Same answer.", True),
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_a_cut_context_shows_the_answers_lost_longest_prompt_first() -> None:
    reference, provider = round_of()
    shown = pick_evidence(reference, provider, [CUT])
    assert [e.probe for e in shown] == ["p3", "p2", "p1"]
    assert shown[0].provider == "The number is 8128176."
    assert shown[0].note.startswith("fails retrieval at 1,256; prompt tokens 1600 vs 1600")


def test_other_diagnoses_show_the_answers_that_differ_most() -> None:
    reference, provider = round_of()
    shown = pick_evidence(reference, provider, [VARIANT])
    # by the share of the longer answer they have in common: 0, 17 of 27, 14 of 22 (p2's
    # lost answer shares 12 of 17)
    assert [e.probe for e in shown] == ["p1", "p4", "p3"]
