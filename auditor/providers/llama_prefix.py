"""A llama-cpp-python model that reuses a cached prompt without changing a single logit.

llama.cpp's logits depend on how a prompt was batched: the last prompt token evaluated
within the prompt's batch gives other logits than the same token evaluated alone, by up to
0.9 for the packaged Q4_1 model (matrix-matrix against matrix-vector kernels). So
llama-cpp-python's own prefix reuse, which re-evaluates only the last token of a cached
prompt, answers differently from a fresh evaluation, and a reference that reused some
prompts and not others would differ from itself.

`ExactPrefixLlama` makes reuse exact by evaluating every prompt the same way: all but its
last token in one `eval` from position 0, then the last token alone (what llama-cpp-python
does on a prefix hit). A later prompt whose all-but-last tokens are exactly those reuses them
(real servers cache prefixes too: vLLM, SGLang, llama.cpp's server); any other prompt starts
afresh. Reused or not, the logits are bit for bit the same (`tests/providers/
test_llama_prefix.py` holds it), so a reference and a fleet member that both use this class
answer alike whatever each served before.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from llama_cpp import Llama


class ExactPrefixLlama(Llama):
    """`Llama` whose `generate` evaluates prompts split as the module docstring says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The tokens evaluated by the split from position 0, while they stay untouched.
        self.split_prefix: tuple[int, ...] = ()
        #: Prompts whose split prefix was reused, and all prompts (for benchmarks and tests).
        self.prefix_hits = 0
        self.prompts = 0

    def eval(self, tokens: Sequence[int]) -> None:
        if self.n_tokens < len(self.split_prefix):  # evaluating over the split prefix
            self.split_prefix = ()
        super().eval(tokens)

    def load_state(self, state: Any) -> None:
        self.split_prefix = ()
        super().load_state(state)

    def prime(self, tokens: Sequence[int]) -> bool:
        """Leave all but the last of `tokens` evaluated as the split evaluates them, reusing
        the cached ones when they are exactly those; True when they were reused."""
        head = tuple(tokens[:-1])
        self.prompts += 1
        cached = self.split_prefix == head and self.n_tokens >= len(head)
        if cached and tuple(self._input_ids[: len(head)].tolist()) == head:
            self.prefix_hits += 1
            # the last token is evaluated again even when it was too: its logits row is
            # then fresh, not one a logits processor already wrote into
            self._requires_eval = True
            return True
        self.reset()  # type: ignore[no-untyped-call]
        self.split_prefix = ()
        if head:
            super().eval(head)
        self.split_prefix = head
        return False

    def generate(
        self, tokens: Sequence[int], *args: Any, **kwargs: Any
    ) -> Generator[int, Sequence[int] | None, None]:
        if kwargs.get("reset", True) and tokens:
            self.prime(tokens)
        return super().generate(tokens, *args, **kwargs)
