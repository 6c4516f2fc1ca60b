"""`auditor daemon`: scheduled rounds, incidents and alerts, the ops HTTP server. Wiring only.

- Leadership (`auditor.operations.leader`): only the daemon holding the lock schedules
  rounds; a standby retries every `daemon.lock_retry` and takes over when the leader dies.
- Schedule (APScheduler 3, `AsyncIOScheduler`): one job per `schedule` entry, `every` or
  `cron` with jitter. A suite never runs twice at once. The in-memory job store forgets, so
  a run missed while the daemon was down is worked out from the rounds table on start
  (`missed_run`) and run once if it is within its grace time.
- After each completed round: findings -> incidents -> alert events -> webhook outbox.
  A watchdog opens an incident about the auditor itself when a suite goes stale.
- SIGTERM/SIGINT: no new work; the running round's in-flight requests get
  `daemon.shutdown_deadline` to finish and the round is marked interrupted; the outbox is
  flushed; exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import signal
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from auditor.alerts import incidents
from auditor.alerts.delivery import Deliverer
from auditor.alerts.outbox import enqueue_in
from auditor.config import AuditorConfig
from auditor.operations.leader import LeaderLock, lock_for
from auditor.operations.metrics import LEADER, ROUNDS
from auditor.operations.settings import ScheduleEntry
from auditor.probes import load_suite
from auditor.records import AlertEvent, as_utc, utcnow
from auditor.rounds.run import run_round_async
from auditor.rounds.run import select as select_models
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow
from auditor.web.dashboard import create_dashboard
from auditor.web.server import WebServer

log = structlog.get_logger(__name__)


def release_memory() -> bool:
    """After a round: collect its cyclic garbage, then hand the heap's free pages back to
    the kernel (glibc's `malloc_trim`; False where there is no glibc).

    A round leaves reference cycles (exceptions and their tracebacks, asyncio callbacks)
    holding answers; among the daemon's quarter of a million long-lived objects, Python's
    full collection comes so rarely that at one round every 10 s resident memory grew by
    5 MB a minute (bench/chaos.py). And glibc keeps freed memory for reuse: after a round
    of large answers (10 MB bodies), memory the daemon no longer uses stays counted."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def trigger_for(entry: ScheduleEntry, start: datetime | None) -> BaseTrigger:
    jitter = int(entry.jitter.total_seconds()) or None
    if entry.every is not None:
        return IntervalTrigger(
            seconds=entry.every.total_seconds(), start_date=start, timezone=UTC, jitter=jitter
        )
    trigger = CronTrigger.from_crontab(entry.cron or "", timezone=UTC)
    trigger.jitter = jitter
    return trigger


def last_round_start(store: Store, suite: str) -> datetime | None:
    with store.session() as s:
        started = s.execute(
            select(col(RoundRow.started_at))
            .where(col(RoundRow.suite) == suite)
            .order_by(col(RoundRow.started_at).desc())
            .limit(1)
        ).scalar()
    return as_utc(started) if started else None


def missed_run(entry: ScheduleEntry, last: datetime | None, now: datetime) -> bool:
    """Whether a run fell due while no daemon was running and is still within its grace
    time: the schedule's first firing after the suite's last round is in the past, at most
    `grace` ago. A suite that never ran runs on the first start."""
    if last is None:
        return True
    if entry.every is not None:
        due = last + entry.every
    else:
        due = CronTrigger.from_crontab(entry.cron or "", timezone=UTC).get_next_fire_time(
            None, last + timedelta(seconds=1)
        )
    return due is not None and due <= now and now - due <= entry.grace_time()


class Daemon:
    def __init__(
        self,
        config: AuditorConfig,
        store: Store,
        probes_dir: Path | None,
        *,
        web_token: str | None = None,
    ) -> None:
        self.config = config
        self.web_token = web_token  # see auditor.web.auth.access_token
        self.store = store
        self.probes_dir = probes_dir
        self.stop = asyncio.Event()
        self.lock: LeaderLock = lock_for(store.engine)
        self.deliverer = Deliverer(store, config.alerts)
        self.started_at = utcnow()
        self.scheduler: AsyncIOScheduler | None = None
        self._suite_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._lost = asyncio.Event()
        self._rounds: set[asyncio.Task[None]] = set()
        self._queued: dict[int, int] = {}  # id(event) -> messages queued, for the log

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            log.warning("daemon.stopping", reason=reason)
            self.stop.set()

    def ready(self) -> bool:
        """For /readyz: this daemon leads and its scheduler runs (a standby, or a leader that
        lost the lock and is finishing its round, is alive, not ready)."""
        return (
            self.scheduler is not None
            and self.scheduler.running
            and not self.stop.is_set()
            and not self._lost.is_set()
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, f"signal {sig.name}")
        app = create_dashboard(self.store, self.ready, token=self.web_token)
        server = WebServer(app, self.config.server)
        await server.start()
        log.info("daemon.started", port=server.port, suites=[e.suite for e in self.config.schedule])
        delivery = asyncio.create_task(self.deliverer.run(self.stop, poll_s=1.0))
        try:
            while not self.stop.is_set():
                await self._take_a_turn()
        finally:
            await self._finish_rounds()
            await delivery
            await self.deliverer.flush(self.config.daemon.shutdown_deadline.total_seconds())
            self.lock.release()
            await server.stop()
            log.info("daemon.stopped")
        return 0

    async def _take_a_turn(self) -> None:
        """Lead if the lock is free, else wait `lock_retry`. A failure (the database away
        while taking the lead or leading) gives the lock up and is retried after the same
        wait: the daemon never stops on its own."""
        retry_s = self.config.daemon.lock_retry.total_seconds()
        try:
            if not self.lock.try_acquire():
                await self._reap_orphans()
                await self._sleep(retry_s)
                return
            LEADER.set(1)
            log.info("daemon.leader")
            try:
                await self._lead()
            finally:
                LEADER.set(0)
        except Exception as exc:
            log.error("daemon.lead_failed", error=f"{type(exc).__name__}: {exc}"[:500])
            self.lock.release()
            await self._sleep(retry_s)

    async def _reap_orphans(self) -> None:
        """Mark interrupted the rounds left `running` by a dead process of this host, or by
        this process when their suite is no longer running here (the database went away
        while the round was being finished). Retried by the caller's next turn on failure."""
        try:
            reaped = await self._reap()
        except Exception as exc:
            log.warning("daemon.reap_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return
        if reaped:
            log.warning("daemon.rounds_reaped", round_ids=reaped)

    async def _reap(self) -> list[str]:
        busy = {suite for suite, lock in self._suite_locks.items() if lock.locked()}
        return await asyncio.to_thread(self.store.reap_dead_rounds, busy, utcnow())

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def _lead(self) -> None:
        self._lost.clear()
        await self._reap()  # a dead leader's round, if any
        scheduler = AsyncIOScheduler(timezone=UTC)
        now = utcnow()
        for entry in self.config.schedule:
            last = last_round_start(self.store, entry.suite)
            scheduler.add_job(
                self._run_suite,
                trigger_for(entry, last or now),
                args=[entry],
                id=f"suite:{entry.suite}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(entry.grace_time().total_seconds())),
            )
            if missed_run(entry, last, now):
                scheduler.add_job(self._run_suite, args=[entry], id=f"catch-up:{entry.suite}")
        watch_s = min((e.interval().total_seconds() for e in self.config.schedule), default=60)
        scheduler.add_job(
            self._watch,
            IntervalTrigger(seconds=max(1.0, watch_s / 2), timezone=UTC),
            id="watchdog",
            max_instances=1,
            coalesce=True,
        )
        scheduler.start()
        self.scheduler = scheduler
        stop, lost = asyncio.create_task(self.stop.wait()), asyncio.create_task(self._lost.wait())
        await asyncio.wait([stop, lost], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        lost.cancel()
        # No new runs; the running round sees the stop event and stores what it has. Only then
        # shut the scheduler down (its shutdown cancels job coroutines still running).
        scheduler.pause()
        await self._finish_rounds()
        scheduler.shutdown(wait=False)
        self.scheduler = None
        if self._lost.is_set():
            log.error("daemon.leadership_lost")

    async def _run_suite(self, entry: ScheduleEntry) -> None:
        if self.stop.is_set():
            return
        lock = self._suite_locks[entry.suite]
        if lock.locked():
            log.warning("daemon.skipped_overlap", suite=entry.suite)
            return
        task = asyncio.current_task()
        if task is not None:
            self._rounds.add(task)
        try:
            async with lock:
                await self._one_round(entry)
        except Exception as exc:  # a failed round must not take the daemon down
            log.error("daemon.round_failed", suite=entry.suite, error=repr(exc))
            ROUNDS.labels(suite=entry.suite, status="error").inc()
        finally:
            if task is not None:
                self._rounds.discard(task)
            await asyncio.to_thread(release_memory)

    async def _one_round(self, entry: ScheduleEntry) -> None:
        suite = await asyncio.to_thread(load_suite, entry.suite, self.probes_dir)
        selection = select_models(self.config, suite, None, None)
        result = await run_round_async(
            self.config,
            self.store,
            selection,
            stop=self.stop,
            drain_timeout_s=self.config.daemon.shutdown_deadline.total_seconds(),
        )
        status = result.outcome.status
        ROUNDS.labels(suite=entry.suite, status=status).inc()
        log.info("daemon.round_done", round_id=result.round_id, suite=entry.suite, status=status)
        if status != "complete":
            return  # an interrupted round's findings are partial: no incident changes
        findings = self.store.findings(result.round_id)
        events = incidents.update_from_findings(
            self.store, result.round_id, findings, queue=self._queue
        )
        self._alert(events)
        self._alert(self._stale_events())

    async def _watch(self) -> None:
        if not await asyncio.to_thread(self.lock.still_held):
            self._lost.set()
            return
        await self._reap_orphans()
        self._alert(self._stale_events())

    def _stale_events(self) -> list[AlertEvent]:
        return incidents.check_staleness(
            self.store,
            self.config.schedule,
            self.config.daemon.stale_factor,
            self.started_at,
            queue=self._queue,
        )

    def _queue(self, session: Session, event: AlertEvent) -> None:
        """Queue an event's webhooks in the transaction of the incident change behind it."""
        ids = enqueue_in(session, event, self.config.alerts)
        self._queued[id(event)] = len(ids)

    def _alert(self, events: list[AlertEvent]) -> None:
        """Log the events (their webhooks are queued already) and wake the deliverer."""
        for event in events:
            incident = event.incident
            log.warning(
                "incident." + event.type.split(".")[-1],
                model=incident.model if incident else None,
                provider=incident.provider if incident else None,
                summary=incident.summary if incident else None,
                messages=self._queued.pop(id(event), 0),
            )
        if events:
            self.deliverer.wake()

    async def _finish_rounds(self) -> None:
        """Rounds still running got the stop event: wait for them to store what they have."""
        if self._rounds:
            await asyncio.gather(*self._rounds, return_exceptions=True)
