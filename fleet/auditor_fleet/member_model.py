"""One fleet member's view of the llama.cpp backend: its weights, prompt format and noise.

Members see the backend through `LlamaBackend.bind`, which gives each a `MemberModel`: its
weights (the reference, a requantized or a perturbed variant) and prompt format. A member
needs of its backend only what `ModelRunner` lists, so this module does not import
`llama_backend` (which imports it).
"""

from __future__ import annotations

import hashlib
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from auditor_fleet.backends import (
    Backend,
    ChatMessage,
    ChatRequest,
    Generation,
    TextCallback,
    TextCompletion,
    TextCompletionRequest,
)
from auditor_fleet.llama_model import shared_model
from auditor_fleet.spec import FleetMember
from auditor_fleet.variants import DEFAULT_PERTURB_SCALE, PERTURB_TENSORS, perturb, requantize


def request_seed(tag: str, request: ChatRequest | TextCompletionRequest, drawn: int) -> int:
    """The noise seed of `request`: `drawn` (a fresh draw) when it carries no `seed`; else
    one derived from `tag` (the member), the seed and the request itself, so that the same
    seeded request is answered alike every time, streamed or not, as a real server answers
    it. Choices of one request differ by their seeds (the server gives each its own)."""
    if request.seed is None:
        return drawn
    key = request.model_dump_json(exclude={"stream", "stream_options", "n"})
    digest = hashlib.blake2b(f"{tag}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class ModelRunner(Protocol):
    """What a member uses of the backend that owns the models (`LlamaBackend`)."""

    model_path: Path
    n_ctx: int
    perturb_scale: float | None
    perturb_seed: int
    perturb_tensors: str | None

    def run(
        self,
        request: ChatRequest,
        weights: Path,
        noise: float,
        noise_seed: int,
        raw_template: bool = False,
        on_text: TextCallback | None = None,
    ) -> Generation: ...

    def run_completion(
        self, request: TextCompletionRequest, weights: Path, noise: float, noise_seed: int
    ) -> TextCompletion: ...

    def truncate(self, messages: list[ChatMessage], budget: int) -> list[ChatMessage]: ...

    def count_prompt(self, request: ChatRequest, weights: Path | None = None) -> int: ...

    def _worker(self) -> ThreadPoolExecutor: ...


class MemberModel(Backend):
    """One member's view of a `LlamaBackend`: its weights, prompt format and noise.

    `quantized` members run on a requantized file (`FleetMember.quant_type`), `variant_mix`
    and `quantized_mix` members send a fraction of their requests to the perturbed or the
    requantized one, `wrong_template` members format a fraction of them as raw text. Variant
    files are built (once, cached) and loaded when the fleet starts. Calls go through the
    parent's single worker thread.
    """

    blocking = True

    def __init__(self, parent: ModelRunner, member: FleetMember, seed: int) -> None:
        self.parent = parent
        self.member = member
        strength = member.effective_strength()
        source = parent.model_path
        self.weights = source
        self.alternate: Path | None = None
        self.alternate_share = 0.0
        self.raw_share = strength if member.fault == "wrong_template" else 0.0
        qtype = member.quant_type()
        if member.fault == "quantized" and qtype:
            self.weights = requantize(source, qtype)
        elif member.fault == "quantized_mix" and qtype:
            self.alternate = requantize(source, qtype)
            self.alternate_share = strength
        elif member.fault == "variant_mix":
            scale = parent.perturb_scale or DEFAULT_PERTURB_SCALE
            tensors = parent.perturb_tensors or PERTURB_TENSORS
            self.alternate = perturb(source, scale, parent.perturb_seed, tensors=tensors)
            self.alternate_share = strength
        self.rng = random.Random(f"{seed}/{member.name}/model")
        self.tag = f"{seed}/{member.name}"
        for path in (self.weights, self.alternate):
            if path is not None:
                shared_model(path, parent.n_ctx)

    def generate(self, request: ChatRequest, on_text: TextCallback | None = None) -> Generation:
        # Decided in the worker thread, one request at a time: the draws stay in order.
        alternate = self.alternate is not None and self.rng.random() < self.alternate_share
        raw = self.rng.random() < self.raw_share
        weights = self.alternate if alternate and self.alternate else self.weights
        seed = request_seed(self.tag, request, self.rng.getrandbits(63))
        return self.parent.run(
            request, weights, self.member.noise, seed, raw_template=raw, on_text=on_text
        )

    def complete(self, request: TextCompletionRequest) -> TextCompletion:
        """The member's weights (a `variant_mix` or `quantized_mix` member's share goes to
        its other weights) and noise; the prompt is the caller's text, so no prompt format
        fault applies."""
        alternate = self.alternate is not None and self.rng.random() < self.alternate_share
        weights = self.alternate if alternate and self.alternate else self.weights
        seed = request_seed(self.tag, request, self.rng.getrandbits(63))
        return self.parent.run_completion(request, weights, self.member.noise, seed)

    def truncate(self, messages: list[ChatMessage], budget: int) -> list[ChatMessage]:
        return self.parent.truncate(messages, budget)

    def count_prompt(self, request: ChatRequest) -> int:
        return self.parent.count_prompt(request, self.weights)

    def _worker(self) -> ThreadPoolExecutor:
        return self.parent._worker()

    def close(self) -> None:
        """The parent owns the worker thread and closes it."""
