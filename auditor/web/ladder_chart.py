"""The provider page's ladder chart: pass rate per rung, the provider's beside the reference's.

Drawn server-side as inline SVG (no script needed): for every rung of the provider's latest
context ladder, two bars (reference, provider) whose heights are their pass rates, the bar of
a failing rung marked, and a line where the effective window ends. This module computes the
geometry; `templates/provider.html` draws it, and its table says the same in figures. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from auditor.records import ContextWindow, LadderRung

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 40  # room for the axes' labels
BAR_GAP = 0.2  # of a rung's slot, left empty on each side


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    side: str  # reference | provider
    label: str  # "provider 6/8 at 1,410 tokens"


@dataclass(frozen=True)
class RungSlot:
    center: float
    length: int
    status: str  # match | fail | unknown
    reason: str | None
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class LadderChart:
    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    slots: tuple[RungSlot, ...]
    window_x: float | None  # the line at the effective window (None: below the ladder)


def _rate(passed: int, tried: int) -> float | None:
    return passed / tried if tried else None


def _bars(rung: LadderRung, left: float, slot: float, bottom: float, span: float) -> list[Bar]:
    width = slot * (1 - 2 * BAR_GAP) / 2
    bars = []
    sides = (
        ("reference", rung.reference_passed, rung.reference_tried),
        ("provider", rung.provider_passed, rung.provider_tried),
    )
    for i, (side, passed, tried) in enumerate(sides):
        rate = _rate(passed, tried)
        height = (rate or 0.0) * span
        label = f"{side} {passed}/{tried}" if tried else f"{side}: no scored answer"
        bars.append(
            Bar(
                x=round(left + slot * BAR_GAP + i * width, 1),
                y=round(bottom - height, 1),
                width=round(width, 1),
                height=round(height, 1),
                side=side,
                label=f"{label} at {rung.length:,} tokens",
            )
        )
    return bars


def ladder_chart(window: ContextWindow) -> LadderChart | None:
    """The chart's geometry; None without rungs. Rungs are evenly spaced, shortest first (a
    ladder's rungs grow geometrically, so a linear axis would crowd the short ones)."""
    if not window.rungs:
        return None
    left, right = LEFT, WIDTH - RIGHT
    top, bottom = TOP, HEIGHT - BOTTOM
    slot = (right - left) / len(window.rungs)
    slots = []
    window_x = None
    for i, rung in enumerate(window.rungs):
        start = left + i * slot
        bars = _bars(rung, start, slot, bottom, bottom - top)
        slots.append(
            RungSlot(round(start + slot / 2, 1), rung.length, rung.status, rung.reason, tuple(bars))
        )
        if window.effective is not None and rung.length == window.effective:
            window_x = round(start + slot, 1)
    return LadderChart(WIDTH, HEIGHT, left, right, top, bottom, tuple(slots), window_x)
