"""Pure numeric tests for comparing a provider's outputs with the reference's. No I/O.

Every test returns a `TestOutcome(statistic, p_value, effect, n)` with finite numbers;
degenerate inputs (empty, constant) give p = 1 and effect 0. Effects are signed "provider
(second argument) relative to reference (first argument)":

==========================  ==========================================  =====================
function                    null hypothesis                             effect
==========================  ==========================================  =====================
mmd_hamming_test            same completion distribution per prompt     MMD² (Hamming kernel)
rank_uniformity_test        provider scores exchangeable with refs      Cliff's delta vs refs
proportion_test             equal success probability                   p_b - p_a
excess_rate_test            violations at most a tolerated rate         rate - tolerated
mean_shift_test             same score distribution                     Cliff's delta
paired_shift_test           paired differences symmetric about 0        median of b - a
fisher_combine              all component nulls (independent)           mean(-log p) - 1
label_permutation_test      labels exchangeable within each group       labelled - others
==========================  ==========================================  =====================

Plus multiple-testing control (`bh_adjust`, `benjamini_hochberg`, `holm_adjust`,
`shared_bh_adjust`), intervals
(`clopper_pearson`, `honest_range`, `wilson_interval`, `newcombe_interval`), the early-stopping
rule (`sequential_decision`) and a context ladder's effective window (`effective_window`).
Anything random takes a `numpy.random.Generator`, so results are reproducible.
"""

from auditor.stats.classic import (
    cliffs_delta,
    excess_rate_test,
    mean_shift_test,
    paired_shift_test,
    proportion_test,
)
from auditor.stats.intervals import clopper_pearson, honest_range
from auditor.stats.ladder import (
    EffectiveWindow,
    RungResult,
    RungVerdict,
    effective_window,
    newcombe_interval,
    wilson_interval,
)
from auditor.stats.mmd import PAD, encode_completions, hamming_kernel, mmd_hamming_test
from auditor.stats.multiple import (
    benjamini_hochberg,
    bh_adjust,
    fisher_combine,
    holm_adjust,
    shared_bh_adjust,
)
from auditor.stats.outcome import TestOutcome
from auditor.stats.permutation import label_permutation_floor, label_permutation_test
from auditor.stats.ranks import rank_of, rank_uniformity_test, ranks_of
from auditor.stats.sequential import Decision, per_look_alpha, sequential_decision

__all__ = [
    "PAD",
    "Decision",
    "EffectiveWindow",
    "RungResult",
    "RungVerdict",
    "TestOutcome",
    "benjamini_hochberg",
    "bh_adjust",
    "cliffs_delta",
    "clopper_pearson",
    "effective_window",
    "encode_completions",
    "excess_rate_test",
    "fisher_combine",
    "hamming_kernel",
    "holm_adjust",
    "honest_range",
    "label_permutation_floor",
    "label_permutation_test",
    "mean_shift_test",
    "mmd_hamming_test",
    "newcombe_interval",
    "paired_shift_test",
    "per_look_alpha",
    "proportion_test",
    "rank_of",
    "rank_uniformity_test",
    "ranks_of",
    "sequential_decision",
    "shared_bh_adjust",
    "wilson_interval",
]
