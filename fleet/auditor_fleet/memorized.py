"""The `memorized` fault: a benchmark-tuned variant, simulated.

A model tuned on benchmark items (or served with their answers at hand) answers the familiar
items well and everything else as before. The member planted with `memorized` does exactly
that: a chat request whose last user message is one of the listed prompts gets the listed
answer; every other request is answered by the member's model as usual. The list is the
member's `memorized` field: a mapping of prompt text to answer, or the path of a YAML file
holding one (a relative path is read from the fleet process's working directory). Prompts
match after collapsing runs of whitespace; answers are sent whole, as written.

A memorised answer is still billed like a real one: the prompt goes through the member's
model (one token generated, so `prompt_tokens` is the model's own count with its chat
template) and `completion_tokens` counts the answer in the model's tokens (whitespace words
for the echo backend). It comes with no token logprobs (`logprobs: null`) and is streamed
at the end, in one go. Text completions (`/v1/completions`) are left to the model.

Nothing else in the auditor knows the list: a detector has to notice that the provider
solves some problems much better than the same problems with other numbers
(`auditor.comparisons.perturbation`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from auditor.yamlfile import read_yaml
from auditor_fleet.backends import (
    Backend,
    ChatMessage,
    ChatRequest,
    Generation,
    TextCallback,
    TextCompletion,
    TextCompletionRequest,
    split_tokens,
)
from auditor_fleet.spec import FleetMember, FleetSpecError


def normalize(prompt: str) -> str:
    """A prompt as the list is keyed: runs of whitespace collapsed, ends stripped."""
    return " ".join(prompt.split())


def load_answers(source: dict[str, str | int | float] | Path) -> dict[str, str]:
    """The memorised answers, keyed by normalized prompt, from a mapping or a YAML file."""
    if isinstance(source, Path):
        data, _ = read_yaml(source, FleetSpecError)
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) for k, v in data.items()
        ):
            raise FleetSpecError(str(source), "expected a mapping of prompt: answer", "memorized")
        source = data
    return {normalize(prompt): str(answer) for prompt, answer in source.items()}


def with_memory(backend: Backend, member: FleetMember) -> Backend:
    """`backend` as a `memorized` member sees it; other members' backends unchanged."""
    if member.fault != "memorized" or not member.memorized:
        return backend
    return MemorizedModel(backend, load_answers(member.memorized))


class MemorizedModel(Backend):
    """A member's backend that answers listed prompts from memory (see the module doc)."""

    def __init__(self, inner: Backend, answers: dict[str, str]) -> None:
        self.inner = inner
        self.answers = answers
        self.blocking = inner.blocking  # type: ignore[misc]  # runs where the inner one runs

    def lookup(self, messages: list[ChatMessage]) -> str | None:
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        return None if last_user is None else self.answers.get(normalize(last_user.text()))

    def generate(self, request: ChatRequest, on_text: TextCallback | None = None) -> Generation:
        answer = self.lookup(request.messages)
        if answer is None:
            return self.inner.generate(request, on_text)
        # the prompt goes through the model as it would (and is billed as it would be)
        probe = request.model_copy(
            update={"max_tokens": 1, "logprobs": False, "top_logprobs": None, "stream": False}
        )
        billed = self.inner.generate(probe)
        return Generation(
            text=answer,
            finish_reason="stop",
            prompt_tokens=billed.prompt_tokens,
            completion_tokens=self._count(answer),
        )

    def _count(self, text: str) -> int:
        """`text` in the model's tokens (called on the worker thread, which owns the model)."""
        from auditor_fleet.llama_backend import LlamaBackend
        from auditor_fleet.llama_model import MODEL_LOCK, shared_model

        parent = getattr(self.inner, "parent", self.inner)
        if isinstance(parent, LlamaBackend):
            llm = shared_model(parent.model_path, parent.n_ctx)
            with MODEL_LOCK:
                return len(llm.tokenize(text.encode(), add_bos=False, special=False))
        return len(split_tokens(text))

    def complete(self, request: TextCompletionRequest) -> TextCompletion:
        return self.inner.complete(request)

    def truncate(self, messages: list[ChatMessage], budget: int) -> list[ChatMessage]:
        return self.inner.truncate(messages, budget)

    def count_prompt(self, request: ChatRequest) -> int | None:
        return self.inner.count_prompt(request)

    def _worker(self) -> ThreadPoolExecutor:
        return self.inner._worker()

    def close(self) -> None:
        """The inner backend's owner closes it."""
