"""Wire one round together: config + suite -> endpoints and plan -> runner -> findings."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import structlog

from auditor import __version__
from auditor.config import AuditorConfig, ModelConfig, ProviderConfig
from auditor.errors import UsageError
from auditor.judging.context_window import stored_rungs
from auditor.judging.findings import build_findings
from auditor.judging.verdict import ALPHA, combined_p
from auditor.probes import Suite
from auditor.probes.suite import ModelCases
from auditor.providers.base import ProviderAdapter, adapters
from auditor.providers.cache import CachedReference
from auditor.providers.reference import ReferenceEndpoint, ReferenceUnavailable, build_reference
from auditor.records import Finding, ProbeCase
from auditor.rounds.budget import (
    BudgetPolicy,
    EndpointKey,
    Evidence,
    Plan,
    SendEverySample,
    SequentialPolicy,
    SpendMeter,
)
from auditor.rounds.climb import LadderClimb, is_ladder_case, rungs_of
from auditor.rounds.limits import ProviderLimits
from auditor.rounds.runner import Endpoint, RoundOutcome, RoundProgress, RoundRunner
from auditor.scorers.reference_likelihood import score_round
from auditor.secrets import Redactor
from auditor.stats.ladder import RungStatus
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow

log = structlog.get_logger(__name__)

REFERENCE = "reference"


@dataclass
class RoundSelection:
    suite: Suite
    models: list[ModelConfig]
    #: The cases each model is sent, per-model cases expanded and the sampler applied.
    cases: dict[str, list[ProbeCase]]


def select(
    config: AuditorConfig, suite: Suite, model: str | None, provider: str | None
) -> RoundSelection:
    """The models (and providers) of a round, and the cases each is sent: the suite's, with
    its per-model cases expanded at the lengths the model's profile gives (`Suite.cases_for`;
    one the profile gives none for is skipped, with a warning) and the profile's sampler. A
    model left with no case is left out; none left is a usage error."""
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
    expanded = {m.name: suite.cases_for(m.name, m.profile) for m in models}
    if not any(e.cases for e in expanded.values()):
        case_id, reason = next(e.skipped[0] for e in expanded.values())
        names = ("model " if len(expanded) == 1 else "models ") + ", ".join(map(repr, expanded))
        raise UsageError(
            f"suite {suite.name!r} has nothing to send to {names} (case {case_id!r}: {reason})"
        )
    for name, e in expanded.items():
        for case_id, reason in e.skipped:
            log.warning(
                "suite.case_skipped", suite=suite.name, case=case_id, model=name, reason=reason
            )
    sent = {m.name: sent_as(expanded[m.name].cases, m) for m in models}
    for name, (_, skipped) in sent.items():
        for case_id, reason in skipped:
            log.warning(
                "suite.case_skipped", suite=suite.name, case=case_id, model=name, reason=reason
            )
    models = [m for m in models if sent[m.name].cases]
    if not models:
        case_id, reason = next(s.skipped[0] for s in sent.values() if s.skipped)
        raise UsageError(f"suite {suite.name!r} has nothing to send (case {case_id!r}: {reason})")
    return RoundSelection(suite, models, {m.name: sent[m.name].cases for m in models})


def make_adapter(config: ProviderConfig) -> ProviderAdapter:
    try:
        cls = adapters.get(config.adapter)
    except KeyError as exc:
        raise UsageError(f"provider {config.name}: {exc.args[0]}") from None
    # A registered adapter is built from its provider's configuration (the base class, also
    # that of the reference engines, does not say how).
    build = cast(Callable[[ProviderConfig], ProviderAdapter], cls)
    return build(config)


@dataclass
class RoundResult:
    round_id: str
    outcome: RoundOutcome
    reference_note: str | None


@dataclass
class RoundEndpoints:
    """Every endpoint of a round: the providers and, per model, its reference."""

    endpoints: list[Endpoint] = field(default_factory=list)
    references: dict[str, ReferenceEndpoint] = field(default_factory=dict)
    reference_note: str | None = None  # why a reference could not be used
    reference_digest: str | None = None


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
    cases = selection.cases
    by_hash = {c.content_hash: c for model_cases in cases.values() for c in model_cases}
    store.upsert_probe_cases(list(by_hash.values()))
    endpoints = register_endpoints(config, store, selection, with_reference)

    def plan_of(of_model: dict[str, list[ProbeCase]]) -> Plan:
        return Plan.union(
            Plan.samples([e.key for e in endpoints.endpoints if e.model == model], model_cases)
            for model, model_cases in of_model.items()
        )

    # The context ladder is climbed rung by rung (`auditor.rounds.climb`); the rest goes
    # through the budget policy. Planned: every request, as if every provider climbed.
    others = {m: [c for c in cs if not is_ladder_case(c)] for m, cs in cases.items()}
    round_id = start_round(config, store, selection, endpoints, len(plan_of(cases)))
    scoring = LikelihoodScoring(store, round_id, endpoints.references, progress)
    policy = budget_policy(config, plan_of(others), others, endpoints, scoring, score_likelihood)
    ladders = {m: rungs for m, cs in cases.items() if (rungs := rungs_of(cs))}
    if ladders:
        policy = ladder_climb(policy, ladders, endpoints, selection, store, round_id)
    runner = RoundRunner(
        store,
        round_id,
        endpoints.endpoints,
        by_hash,
        policy,
        SpendMeter(config.budget),
        Redactor.from_config(config),
        progress,
        drain_timeout_s=drain_timeout_s,
    )
    try:
        outcome = await send_until_done(runner, stop)
        # Asked to stop: findings from what was answered, without waiting for the scoring.
        stopping = stop is not None and stop.is_set()
        note = endpoints.reference_note
        if outcome.status != "interrupted" and score_likelihood and not stopping:
            note = note or await scoring.score_so_far()
    except BaseException:
        store.finish_round(round_id, "interrupted", "error")
        raise
    finally:
        await scoring.aclose()
    log_sequential_decisions(round_id, policy)
    finish_round(store, round_id, outcome)
    return RoundResult(round_id, outcome, note)


def sent_as(cases: list[ProbeCase], model: ModelConfig) -> ModelCases:
    """Cases as `model` is sent them (so their hash, what is sent, differs by model), as its
    profile says: sampled ones take the sampler it recommends; max_tokens, the answer's
    budget, gains the tokens a reasoning model may spend reasoning, and is cut to the
    profile's max_output. A case asking for an effort level the model lacks (or any level,
    of a model that does not reason) is skipped, with the reason."""
    profile = model.profile
    sampler = profile.sampler.as_params() if profile.sampler else None
    reasoning = profile.reasoning
    out: list[ProbeCase] = []
    skipped: list[tuple[str, str]] = []
    for case in cases:
        level = case.reasoning_effort
        if level is not None and (reasoning is None or level not in reasoning.levels):
            why = "does not reason" if reasoning is None else f"has no level {level!r}"
            skipped.append((case.id, f"it asks for reasoning effort {level!r}; the model {why}"))
            continue
        if level is not None and reasoning is not None:
            rank = {**case.metadata, "effort_rank": reasoning.levels.index(level)}
            case = case.model_copy(update={"metadata": rank})
        if sampler:
            case = case.with_sampler(sampler)
        out.append(
            case.with_output_budget(reasoning.budget if reasoning else None, profile.max_output)
        )
    return ModelCases(out, skipped)


def register_endpoints(
    config: AuditorConfig, store: Store, selection: RoundSelection, with_reference: bool
) -> RoundEndpoints:
    """Each provider of the selection (stored in `providers`, with its adapter and limits)
    and each model's reference engine, cached in the database by weights digest. A
    reference that cannot be built is left out, with the reason."""
    out = RoundEndpoints()
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
            out.endpoints.append(
                Endpoint(
                    model.name,
                    p.name,
                    make_adapter(p.model_copy(update={"reasoning": model.reasoning_request(p)})),
                    ProviderLimits(p),
                    provider_id,
                    p.price,
                )
            )
        ref_config = config.reference_for(model) if with_reference else None
        if ref_config is None:
            continue
        try:
            reference = build_reference(ref_config, model.profile.reasoning)
        except ReferenceUnavailable as exc:
            out.reference_note = f"reference not used: {exc}"
            log.warning("reference.unavailable", model=model.name, reason=str(exc))
            continue
        out.reference_digest = reference.digest
        out.references[model.name] = reference
        provider_id = store.upsert_provider(
            model.name,
            REFERENCE,
            kind="reference",
            base_url=reference.base_url,
            model_id=reference.model_id,
            trusted=True,
            config=ref_config.model_dump(mode="json"),
        )
        cached = CachedReference(reference.adapter, store, reference.digest, ref_config.engine)
        out.endpoints.append(
            Endpoint(model.name, REFERENCE, cached, ProviderLimits(reference.limits), provider_id)
        )
    return out


def start_round(
    config: AuditorConfig,
    store: Store,
    selection: RoundSelection,
    endpoints: RoundEndpoints,
    planned: int,
) -> str:
    """The round's row: what it will send, and what it ran with (version, suite hash,
    reference weights digest, budget), so its findings can be recomputed later."""
    suite = selection.suite
    row = store.start_round(
        RoundRow(
            id=uuid.uuid4().hex[:12],
            suite=suite.name,
            suite_hash=suite.hash,
            auditor_version=__version__,
            reference_digest=endpoints.reference_digest,
            planned_requests=planned,
            models=[m.name for m in selection.models],
            budget=config.budget.model_dump(mode="json"),
            judging={
                "noise_tolerance": {m.name: config.noise_tolerance(m) for m in selection.models},
                "context_window": {m.name: m.profile.context_window for m in selection.models},
            },
        )
    )
    log.info("round.started", round_id=row.id, suite=suite.name, planned=planned)
    return row.id


@dataclass
class LikelihoodScoring:
    """The round's answers scored under each model's reference weights, as far as they go
    (after each look of a sequential budget, and once the round is answered)."""

    store: Store
    round_id: str
    references: dict[str, ReferenceEndpoint]
    progress: RoundProgress | None

    async def score_so_far(self) -> str | None:
        """Score every answer not scored yet; the first reason scoring could not run."""
        notes = [await self._score(model, ref) for model, ref in self.references.items()]
        return next((n for n in notes if n), None)

    async def _score(self, model: str, reference: ReferenceEndpoint) -> str | None:
        if reference.scorer is None:
            return reference.scorer_note
        outcome = await score_round(
            self.store, self.round_id, model, reference.scorer, reference.digest, self.progress
        )
        return outcome.note

    async def aclose(self) -> None:
        for reference in self.references.values():
            adapter: object = reference.adapter  # one engine may be both (LlamaCppEngine)
            if reference.scorer is not None and reference.scorer is not adapter:
                await reference.scorer.aclose()


def budget_policy(
    config: AuditorConfig,
    plan: Plan,
    cases: dict[str, list[ProbeCase]],
    endpoints: RoundEndpoints,
    scoring: LikelihoodScoring,
    score_likelihood: bool,
) -> BudgetPolicy:
    """Every sample at once, or, with `budget.sequential`, in looks: after each, the answers
    are scored and every provider's findings recomputed to decide who gets more requests."""
    if config.budget.sequential is None:
        return SendEverySample(plan)
    store, round_id = scoring.store, scoring.round_id

    async def judge() -> dict[EndpointKey, Evidence]:
        if score_likelihood:
            await scoring.score_so_far()
        findings, _, _ = await asyncio.to_thread(build_findings, store, round_id)
        return {(f.model, f.provider): evidence_of(f) for f in findings}

    return SequentialPolicy(
        plan,
        extendable=cases,
        providers=[e.key for e in endpoints.endpoints if e.name != REFERENCE],
        references={m: REFERENCE for m in endpoints.references},
        judge=judge,
        settings=config.budget.sequential,
        alpha=ALPHA,
    )


def ladder_climb(
    inner: BudgetPolicy,
    ladders: dict[str, list[list[ProbeCase]]],
    endpoints: RoundEndpoints,
    selection: RoundSelection,
    store: Store,
    round_id: str,
) -> LadderClimb:
    """`inner` with the ladder climbed rung by rung, each rung judged from what is stored."""
    windows = {m.name: m.profile.context_window for m in selection.models}

    async def rungs() -> dict[EndpointKey, list[RungStatus]]:
        return await asyncio.to_thread(stored_rungs, store, round_id, windows)

    return LadderClimb(
        inner,
        ladders,
        providers=[e.key for e in endpoints.endpoints if e.name != REFERENCE],
        references={m: REFERENCE for m in endpoints.references},
        rungs=rungs,
    )


def evidence_of(finding: Finding) -> Evidence:
    """What the sequential policy reads of a finding (nothing for an unavailable provider)."""
    if finding.verdict == "unavailable":
        return Evidence(None)
    p_values = [t.p_value for t in finding.tests if t.p_value is not None]
    return Evidence(combined_p(finding.tests), min(p_values, default=None))


async def send_until_done(runner: RoundRunner, stop: asyncio.Event | None) -> RoundOutcome:
    """Run the round; it stops early on SIGINT/SIGTERM, or once `stop` is set when the
    caller (the daemon) owns the signals."""
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
        return await runner.run()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        if watcher is not None:
            watcher.cancel()


async def _stop_when_set(stop: asyncio.Event, runner: RoundRunner) -> None:
    await stop.wait()
    runner.stop("shutdown")


def log_sequential_decisions(round_id: str, policy: BudgetPolicy) -> None:
    if isinstance(policy, LadderClimb):
        for (model, name), sent in policy.stopped.items():
            log.info("ladder.stopped", round_id=round_id, model=model, provider=name, rungs=sent)
        policy = policy.inner
    if isinstance(policy, SequentialPolicy):
        for (model, name), look in policy.state.items():
            log.info(
                "sequential.settled",
                round_id=round_id,
                model=model,
                provider=name,
                decision=look.decision,
                p_value=look.p_value,
                looks=look.looks,
            )


def finish_round(store: Store, round_id: str, outcome: RoundOutcome) -> None:
    """Mark the round finished and store every provider's finding."""
    store.finish_round(round_id, outcome.status, outcome.stop_reason)
    findings, detector, params = build_findings(store, round_id)
    store.save_findings(round_id, findings, detector, params)
    log.info("round.finished", round_id=round_id, status=outcome.status, stored=outcome.stored)
