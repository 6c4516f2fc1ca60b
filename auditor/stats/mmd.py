"""Two-sample MMD test with the Hamming kernel (Gao, Liang, Guestrin 2024).

"Model Equality Testing: Which model is this API serving?" treats each sample as a pair
(prompt, completion) and uses the kernel

    k((p, y), (p', y')) = 1[p == p'] * sum_{i < L} 1[y_i == y'_i]

on completions truncated to L tokens (L = 50 in the paper) and right-padded to L with a pad
token. As in the paper's code, the pad is an ordinary symbol of the comparison: two
completions that both ended before position i match there, so where a completion stops
(EOS, a capped max_tokens) is part of what the kernel sees. The pad never matches a real
token. Completions of different prompts are never compared (the indicator above). The kernel
is normalised to k / L, the paper's `normalize=True` (every sample matches itself on all L
positions), so kernel values are "fraction of positions that agree", in [0, 1].

Statistic (the effect too): for each prompt g with at least two samples on each side, the
unbiased U-statistic

    MMD²_g = mean_{i != j in x} k + mean_{i != j in y} k - 2 mean_{i in x, j in y} k,

and the reported MMD² is their average weighted by n_x,g * n_y,g (the cross pairs a prompt
contributes); with equal sample counts per prompt this is exactly the paper's estimator
(its code averages the kernel over same-prompt pairs). Under the null it is centred on 0;
MMD² = 0.1 means that two completions from the same side agree on 5 percentage points more
of the L positions than a completion from each side.

Null: for every prompt, the x and y completions are i.i.d. from the same distribution. The
p-value comes from permuting the x/y labels within each prompt (the prompt mix of the two
sides may differ, e.g. when a provider failed some requests, without breaking the test), with
the add-one estimate (1 + #{perm >= observed}) / (1 + n_permutations), valid at every size.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from auditor.stats.outcome import TestOutcome, degenerate

PAD = -1
"""The pad symbol. Token ids are non-negative; non-integer tokens are mapped below -1."""

Completion = str | Sequence[Hashable] | np.ndarray
_PERMUTATION_CELLS = 4_000_000  # (permutations x prompts x slots) per chunk: ~32 MB of floats
_TIE_TOLERANCE = 1e-10


def encode_completions(
    samples: Sequence[Completion], length: int, vocab: dict[Hashable, int] | None = None
) -> np.ndarray:
    """Truncate/pad completions to an (n, length) int64 array, padded with `PAD`.

    A `str` is a sequence of characters (Unicode code points); a sequence of non-negative
    ints is token ids; any other sequence of hashable tokens (e.g. token strings) is mapped
    through `vocab` (shared between the two samples of a test, so equal tokens get equal ids).
    """
    vocab = {} if vocab is None else vocab
    out = np.full((len(samples), length), PAD, dtype=np.int64)
    for row, sample in enumerate(samples):
        head = sample[:length]
        if isinstance(head, str):
            codes = np.frombuffer(head.encode("utf-32-le"), dtype="<u4").astype(np.int64)
        else:
            arr = np.asarray(head)
            if arr.size and arr.dtype.kind in "iub":
                codes = arr.astype(np.int64).ravel()
                if codes.min() < 0:
                    raise ValueError("token ids must be non-negative")
            else:
                codes = np.array(
                    [vocab.setdefault(tok, -2 - len(vocab)) for tok in head], dtype=np.int64
                )
        out[row, : codes.size] = codes
    return out


def hamming_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised Hamming kernel matrix: fraction of the L positions where rows agree."""
    length = a.shape[1]
    counts = np.zeros((a.shape[0], b.shape[0]), dtype=np.int32)
    for i in range(length):
        counts += a[:, i, None] == b[None, :, i]
    return counts / float(max(length, 1))


def mmd_hamming_test(
    x: Sequence[Completion],
    y: Sequence[Completion],
    *,
    rng: np.random.Generator,
    x_groups: Sequence[Hashable] | None = None,
    y_groups: Sequence[Hashable] | None = None,
    length: int = 50,
    n_permutations: int = 1000,
) -> TestOutcome:
    """MMD² Hamming-kernel test of "x and y come from the same distribution, per prompt".

    `x` (the reference) and `y` (the provider) are completions: strings (compared character
    by character), token-id lists or lists of token strings. `x_groups`/`y_groups` give the
    prompt of each sample (both or neither; without them all samples share one prompt).
    Prompts without two samples on each side are dropped; `n` counts the samples kept.
    See the module docstring for the kernel, statistic and null.
    """
    if (x_groups is None) != (y_groups is None):
        raise ValueError("give both x_groups and y_groups, or neither")
    gx = list(x_groups) if x_groups is not None else [0] * len(x)
    gy = list(y_groups) if y_groups is not None else [0] * len(y)
    if len(gx) != len(x) or len(gy) != len(y):
        raise ValueError("groups must have one entry per sample")
    if length < 1 or n_permutations < 1:
        raise ValueError("length and n_permutations must be positive")

    vocab: dict[Hashable, int] = {}
    enc_x, enc_y = encode_completions(x, length, vocab), encode_completions(y, length, vocab)
    members_x: dict[Hashable, list[int]] = {}
    members_y: dict[Hashable, list[int]] = {}
    for i, g in enumerate(gx):
        members_x.setdefault(g, []).append(i)
    for i, g in enumerate(gy):
        members_y.setdefault(g, []).append(i)
    blocks, sizes_x, sizes_y = [], [], []
    for g, ix in members_x.items():
        iy = members_y.get(g, [])
        if len(ix) < 2 or len(iy) < 2:
            continue
        members = np.concatenate([enc_x[ix], enc_y[iy]])
        blocks.append(hamming_kernel(members, members))
        sizes_x.append(len(ix))
        sizes_y.append(len(iy))
    if not blocks:
        return degenerate(0)

    nx, ny = np.array(sizes_x, dtype=float), np.array(sizes_y, dtype=float)
    n_groups, slots = len(blocks), int((nx + ny).max())
    kernel = np.zeros((n_groups, slots, slots))
    for g, block in enumerate(blocks):
        np.fill_diagonal(block, 0.0)
        kernel[g, : block.shape[0], : block.shape[0]] = block
    row_sums = kernel.sum(axis=2)
    total = row_sums.sum(axis=1)
    weights = nx * ny / np.sum(nx * ny)
    c_xx, c_yy, c_xy = 1.0 / (nx * (nx - 1)), 1.0 / (ny * (ny - 1)), 1.0 / (nx * ny)

    def statistics(labels: np.ndarray) -> np.ndarray:
        """MMD² per labelling; labels is (groups, batch, slots) with 1.0 marking an x slot."""
        # One BLAS product per prompt: numpy's stacked matmul is far slower on small blocks.
        quad = np.stack(
            [np.einsum("bj,bj->b", lab @ ker, lab) for lab, ker in zip(labels, kernel, strict=True)]
        )
        lin = np.einsum("gbj,gj->gb", labels, row_sums)
        k_xx, k_xy = quad, lin - quad
        k_yy = total[:, None] - 2.0 * lin + quad
        mmd = k_xx * c_xx[:, None] + k_yy * c_yy[:, None] - 2.0 * k_xy * c_xy[:, None]
        return np.asarray(weights @ mmd, dtype=float)

    slot = np.arange(slots)
    base = (slot[None, None, :] < nx[:, None, None]).astype(float)
    padding = slot[None, None, :] >= (nx + ny)[:, None, None]
    observed = float(statistics(base)[0])

    exceed = 0
    chunk = max(1, _PERMUTATION_CELLS // (n_groups * slots))
    for start in range(0, n_permutations, chunk):
        batch = min(chunk, n_permutations - start)
        keys = rng.random((n_groups, batch, slots))
        keys[np.broadcast_to(padding, keys.shape)] = 2.0  # padding slots sort last
        order = np.argsort(keys, axis=2)
        labels = np.zeros((n_groups, batch, slots))
        np.put_along_axis(labels, order, np.broadcast_to(base, labels.shape), axis=2)
        exceed += int(np.sum(statistics(labels) >= observed - _TIE_TOLERANCE))
    p_value = (1 + exceed) / (1 + n_permutations)
    n = int(nx.sum() + ny.sum())
    return TestOutcome(statistic=observed, p_value=p_value, effect=observed, n=n)
