"""A llama-cpp-python model that reuses cached prompts without changing a single logit.

llama.cpp's logits depend on how a prompt was batched: the last prompt token evaluated
within the prompt's batch gives other logits than the same token evaluated alone, by up to
0.9 for the packaged Q4_1 model (matrix-matrix against matrix-vector kernels). So
llama-cpp-python's own prefix reuse, which re-evaluates only the last token of a cached
prompt, or whatever follows the longest common prefix, answers differently from a fresh
evaluation, and a reference that reused some prompts and not others would differ from itself.

`ExactPrefixLlama` makes reuse exact by evaluating every prompt the same way: all but its
last token (the *head*) in one `eval` from position 0, which llama-cpp-python cuts into
batches of `n_batch` tokens at positions 0, `n_batch`, 2 `n_batch`, ..., then the last token
alone (what llama-cpp-python does on a prefix hit). The cache of each position depends only
on the tokens up to the end of its batch, so a later prompt may reuse

- the whole head of an earlier prompt whose head is exactly its own (then only its last
  token is evaluated), or
- the whole batches the two heads share from position 0 (then the rest of its head is
  evaluated from that boundary, in the batches a fresh evaluation would cut).

Anything else is evaluated afresh. The earlier prompt is the one in the model's cache or,
up to `saved_bytes` of them, one whose cache was saved after its head was evaluated (the
most recently used kept). Real servers cache prefixes too (vLLM's and SGLang's prefix caches
are keyed by blocks of tokens, llama.cpp's server by slot). Reused or not, the logits are bit
for bit the same (`tests/providers/test_llama_prefix.py` holds it), so a reference and a
fleet member that both use this class answer alike whatever each served before.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama

#: Default memory for saved prompt caches: about 11,000 prompt tokens of the packaged
#: SmolLM2-135M (23 KB a token), a few rounds of long ladder prompts.
SAVED_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class _Saved:
    """The model's cache for one sequence of tokens evaluated by the split."""

    tokens: np.ndarray
    data: bytes


def shared_length(a: np.ndarray, b: np.ndarray) -> int:
    """How many tokens `a` and `b` share from the start."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


class ExactPrefixLlama(Llama):
    """`Llama` whose `generate` evaluates prompts split as the module docstring says.

    `saved_bytes`: memory for saved prompt caches (0: only the one in the model is reused).
    A model that keeps every position's logits (`logits_all`) saves none: the logits of a
    saved prompt would cost 200 KB a token to keep.
    """

    def __init__(self, *args: Any, saved_bytes: int = SAVED_BYTES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The tokens evaluated by the split from position 0, while they stay untouched.
        self.split_prefix: tuple[int, ...] = ()
        self.saved_bytes = 0 if self._logits_all else max(0, saved_bytes)
        self._saved: OrderedDict[tuple[int, ...], _Saved] = OrderedDict()
        self._saved_size = 0
        #: Prompts, those whose whole head was reused, and the prompt tokens reused in all
        #: (whole heads and shared batches), for benchmarks and tests.
        self.prompts = 0
        self.prefix_hits = 0
        self.reused_tokens = 0

    @property
    def saved(self) -> list[tuple[int, ...]]:
        """The heads whose caches are saved, least recently used first."""
        return list(self._saved)

    @property
    def saved_size(self) -> int:
        """Bytes the saved caches take."""
        return self._saved_size

    def eval(self, tokens: Sequence[int]) -> None:
        if self.n_tokens < len(self.split_prefix):  # evaluating over the split prefix
            self.split_prefix = ()
        super().eval(tokens)

    def load_state(self, state: Any) -> None:
        self.split_prefix = ()
        super().load_state(state)

    def prime(self, tokens: Sequence[int]) -> bool:
        """Leave all but the last of `tokens` evaluated as the split evaluates them, reusing
        what the module docstring allows; True when the whole head was reused."""
        head = tuple(tokens[:-1])
        self.prompts += 1
        current = self._current()
        if current == head:
            self._hit(len(head))
            return True
        wanted = np.array(head, dtype=np.intc)
        usable, source = self._usable(np.array(current, dtype=np.intc), wanted), None
        for key, saved in reversed(self._saved.items()):
            n = self._usable(saved.tokens, wanted)
            if n > usable:
                usable, source = n, key
        if source is not None:
            self._restore(source)
            if usable == len(head):
                self._hit(usable)
                return True
        self.split_prefix = ()
        if usable:
            self.reused_tokens += usable
            self.n_tokens = usable
        else:
            self.reset()  # type: ignore[no-untyped-call]
        if len(head) > usable:
            super().eval(head[usable:])
        self.split_prefix = head
        self._save(head)
        return False

    def generate(
        self, tokens: Sequence[int], *args: Any, **kwargs: Any
    ) -> Generator[int, Sequence[int] | None, None]:
        if kwargs.get("reset", True) and tokens:
            self.prime(tokens)
        return super().generate(tokens, *args, **kwargs)

    def _current(self) -> tuple[int, ...]:
        """The split prefix in the model's cache, () when something overwrote it."""
        head = self.split_prefix
        if self.n_tokens >= len(head) and tuple(self._input_ids[: len(head)].tolist()) == head:
            return head
        return ()

    def _usable(self, cached: np.ndarray, wanted: np.ndarray) -> int:
        """Tokens of `wanted` the cache of `cached` can give: all when the two are one head,
        else the whole batches they share."""
        shared = shared_length(cached, wanted)
        if shared == len(cached) == len(wanted):
            return shared
        return shared // self.n_batch * self.n_batch

    def _hit(self, n: int) -> None:
        self.prefix_hits += 1
        self.reused_tokens += n
        self.n_tokens = n
        # the last token is evaluated again even when it was too: its logits row is then
        # fresh, not one a logits processor already wrote into
        self._requires_eval = True

    def _save(self, head: tuple[int, ...]) -> None:
        """Keep the cache of `head` (just evaluated), dropping the least recently used."""
        if not head or self.saved_bytes == 0 or head in self._saved:
            return
        ctx = self._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        if size > self.saved_bytes:
            return
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        data = bytes(memoryview(buffer)[:written])
        self._saved[head] = _Saved(np.array(head, dtype=np.intc), data)
        self._saved_size += written
        while self._saved_size > self.saved_bytes:
            _, dropped = self._saved.popitem(last=False)
            self._saved_size -= len(dropped.data)

    def _restore(self, head: tuple[int, ...]) -> None:
        """Put the saved cache of `head` back in the model, as its evaluation left it."""
        saved = self._saved[head]
        self._saved.move_to_end(head)
        self._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
        buffer = (ctypes.c_uint8 * len(saved.data)).from_buffer_copy(saved.data)
        if llama_cpp.llama_state_seq_set_data(self._ctx.ctx, buffer, len(saved.data), 0) == 0:
            raise RuntimeError("llama.cpp could not restore a saved prompt cache")
        self.input_ids[: len(head)] = saved.tokens
        self.n_tokens = len(head)
        self.split_prefix = head
