"""The daemon's part of providers.yaml: schedule, alert sinks, HTTP server, shutdown.

Kept apart from `auditor.config` (models, providers, reference, budget) so that each file
stays about one thing; `AuditorConfig` includes these sections.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """`90s`, `10m`, `1h`, `1.5d`, or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return timedelta(seconds=float(value))
        if isinstance(value, str) and (m := _DURATION.match(value)):
            return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    except OverflowError:
        raise ValueError("duration too long") from None
    raise ValueError("expected a duration like 90s, 10m, 1h or 2d")


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("d", "h", "m", "s"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


def parsable_url(url: str) -> str:
    """A URL the HTTP client takes (`urlsplit` lets through hosts it refuses, such as
    `999.0.0.1`)."""
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL: {exc}"[:200]) from None
    return url


Url = Annotated[str, AfterValidator(parsable_url)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ScheduleEntry(_Section):
    """When the daemon runs one suite: `every` (an interval) or `cron` (five fields, UTC)."""

    suite: str
    every: Duration | None = None
    cron: str | None = None
    jitter: Duration = timedelta(0)
    # A run missed while the daemon was down runs once on start if it is at most this late.
    grace: Duration | None = None

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleEntry:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of every or cron")
        if self.every is not None and self.every.total_seconds() < 1:
            raise ValueError("every must be at least 1s")
        if self.cron is not None:
            try:
                CronTrigger.from_crontab(self.cron, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"cron: {exc}") from None
        return self

    def interval(self) -> timedelta:
        """The nominal time between runs (for cron: between its next two firings)."""
        if self.every is not None:
            return self.every
        trigger = CronTrigger.from_crontab(self.cron or "", timezone="UTC")
        now = datetime.now(UTC)
        first = trigger.get_next_fire_time(None, now)
        second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
        return (second - first) if first and second else timedelta(days=1)

    def grace_time(self) -> timedelta:
        return self.grace if self.grace is not None else self.interval()


class WebhookSink(_Section):
    """One webhook receiver. `secret_env` names the variable holding its `whsec_` secret(s),
    space-separated while rotating: every one signs, the receiver accepts any."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    url: Url = Field(pattern=r"^https?://")
    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    min_severity: Literal["info", "warning", "critical"] = "warning"
    models: list[str] | None = None  # only these models (all when unset)
    providers: list[str] | None = None  # only these providers (all when unset)
    public_url: Url | None = Field(default=None, pattern=r"^https?://")  # dashboard, for links
    timeout_s: float = Field(default=10, gt=0)


class AlertsConfig(_Section):
    sinks: list[WebhookSink] = Field(default_factory=list)
    give_up_after: Duration = timedelta(hours=24)  # stop retrying a message this old
    max_backoff: Duration = timedelta(minutes=10)

    @model_validator(mode="after")
    def _unique(self) -> AlertsConfig:
        names = [s.name for s in self.sinks]
        if len(set(names)) != len(names):
            raise ValueError("sink names must be unique")
        return self


class ServerConfig(_Section):
    """The HTTP server of the daemon and of `auditor serve`: probes, metrics, the dashboard
    and its API. Off loopback, a bearer token is required, read from `token_env`."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token_env: str = Field(default="AUDITOR_WEB_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class DaemonConfig(_Section):
    shutdown_deadline: Duration = timedelta(seconds=20)  # for in-flight requests on SIGTERM
    stale_factor: float = Field(default=2.0, ge=1)  # no round for this many intervals: incident
    lock_retry: Duration = timedelta(seconds=5)  # how often a standby daemon tries to lead
