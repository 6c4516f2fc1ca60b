"""Writes and reads of the results database. Synchronous; a round's samples are written by
one writer (`auditor.storage.writer`)."""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Result, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from auditor.providers.tool_prompt import needs_rendering, with_tools
from auditor.records import (
    CompletionRequest,
    CompletionResponse,
    Finding,
    ProbeCase,
    ScoreRecord,
    as_utc,
    utcnow,
)
from auditor.storage.tables import (
    CalibrationRow,
    FindingRow,
    ProbeCaseRow,
    ProviderRow,
    ReferenceCacheRow,
    RoundRow,
    SampleRow,
    ScoreRow,
    core_table,
)


@dataclass(frozen=True)
class AnswerText:
    """A stored answer and the messages it answered."""

    sample_id: int
    probe_hash: str
    signals: list[str]
    messages: list[dict[str, Any]]
    text: str
    params: dict[str, Any] = field(default_factory=dict)  # the request's (its sampler)
    reasoning: str | None = None  # the reasoning it answered after, returned apart


def _prompt_messages(case: dict[str, Any]) -> list[dict[str, Any]]:
    """A case's messages as the reference engine prompts with them: tools offered, and tool
    turns written out, by `with_tools` (chat templates without tool support fail on them)."""
    messages = [{k: v for k, v in m.items() if v is not None} for m in case.get("messages") or []]
    params = case.get("params") or {}
    tools, choice = params.get("tools"), params.get("tool_choice")
    if needs_rendering(messages, tools, choice):
        return with_tools(messages, tools, choice)
    return messages


def _score_row(sample_id: int, score: ScoreRecord) -> ScoreRow:
    return ScoreRow(sample_id=sample_id, **score.model_dump())


# Built once: the round's writer runs these hundreds of times a second.
_INSERT_SAMPLE = insert(core_table(SampleRow))
_INSERT_SAMPLES = _INSERT_SAMPLE.returning(core_table(SampleRow).c.id, sort_by_parameter_order=True)
_INSERT_SCORE = insert(core_table(ScoreRow))

NewSample = tuple[dict[str, Any], list[ScoreRecord]]
"""A sample's column values (`sample_values`) and its scores."""


def sample_values(
    round_id: str,
    provider_id: int,
    probe_hash: str,
    probe_id: str,
    sample_index: int,
    response: CompletionResponse,
    cost: float | None,
) -> dict[str, Any]:
    """The `samples` row of one exchange: the request's probe and sample number, and the
    response."""
    usage = response.usage
    return {
        "round_id": round_id,
        "provider_id": provider_id,
        "probe_hash": probe_hash,
        "probe_id": probe_id,
        "sample_index": sample_index,
        "ok": response.ok,
        "status_code": response.status_code,
        "error_class": response.error_class.value if response.error_class else None,
        "error_message": response.error_message,
        "output_text": response.text,
        "reasoning_text": response.reasoning,
        "reasoning_source": response.reasoning_source,
        "reasoning_tokens": usage.reasoning_tokens,
        "upstream": response.upstream,
        "finish_reason": response.finish_reason,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cost": cost,
        "latency_ms": None if response.latency_s is None else response.latency_s * 1000,
        "ttft_ms": None if response.ttft_s is None else response.ttft_s * 1000,
        "attempts": response.attempts,
        "cached": response.cached,
        "served_model": response.served_model,
        "request_json": response.raw_request,
        "response_json": response.raw_response,
        "logprobs_json": response.logprobs,
        "tool_calls_json": response.tool_calls,
        "response_headers": response.headers or None,
        "started_at": response.started_at,
        "created_at": utcnow(),
    }


def _insert_samples(conn: Connection, samples: list[NewSample]) -> list[int]:
    """Two statements whatever the number of samples: the samples in one insert (their ids
    returned in order), then all their scores in one executemany. Plain Core inserts, not
    ORM objects; a record's fields as they are (`model_dump` would copy them, for nothing)."""
    if len(samples) == 1:
        result = conn.execute(_INSERT_SAMPLE, samples[0][0])
        key = result.inserted_primary_key
        assert key is not None  # an INSERT of one row
        ids = [int(key[0])]
    else:
        ids = [int(i) for i in conn.execute(_INSERT_SAMPLES, [v for v, _ in samples]).scalars()]
    scores = [
        {"sample_id": sample_id, **sc.__dict__}
        for sample_id, (_, records) in zip(ids, samples, strict=True)
        for sc in records
    ]
    if scores:
        conn.execute(_INSERT_SCORE, scores)
    return ids


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. `Session.execute` returns a `CursorResult` for
    one, typed as the `Result` of any statement."""
    return cast(CursorResult[Any], result).rowcount


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # --- configuration as seen by a round -------------------------------------------------

    def upsert_provider(
        self,
        model: str,
        name: str,
        *,
        kind: str = "provider",
        base_url: str | None = None,
        model_id: str | None = None,
        trusted: bool = False,
        config: dict[str, Any] | None = None,
    ) -> int:
        with self.session() as s:
            found = s.execute(
                select(ProviderRow).where(
                    col(ProviderRow.model) == model, col(ProviderRow.name) == name
                )
            ).first()
            row: ProviderRow = (
                found[0] if found is not None else ProviderRow(model=model, name=name)
            )
            row.kind, row.base_url, row.model_id = kind, base_url, model_id
            row.trusted, row.config, row.updated_at = trusted, config, utcnow()
            s.add(row)
            s.commit()
            assert row.id is not None
            return row.id

    def upsert_probe_cases(self, cases: list[ProbeCase]) -> None:
        with self.session() as s:
            known = set(
                s.execute(
                    select(col(ProbeCaseRow.hash)).where(
                        col(ProbeCaseRow.hash).in_([c.content_hash for c in cases])
                    )
                )
                .scalars()
                .all()
            )
            for case in cases:
                if case.content_hash in known:
                    continue
                known.add(case.content_hash)
                s.add(
                    ProbeCaseRow(
                        hash=case.content_hash,
                        probe_id=case.id,
                        suite=case.suite,
                        probe_group=case.group,
                        signals=case.signals,
                        case=case.model_dump(mode="json"),
                        first_seen=utcnow(),
                    )
                )
            s.commit()

    # --- rounds ----------------------------------------------------------------------------

    def start_round(self, row: RoundRow) -> RoundRow:
        row.hostname, row.pid, row.started_at = socket.gethostname(), os.getpid(), utcnow()
        row.status = "running"
        with self.session() as s:
            s.add(row)
            s.commit()
        return row

    def finish_round(self, round_id: str, status: str, stop_reason: str | None) -> None:
        with self.session() as s:
            s.execute(
                update(RoundRow)
                .where(col(RoundRow.id) == round_id)
                .values(status=status, stop_reason=stop_reason, finished_at=utcnow())
            )
            s.commit()

    def reap_dead_rounds(
        self, busy_suites: Collection[str] | None = None, as_of: datetime | None = None
    ) -> list[str]:
        """Mark rounds left 'running' by a process of this host that no longer exists.

        With `busy_suites` (the caller is a long-lived process that runs one round of a
        suite at a time: the daemon, which knows its running suites `as_of` a moment), also
        this process's own rounds, started by then, of any other suite: rounds it could not
        mark finished because the database was away at that moment."""
        host, me = socket.gethostname(), os.getpid()
        cutoff = as_utc(as_of or utcnow())
        with self.session() as s:
            rows = (
                s.execute(select(RoundRow).where(col(RoundRow.status) == "running")).scalars().all()
            )
            dead = [
                r.id
                for r in rows
                if r.hostname == host
                and r.pid
                and (
                    not _pid_alive(r.pid)
                    or (
                        busy_suites is not None
                        and r.pid == me
                        and r.suite not in busy_suites
                        and as_utc(r.started_at) <= cutoff
                    )
                )
            ]
            if dead:
                s.execute(
                    update(RoundRow)
                    .where(col(RoundRow.id).in_(dead))
                    .values(status="interrupted", stop_reason="process died")
                )
                s.commit()
        return dead

    def get_round(self, round_id: str) -> RoundRow | None:
        with self.session() as s:
            return s.get(RoundRow, round_id)

    def last_round(self) -> RoundRow | None:
        with self.session() as s:
            row = s.execute(
                select(RoundRow).order_by(col(RoundRow.started_at).desc()).limit(1)
            ).first()
            return row[0] if row else None

    def rounds(self, limit: int = 20) -> list[RoundRow]:
        with self.session() as s:
            return list(
                s.execute(
                    select(RoundRow).order_by(col(RoundRow.started_at).desc()).limit(limit)
                ).scalars()
            )

    # --- samples and scores ----------------------------------------------------------------

    def add_sample(
        self,
        round_id: str,
        provider_id: int,
        request: CompletionRequest,
        response: CompletionResponse,
        scores: list[ScoreRecord],
        cost: float | None,
        *,
        connection: Connection | None = None,
    ) -> int | None:
        """Store one exchange and its scores in one transaction. Returns None for a
        duplicate (same round, provider, probe and sample number), which is not stored twice.

        With `connection` (from `transaction()`), the rows join that transaction instead and
        a duplicate raises IntegrityError, which aborts the whole transaction."""
        values = sample_values(
            round_id,
            provider_id,
            request.probe_hash,
            request.probe_id,
            request.sample_index,
            response,
            cost,
        )
        if connection is not None:
            return _insert_samples(connection, [(values, scores)])[0]
        return self._insert_one(values, scores)

    def add_samples(self, samples: list[NewSample]) -> list[int | None]:
        """Store exchanges (`sample_values`) and their scores in one transaction: the round's
        writer commits the answers that queued up together. Should one be a duplicate (which
        aborts the transaction), they are stored one at a time and the duplicates skipped
        (None)."""
        try:
            with self.engine.begin() as conn:
                return list(_insert_samples(conn, samples))
        except IntegrityError:
            return [self._insert_one(values, scores) for values, scores in samples]

    def _insert_one(self, values: dict[str, Any], scores: list[ScoreRecord]) -> int | None:
        with self.engine.connect() as conn:
            try:
                (sample_id,) = _insert_samples(conn, [(values, scores)])
            except IntegrityError:
                conn.rollback()
                return None
            conn.commit()
            return sample_id

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction, committed on a clean exit and rolled back on an exception."""
        with self.engine.begin() as conn:
            yield conn

    def answered_keys(self, round_id: str) -> set[tuple[int, str, int]]:
        """(provider_id, probe_hash, sample_index) already stored for a round."""
        with self.session() as s:
            rows = s.execute(
                select(
                    col(SampleRow.provider_id),
                    col(SampleRow.probe_hash),
                    col(SampleRow.sample_index),
                ).where(col(SampleRow.round_id) == round_id)
            ).all()
        return {(r[0], r[1], r[2]) for r in rows}

    def iter_samples(
        self, round_id: str | None = None, batch: int = 500
    ) -> Iterator[tuple[SampleRow, ProviderRow]]:
        """Samples with their provider, streamed in id order (memory stays flat)."""
        last_id = 0
        while True:
            with self.session() as s:
                stmt = (
                    select(SampleRow, ProviderRow)
                    .join(ProviderRow, col(SampleRow.provider_id) == ProviderRow.id)
                    .where(col(SampleRow.id) > last_id)
                    .order_by(col(SampleRow.id))
                    .limit(batch)
                )
                if round_id is not None:
                    stmt = stmt.where(col(SampleRow.round_id) == round_id)
                rows = s.execute(stmt).all()
            if not rows:
                return
            yield from ((sample, provider) for sample, provider in rows)
            last_id = rows[-1][0].id

    def provider_totals(self, round_id: str) -> list[dict[str, Any]]:
        """Requests, errors (by class), tokens and cost per provider of a round."""
        with self.session() as s:
            rows = s.execute(
                select(
                    col(ProviderRow.model),
                    col(ProviderRow.name),
                    col(ProviderRow.kind),
                    col(SampleRow.error_class),
                    func.count(col(SampleRow.id)),
                    func.coalesce(func.sum(SampleRow.total_tokens), 0),
                    func.sum(SampleRow.cost),
                    func.sum(SampleRow.latency_ms),
                )
                .join(ProviderRow, col(SampleRow.provider_id) == ProviderRow.id)
                .where(col(SampleRow.round_id) == round_id)
                .group_by(
                    col(ProviderRow.model),
                    col(ProviderRow.name),
                    col(ProviderRow.kind),
                    col(SampleRow.error_class),
                )
            ).all()
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for model, name, kind, error_class, count, tokens, cost, latency in rows:
            t = out.setdefault(
                (model, name),
                {
                    "model": model,
                    "provider": name,
                    "kind": kind,
                    "requests": 0,
                    "errors": 0,
                    "tokens": 0,
                    "cost": None,
                    "errors_by_class": {},
                    "latency_ms_sum": 0.0,
                },
            )
            t["requests"] += count
            t["tokens"] += int(tokens)
            t["latency_ms_sum"] += float(latency or 0)
            if cost is not None:
                t["cost"] = (t["cost"] or 0.0) + float(cost)
            if error_class is not None:
                t["errors"] += count
                t["errors_by_class"][error_class] = count
        return list(out.values())

    def add_scores(self, sample_id: int, scores: list[ScoreRecord]) -> None:
        """Scores computed after the sample was stored (the reference likelihood)."""
        with self.session() as s:
            for sc in scores:
                s.add(_score_row(sample_id, sc))
            s.commit()

    def answers_to_score(self, round_id: str, model: str, scorer: str) -> list[AnswerText]:
        """The round's answered samples of `model` with text and no score of `scorer` yet,
        grouped by prompt (probe), with the messages they answered."""
        with self.session() as s:
            done = select(col(ScoreRow.sample_id)).where(col(ScoreRow.scorer) == scorer)
            rows = s.execute(
                select(
                    col(SampleRow.id),
                    col(SampleRow.probe_hash),
                    col(SampleRow.output_text),
                    col(ProbeCaseRow.case),
                    col(SampleRow.reasoning_text),
                )
                .join(ProviderRow, col(SampleRow.provider_id) == ProviderRow.id)
                .join(ProbeCaseRow, col(SampleRow.probe_hash) == ProbeCaseRow.hash)
                .where(
                    col(SampleRow.round_id) == round_id,
                    col(ProviderRow.model) == model,
                    col(SampleRow.ok).is_(True),
                    col(SampleRow.output_text).is_not(None),
                    col(SampleRow.id).not_in(done),
                )
                .order_by(col(SampleRow.probe_hash), col(SampleRow.id))
            ).all()
        return [
            AnswerText(
                sample_id,
                probe_hash,
                list(case.get("signals") or []),
                _prompt_messages(case),
                text,
                dict(case.get("params") or {}),
                reasoning,
            )
            for sample_id, probe_hash, text, case, reasoning in rows
            if text
        ]

    # --- reference cache -------------------------------------------------------------------

    def cached_reference(self, key: str) -> dict[str, Any] | None:
        with self.session() as s:
            row = s.get(ReferenceCacheRow, key)
            return row.response if row is not None else None

    def cache_reference(
        self,
        key: str,
        weights_digest: str,
        engine: str,
        request: dict[str, Any],
        response: dict[str, Any],
    ) -> None:
        with self.session() as s:
            if s.get(ReferenceCacheRow, key) is None:
                s.add(
                    ReferenceCacheRow(
                        key=key,
                        weights_digest=weights_digest,
                        engine=engine,
                        request=request,
                        response=response,
                        created_at=utcnow(),
                    )
                )
                try:
                    s.commit()
                except IntegrityError:  # another writer cached it first
                    s.rollback()

    # --- calibrations ----------------------------------------------------------------------

    def save_calibration(self, row: CalibrationRow) -> CalibrationRow:
        row.created_at = row.created_at or utcnow()
        with self.session() as s:
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def latest_calibration(self, model: str) -> CalibrationRow | None:
        with self.session() as s:
            return s.execute(
                select(CalibrationRow)
                .where(col(CalibrationRow.model) == model)
                .order_by(col(CalibrationRow.created_at).desc(), col(CalibrationRow.id).desc())
                .limit(1)
            ).scalar()

    # --- findings --------------------------------------------------------------------------

    def save_findings(
        self, round_id: str, findings: list[Finding], detector: str, params: dict[str, Any]
    ) -> None:
        """Replace a round's findings (recomputing with `compare` overwrites, never appends)."""
        with self.session() as s:
            for old in s.execute(
                select(FindingRow).where(col(FindingRow.round_id) == round_id)
            ).scalars():
                s.delete(old)
            s.flush()
            started = s.execute(
                select(col(RoundRow.started_at)).where(col(RoundRow.id) == round_id)
            ).scalar_one()
            for f in findings:
                data = f.model_dump(mode="json")
                s.add(
                    FindingRow(
                        round_id=round_id,
                        detector=detector,
                        detector_params=params,
                        created_at=utcnow(),
                        round_started_at=started,
                        **data,
                    )
                )
            s.commit()

    def findings(self, round_id: str) -> list[Finding]:
        with self.session() as s:
            rows = (
                s.execute(
                    select(FindingRow)
                    .where(col(FindingRow.round_id) == round_id)
                    .order_by(FindingRow.model, FindingRow.provider)
                )
                .scalars()
                .all()
            )
        return [_finding_from_row(r) for r in rows]


def _finding_from_row(row: FindingRow) -> Finding:
    return Finding(
        model=row.model,
        provider=row.provider,
        baseline=row.baseline,
        verdict=row.verdict,
        severity=row.severity,
        diagnoses=row.diagnoses or [],
        tests=row.tests or [],
        evidence=row.evidence or [],
        requests=row.requests,
        errors=row.errors,
        tokens=row.tokens,
        cost=row.cost,
        errors_by_class=row.errors_by_class or {},
        context_window=row.context_window,
        upstreams=row.upstreams,
        capabilities=row.capabilities,
    )
