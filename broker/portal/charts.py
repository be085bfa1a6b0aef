"""Two small SVG charts drawn on the server: no chart library, nothing for the CSP to allow.

The functions return plain geometry that templates/portal/_chart_*.html turn into <svg>; colours
come from CSS classes (series-0 … series-7), so the charts follow the stylesheet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

from broker.durations import humanize_duration

SERIES = 8


@dataclass
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str
    label: str = ""
    value_label: str = ""
    text_x: float = 0
    text_y: float = 0


@dataclass
class Tick:
    pos: float
    label: str


@dataclass
class Chart:
    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    labels: list[Tick] = field(default_factory=list)
    plot_left: float = 0
    plot_right: float = 0
    plot_top: float = 0
    plot_bottom: float = 0


def _count_step(peak: int, ticks: int = 4) -> int:
    """A whole, round step (1, 2, 5, 10, 20, ...) so that `ticks` steps reach the peak."""
    wanted = max(1, math.ceil(peak / ticks))
    exponent = 10 ** math.floor(math.log10(wanted))
    for step in (1, 2, 5, 10):
        if wanted <= step * exponent:
            return step * exponent
    return 10 * exponent


def stacked_days(days: list[date], per_role: dict[str, list[int]], *, width: int = 720, height: int = 260) -> Chart:
    """Grants started per day, stacked by role."""
    left, right, top, bottom = 36, 8, 10, 40
    chart = Chart(width, height, plot_left=left, plot_right=width - right, plot_top=top, plot_bottom=height - bottom)
    totals = [sum(values[i] for values in per_role.values()) for i in range(len(days))]
    step = _count_step(max(totals, default=0))
    peak = step * 4
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / max(1, len(days))
    bar = max(2.0, slot * 0.7)
    for n in range(5):
        value = step * n
        chart.y_ticks.append(Tick(pos=round(top + plot_h - plot_h * value / peak, 2), label=str(value)))
    every = max(1, math.ceil(len(days) / 10))
    for i, day in enumerate(days):
        if i % every == 0:
            chart.x_ticks.append(Tick(pos=left + slot * i + slot / 2, label=day.strftime("%d %b")))
    for index, role in enumerate(per_role):
        chart.legend.append((role, f"series-{index % SERIES}"))
    stack = [0] * len(days)
    for index, (role, values) in enumerate(per_role.items()):
        css = f"series-{index % SERIES}"
        for i, count in enumerate(values):
            if not count:
                continue
            h = plot_h * count / peak
            y = top + plot_h - plot_h * stack[i] / peak - h
            chart.rects.append(
                Rect(
                    x=round(left + slot * i + (slot - bar) / 2, 2),
                    y=round(y, 2),
                    width=round(bar, 2),
                    height=round(h, 2),
                    css=css,
                    title=f"{days[i].isoformat()}: {count} x {role}",
                )
            )
            stack[i] += count
    return chart


def horizontal_bars(items: list[tuple[str, float]], *, width: int = 720, row: int = 24) -> Chart:
    """One bar per person: total elevated hours (labelled 2 h 15 min, or 40 s for short ones)."""
    left, right, top = 120, 70, 4
    height = top + row * max(1, len(items)) + 4
    chart = Chart(width, height, plot_left=left, plot_right=width - right, plot_top=top, plot_bottom=height - 4)
    peak = max((value for _, value in items), default=0) or 1
    plot_w = width - left - right
    for i, (label, value) in enumerate(items):
        y = top + row * i
        bar_w = round(max(1.0, plot_w * value / peak), 2)
        chart.rects.append(
            Rect(
                x=left,
                y=y + 3,
                width=bar_w,
                height=row - 6,
                css="series-0",
                title=f"{label}: {humanize_duration(timedelta(hours=value))}",
                label=label,
                value_label=humanize_duration(timedelta(hours=value)),
                text_x=left + bar_w + 6,
                text_y=y + row / 2 + 4,
            )
        )
    return chart
