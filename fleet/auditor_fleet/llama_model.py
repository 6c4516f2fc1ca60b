"""The fleet's llama.cpp models: each weights file loaded once per process, behind one lock.

The machine has 2 cores: each weights file is loaded once per process (`shared_model`) and
every model call in the process holds one lock (`MODEL_LOCK`), whichever member or weights
it serves. Each call's threads are `fleet_threads()` (`AUDITOR_FLEET_THREADS` overrides).

It also has the raw prompt format (`raw_prompt`, `RAW_STOP`): the conversation as plain
"User: ..." lines, what a server without the chat template sends.
"""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from auditor_fleet.backends import ChatMessage

if TYPE_CHECKING:
    from llama_cpp import Llama

    from auditor.providers.llama_prefix import ExactPrefixLlama

#: Context size of every fleet model (the longest core probe is about 1,500 tokens), unless
#: the fleet spec says otherwise (`FleetSpec.n_ctx`, e.g. for a ladder of long prompts).
N_CTX = 2048
#: Threads per model call; `AUDITOR_FLEET_THREADS` overrides (the reference runs beside us).
THREADS_ENV = "AUDITOR_FLEET_THREADS"
#: The raw prompt format's stop: the model starting the user's next turn.
RAW_STOP = "\nUser:"

MODEL_LOCK = threading.RLock()
_MODELS: dict[tuple[str, int, bool], ExactPrefixLlama] = {}


def fleet_threads() -> int:
    value = os.environ.get(THREADS_ENV)
    return max(1, int(value)) if value else os.cpu_count() or 1


def shared_model(path: Path, n_ctx: int = N_CTX, logits_all: bool = False) -> Llama:
    """The process's one `Llama` for this weights file, loaded on first use; a second one
    keeps the logits of every position, for the requests that ask for logprobs (keeping
    them makes prompt evaluation about 40% slower, so plain requests go without)."""
    from auditor.providers.llama_prefix import ExactPrefixLlama

    key = (str(Path(path).resolve()), n_ctx, logits_all)
    llm = _MODELS.get(key)  # no lock on the fast path: it is held through every generation
    if llm is not None:
        return llm
    with MODEL_LOCK:
        llm = _MODELS.get(key)
        if llm is None:
            try:
                llm = ExactPrefixLlama(
                    model_path=key[0],
                    n_ctx=n_ctx,
                    n_threads=fleet_threads(),
                    # llama-cpp-python would use every core for prompts whatever n_threads
                    # says; two processes doing that on 2 cores spin-wait each other to a crawl
                    n_threads_batch=fleet_threads(),
                    logits_all=logits_all,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise RuntimeError(f"cannot load {path}: {exc}") from None
            _MODELS[key] = llm
        return llm


def reuse_summary() -> list[str]:
    """One line per model loaded: its prompts and what it reused of them
    (`auditor.providers.llama_prefix`)."""
    with MODEL_LOCK:
        models = list(_MODELS.items())
    return [
        f"model {Path(path).name} (logits_all={logits_all}): {llm.prompts} prompts, "
        f"{llm.prefix_hits} reused whole, {llm.reused_tokens} prompt tokens reused"
        for (path, _, logits_all), llm in models
    ]


@atexit.register
def _close_models() -> None:
    """Free the cached models before interpreter teardown, when llama-cpp-python can still
    do it (later, its `__del__` finds its own module half gone and prints a traceback)."""
    if not MODEL_LOCK.acquire(timeout=1):
        return
    try:
        for llm in _MODELS.values():
            llm.close()
        _MODELS.clear()
    finally:
        MODEL_LOCK.release()


def raw_prompt(messages: list[ChatMessage]) -> str:
    """The conversation as plain 'User: ...' lines: what a server without the template sends."""
    lines = [f"{m.role.capitalize()}: {m.text()}" for m in messages]
    return "\n".join([*lines, "Assistant:"])
