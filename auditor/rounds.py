"""Wire one round together: config + suite -> endpoints and plan -> runner -> findings."""

from __future__ import annotations

import asyncio
import signal
import uuid
from dataclasses import dataclass

import structlog

from auditor import __version__
from auditor.budget import (
    BudgetPolicy,
    EndpointKey,
    Plan,
    SendEverySample,
    SequentialPolicy,
    SpendMeter,
)
from auditor.compare import build_findings
from auditor.config import AuditorConfig, ModelConfig, ProviderConfig
from auditor.diagnose import ALPHA, combined_p
from auditor.errors import UsageError
from auditor.likelihood import score_round
from auditor.limits import ProviderLimits
from auditor.probes import Suite
from auditor.providers.base import ProviderAdapter, adapters
from auditor.providers.cache import CachedReference
from auditor.providers.reference import ReferenceEndpoint, ReferenceUnavailable, build_reference
from auditor.records import ProbeCase
from auditor.runner import Endpoint, RoundOutcome, RoundProgress, RoundRunner
from auditor.secrets import Redactor
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow

log = structlog.get_logger(__name__)

REFERENCE = "reference"


@dataclass
class RoundSelection:
    suite: Suite
    models: list[ModelConfig]


def select(
    config: AuditorConfig, suite: Suite, model: str | None, provider: str | None
) -> RoundSelection:
    models = [m for m in config.models if model is None or m.name == model]
    if not models:
        known = ", ".join(m.name for m in config.models)
        raise UsageError(f"--model: no model named {model!r} in the config (known: {known})")
    if provider is not None:
        models = [
            m.model_copy(update={"providers": [p for p in m.providers if p.name == provider]})
            for m in models
        ]
        models = [m for m in models if m.providers]
        if not models:
            raise UsageError(
                f"--provider: no provider named {provider!r} for the selected model(s)"
            )
    return RoundSelection(suite=suite, models=models)


def make_adapter(config: ProviderConfig) -> ProviderAdapter:
    try:
        cls = adapters.get(config.adapter)
    except KeyError as exc:
        raise UsageError(f"provider {config.name}: {exc.args[0]}") from None
    return cls(config)  # type: ignore[call-arg]


@dataclass
class RoundResult:
    round_id: str
    outcome: RoundOutcome
    reference_note: str | None


async def run_round_async(
    config: AuditorConfig,
    store: Store,
    selection: RoundSelection,
    progress: RoundProgress | None = None,
    with_reference: bool = True,
    score_likelihood: bool = True,
    stop: asyncio.Event | None = None,
    drain_timeout_s: float = 30.0,
) -> RoundResult:
    """One round of `selection`, stored as it goes. It stops cleanly (in-flight requests get
    `drain_timeout_s` to finish; the round is marked interrupted) on SIGINT/SIGTERM, or, when
    the caller owns the signals (the daemon), once `stop` is set."""
    suite = selection.suite
    cases: dict[str, ProbeCase] = {c.content_hash: c for c in suite.cases}
    store.upsert_probe_cases(suite.cases)
    redactor = Redactor.from_config(config)

    endpoints: list[Endpoint] = []
    references: dict[str, ReferenceEndpoint] = {}
    reference_note: str | None = None
    reference_digest: str | None = None
    for model in selection.models:
        for p in model.providers:
            provider_id = store.upsert_provider(
                model.name,
                p.name,
                base_url=p.base_url,
                model_id=p.model,
                trusted=p.trusted,
                config=p.public_view(),
            )
            endpoints.append(
                Endpoint(
                    model.name, p.name, make_adapter(p), ProviderLimits(p), provider_id, p.price
                )
            )
        ref_config = config.reference_for(model) if with_reference else None
        if ref_config is None:
            continue
        try:
            reference = build_reference(ref_config)
        except ReferenceUnavailable as exc:
            reference_note = f"reference not used: {exc}"
            log.warning("reference.unavailable", model=model.name, reason=str(exc))
            continue
        reference_digest = reference.digest
        references[model.name] = reference
        provider_id = store.upsert_provider(
            model.name,
            REFERENCE,
            kind="reference",
            base_url=reference.base_url,
            model_id=reference.model_id,
            trusted=True,
            config=ref_config.model_dump(mode="json"),
        )
        endpoints.append(
            Endpoint(
                model.name,
                REFERENCE,
                CachedReference(reference.adapter, store, reference.digest, ref_config.engine),
                ProviderLimits(reference.limits),
                provider_id,
            )
        )

    plan = Plan.samples([e.key for e in endpoints], suite.cases)
    round_row = store.start_round(
        RoundRow(
            id=uuid.uuid4().hex[:12],
            suite=suite.name,
            suite_hash=suite.hash,
            auditor_version=__version__,
            reference_digest=reference_digest,
            planned_requests=len(plan),
            models=[m.name for m in selection.models],
            budget=config.budget.model_dump(mode="json"),
        )
    )
    log.info("round.started", round_id=round_row.id, suite=suite.name, planned=len(plan))
    round_id = round_row.id

    async def score_likelihood_so_far() -> str | None:
        notes = [
            await _score_likelihood(store, round_id, name, reference, progress)
            for name, reference in references.items()
        ]
        return next((n for n in notes if n), None)

    async def judge() -> dict[EndpointKey, float | None]:
        if score_likelihood:
            await score_likelihood_so_far()
        findings, _, _ = await asyncio.to_thread(build_findings, store, round_id)
        return {
            (f.model, f.provider): None if f.verdict == "unavailable" else combined_p(f.tests)
            for f in findings
        }

    policy: BudgetPolicy = SendEverySample(plan)
    if config.budget.sequential is not None:
        policy = SequentialPolicy(
            plan,
            extendable=list(suite.cases),
            providers=[e.key for e in endpoints if e.name != REFERENCE],
            references={m: REFERENCE for m in references},
            judge=judge,
            settings=config.budget.sequential,
            alpha=ALPHA,
        )
    runner = RoundRunner(
        store, round_id, endpoints, cases, policy, SpendMeter(config.budget), redactor, progress,
        drain_timeout_s=drain_timeout_s,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    handled = []
    watcher: asyncio.Task[None] | None = None
    if stop is not None:
        watcher = asyncio.create_task(_stop_when_set(stop, runner))
    else:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, runner.stop, f"signal {sig.name}")
                handled.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
    try:
        outcome = await runner.run()
        # Asked to stop: findings from what was answered, without waiting for the scoring.
        stopping = stop is not None and stop.is_set()
        if outcome.status != "interrupted" and score_likelihood and not stopping:
            reference_note = reference_note or await score_likelihood_so_far()
    except BaseException:
        store.finish_round(round_row.id, "interrupted", "error")
        raise
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        if watcher is not None:
            watcher.cancel()
        for reference in references.values():
            if reference.scorer is not None and reference.scorer is not reference.adapter:
                await reference.scorer.aclose()
    if isinstance(policy, SequentialPolicy):
        for (model, name), look in policy.state.items():
            log.info(
                "sequential.settled", round_id=round_id, model=model, provider=name,
                decision=look.decision, p_value=look.p_value, looks=look.looks,
            )  # fmt: skip
    store.finish_round(round_row.id, outcome.status, outcome.stop_reason)
    findings, detector, params = build_findings(store, round_row.id)
    store.save_findings(round_row.id, findings, detector, params)
    log.info("round.finished", round_id=round_row.id, status=outcome.status, stored=outcome.stored)
    return RoundResult(round_row.id, outcome, reference_note)


async def _stop_when_set(stop: asyncio.Event, runner: RoundRunner) -> None:
    await stop.wait()
    runner.stop("shutdown")


async def _score_likelihood(
    store: Store,
    round_id: str,
    model: str,
    reference: ReferenceEndpoint,
    progress: RoundProgress | None,
) -> str | None:
    """Every answer of the round not scored yet, under the reference weights; the reason
    when it cannot. The caller closes the scorer once the round is over."""
    if reference.scorer is None:
        return reference.scorer_note
    outcome = await score_round(
        store, round_id, model, reference.scorer, reference.digest, progress
    )
    return outcome.note
