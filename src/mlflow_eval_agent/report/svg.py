"""Static SVG charts written by hand: horizontal bars with markers, a histogram, stacked time bars.

No plotting library: three chart kinds cover the report, and inline SVG needs no script, no font
and no network to render (the report must open offline, as one file). Every text is escaped;
numbers are formatted here, never by the browser. Each chart is a `<figure>` with a title and an
accessible description, sized by its viewBox so it scales with the page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

FONT = 12
ROW = 22
PALETTE = {
    "OK": "#2e7d32", "ERROR": "#c62828", "IN_PROGRESS": "#f9a825", "STATE_UNSPECIFIED": "#757575",
    "bar": "#1565c0", "bad": "#c62828", "threshold": "#c62828", "baseline": "#212121", "grid": "#d0d7de",
    "muted": "#57606a", "p50": "#2e7d32", "p90": "#ef6c00", "p99": "#c62828",
}
_EXTRA = ("#6a1b9a", "#00838f", "#8d6e63", "#546e7a")


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class Marker:
    value: float
    label: str  # e.g. "threshold 90%"
    kind: str = "threshold"  # threshold | baseline


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # None: nothing measured (drawn as a note, no bar)
    note: str = ""  # shown right of the bar, e.g. "87.5% (35/40)"
    markers: Sequence[Marker] = field(default_factory=tuple)
    bad: bool = False  # drawn in the alarm colour


def figure(svg: str, caption: str) -> str:
    return f'<figure class="chart">{svg}<figcaption>{esc(caption)}</figcaption></figure>'


def hbars(bars: Sequence[Bar], *, title: str, maximum: float = 1.0, width: int = 760, label_width: int = 260, percent: bool = True) -> str:
    """One horizontal bar per row on a 0..maximum axis; markers are ticks (threshold) or diamonds (baseline)."""
    if not bars:
        return ""
    note_width = 170
    plot = width - label_width - note_width - 10
    top = 8
    height = top + ROW * len(bars) + 24
    maximum = maximum or 1.0
    x = lambda v: label_width + plot * max(0.0, min(v, maximum)) / maximum  # noqa: E731
    parts = [_open(width, height, title)]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        tx = x(tick * maximum)
        parts.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{top + ROW * len(bars)}" stroke="{PALETTE["grid"]}" stroke-width="1"/>')
        text = f"{tick:.0%}" if percent else _number(tick * maximum)
        parts.append(_text(tx, top + ROW * len(bars) + 16, text, anchor="middle", cls="axis"))
    for i, bar in enumerate(bars):
        y = top + i * ROW
        parts.append(_text(label_width - 8, y + ROW * 0.68, _clip(bar.label, 38), anchor="end", title=bar.label))
        if bar.value is not None:
            colour = PALETTE["bad"] if bar.bad else PALETTE["bar"]
            w = max(1.0, x(bar.value) - label_width)
            parts.append(f'<rect x="{label_width}" y="{y + 4}" width="{w:.1f}" height="{ROW - 8}" fill="{colour}" rx="2"><title>{esc(bar.label)}: {esc(bar.note)}</title></rect>')
        for m in bar.markers:
            mx = x(m.value)
            if m.kind == "baseline":
                cy = y + ROW / 2
                parts.append(f'<path d="M{mx:.1f},{cy - 6:.1f} L{mx + 5:.1f},{cy:.1f} L{mx:.1f},{cy + 6:.1f} L{mx - 5:.1f},{cy:.1f} Z" '
                             f'fill="{PALETTE["baseline"]}" stroke="#fff" stroke-width="1"><title>{esc(m.label)}</title></path>')
            else:
                parts.append(f'<line x1="{mx:.1f}" y1="{y + 1}" x2="{mx:.1f}" y2="{y + ROW - 1}" stroke="{PALETTE["threshold"]}" stroke-width="3">'
                             f'<title>{esc(m.label)}</title></line>')
        parts.append(_text(label_width + plot + 10, y + ROW * 0.68, bar.note, cls="note"))
    parts.append("</svg>")
    return "".join(parts)


def histogram(bins: Sequence[tuple[float, float, int]], markers: Sequence[tuple[str, float]], *, title: str, unit: str = "ms",
              width: int = 760, height: int = 220) -> str:
    """Vertical bars of (lower, upper, count), x on a log scale when the bins are log-spaced; markers
    are vertical lines (e.g. p50, p90, p99) at their value."""
    if not bins:
        return ""
    left, right, top, bottom = 48, 16, 12 + 12 * max(1, len(markers)), 34
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high = bins[0][0], bins[-1][1]
    log = low > 0 and high / max(low, 1e-9) > 20
    def x(v: float) -> float:
        if high <= low:
            return left + plot_w / 2
        if log:
            return left + plot_w * (math.log(max(v, low)) - math.log(low)) / (math.log(high) - math.log(low))
        return left + plot_w * (v - low) / (high - low)
    peak = max(c for *_, c in bins) or 1
    parts = [_open(width, height, title)]
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{PALETTE["muted"]}"/>')
    for frac in (0.5, 1.0):
        gy = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" y1="{gy:.1f}" x2="{left + plot_w}" y2="{gy:.1f}" stroke="{PALETTE["grid"]}"/>')
        parts.append(_text(left - 6, gy + 4, _number(peak * frac), anchor="end", cls="axis"))
    for lo, hi, count in bins:
        x0, x1 = x(lo), x(hi)
        h = plot_h * count / peak
        parts.append(f'<rect x="{x0 + 0.5:.1f}" y="{top + plot_h - h:.1f}" width="{max(1.0, x1 - x0 - 1):.1f}" height="{h:.1f}" fill="{PALETTE["bar"]}">'
                     f'<title>{_number(lo)}–{_number(hi)} {esc(unit)}: {count} traces</title></rect>')
    for value in _axis_ticks(low, high, log):
        tx = x(value)
        parts.append(_text(tx, top + plot_h + 16, f"{_number(value)}", anchor="middle", cls="axis"))
    parts.append(_text(left + plot_w, top + plot_h + 30, f"{unit}{' (log scale)' if log else ''}", anchor="end", cls="axis"))
    for i, (name, value) in enumerate(markers):
        if value is None:
            continue
        mx = x(value)
        colour = PALETTE.get(name, PALETTE["baseline"])
        parts.append(f'<line x1="{mx:.1f}" y1="{16 + 12 * i - 10}" x2="{mx:.1f}" y2="{top + plot_h}" stroke="{colour}" stroke-width="2" stroke-dasharray="5,3">'
                     f'<title>{esc(name)} {_number(value)} {esc(unit)}</title></line>')
        parts.append(_text(min(mx + 3, width - 90), 12 + 12 * i, f"{name} {_number(value)} {unit}", cls="marker", fill=colour))
    parts.append("</svg>")
    return "".join(parts)


def stacked_columns(columns: Sequence[tuple[str, dict[str, int]]], *, title: str, first_label: str, last_label: str,
                    width: int = 760, height: int = 220) -> str:
    """One column per bucket, stacked by key (trace state), with a legend; labels for the first and last bucket."""
    if not columns:
        return ""
    left, right, top, bottom = 48, 16, 28, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    keys = sorted({k for _, c in columns for k in c}, key=lambda k: (k != "OK", k != "ERROR", k))
    colours = {k: PALETTE.get(k) or _EXTRA[i % len(_EXTRA)] for i, k in enumerate(keys)}
    peak = max(sum(c.values()) for _, c in columns) or 1
    step = plot_w / len(columns)
    parts = [_open(width, height, title)]
    for frac in (0.5, 1.0):
        gy = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" y1="{gy:.1f}" x2="{left + plot_w}" y2="{gy:.1f}" stroke="{PALETTE["grid"]}"/>')
        parts.append(_text(left - 6, gy + 4, _number(peak * frac), anchor="end", cls="axis"))
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{PALETTE["muted"]}"/>')
    for i, (label, counts) in enumerate(columns):
        y = top + plot_h
        for key in keys:
            n = counts.get(key, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            parts.append(f'<rect x="{left + i * step + 1:.1f}" y="{y:.1f}" width="{max(1.0, step - 2):.1f}" height="{h:.1f}" fill="{colours[key]}">'
                         f'<title>{esc(label)}: {n} {esc(key)}</title></rect>')
    parts.append(_text(left, top + plot_h + 16, first_label, cls="axis"))
    parts.append(_text(left + plot_w, top + plot_h + 16, last_label, anchor="end", cls="axis"))
    lx = left
    for key in keys:
        parts.append(f'<rect x="{lx}" y="6" width="10" height="10" fill="{colours[key]}"/>')
        parts.append(_text(lx + 14, 15, key, cls="axis"))
        lx += 24 + 7 * len(key)
    parts.append("</svg>")
    return "".join(parts)


# --- helpers ---------------------------------------------------------------------------------------
def _open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'aria-label="{esc(title)}" font-family="system-ui, sans-serif" font-size="{FONT}"><title>{esc(title)}</title>')


def _text(x: float, y: float, text: str, *, anchor: str = "start", cls: str = "", title: str | None = None, fill: str | None = None) -> str:
    attrs = f' class="{cls}"' if cls else ""
    attrs += f' fill="{fill}"' if fill else ""
    inner = esc(text) + (f"<title>{esc(title)}</title>" if title and title != text else "")
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{attrs}>{inner}</text>'


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.0f}k" if value < 1e6 else f"{value / 1e6:,.1f}M"
    if value >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _axis_ticks(low: float, high: float, log: bool) -> list[float]:
    if high <= low:
        return [low]
    if not log:
        return [low + (high - low) * f for f in (0, 0.25, 0.5, 0.75, 1)]
    ticks = [low]
    decade = 10 ** math.ceil(math.log10(low))
    while decade < high:
        for m in (1, 3):
            if low * 1.15 < decade * m < high / 1.15:
                ticks.append(decade * m)
        decade *= 10
    return [*ticks, high]
