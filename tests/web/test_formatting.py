"""The pages' display formatters (Jinja filters), on their own."""

from __future__ import annotations

from datetime import datetime, timedelta

from auditor.records import utcnow
from auditor.web.formatting import MISSING, fmt_ago, fmt_duration


def test_relative_times() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=utcnow().tzinfo)
    assert fmt_ago(now - timedelta(minutes=5), now) == "5 min ago"
    assert fmt_ago(now - timedelta(hours=5, minutes=59), now) == "5 h ago"
    assert fmt_ago(now - timedelta(days=3), now) == "3 d ago"
    assert fmt_ago(now + timedelta(minutes=1), now) == "just now"
    assert fmt_ago(None, now) == MISSING
    assert fmt_duration(now, now + timedelta(seconds=75)) == "1 min 15 s"
    assert fmt_duration(now, now + timedelta(minutes=8)) == "8 min"
    assert fmt_duration(now, now + timedelta(minutes=61)) == "1 h 1 min"
    assert fmt_duration(now, None) == MISSING
