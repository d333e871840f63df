"""The demo's timeline: one HTML page with inline SVG (no script, no network) that shows, per
replayed window, the true goal metric (computed from the labels the demo knows), the monitor's
label-free estimate with its band, the live metric from feedback with its interval, the goal, the
drift of the most important features, and when each alert fired in Prometheus.

`Timeline` is the data (built by `occam/demo.py`); `render_html` turns it into the page. Every
mark carries a `data-kind` attribute (window-truth, goal-line, alert-span, ...) so that a test
in a real browser can count what a reader sees.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

#: Colours (colour-blind safe, Okabe-Ito).
TRUTH, ESTIMATE, LIVE, GOAL, RISK = "#000000", "#0072B2", "#D55E00", "#CC79A7", "#E69F00"
CHAMPION = "#777777"
#: Colours of the loop's steps on the timeline.
EVENT_COLOURS = {
    "retrain": "#009E73",
    "refused": "#C0392B",
    "shadow": "#56B4E9",
    "promotion": "#332288",
    "rollback": "#882255",
}
FEATURE_COLOURS = ("#009E73", "#56B4E9", "#332288", "#999999", "#882255")
WIDTH, LEFT, RIGHT = 1100, 110, 190
PLOT = WIDTH - LEFT - RIGHT


@dataclass(frozen=True)
class Interval:
    """A figure with its band; `lower`/`upper` are None when the monitor exports none."""

    value: float
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True)
class WindowPoint:
    """What the demo saw for one replayed window of `rows` predictions.

    `truth` is each goal metric on the window's own rows and labels (occam.metrics.score);
    `estimate` and `live` are the monitor's gauges read once the window was counted; `drift` is
    each feature's effect size divided by its alarm level (1 = at the alarm level);
    `wall_time` is when the verdict was read (Unix seconds; alerts are placed by it).
    """

    index: int
    phase: str
    rows: int
    wall_time: float
    first_time: str | None = None
    last_time: str | None = None
    truth: dict[str, float] = field(default_factory=dict)
    estimate: dict[str, Interval] = field(default_factory=dict)
    live: dict[str, Interval] = field(default_factory=dict)
    drift: dict[str, float] = field(default_factory=dict)
    weighted_drift: float | None = None
    at_risk: bool | None = None
    reasons: tuple[str, ...] = ()
    #: the model version that answered the window's rows (None: unknown or several)
    model: str | None = None
    #: after a promotion: each goal metric the replaced champion scores on the same rows
    champion_truth: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertSpan:
    """An alert firing in Prometheus from `start` to `end` (Unix seconds)."""

    name: str
    start: float
    end: float


@dataclass(frozen=True)
class LoopEvent:
    """A step of the retrain loop, drawn after window `after` (0-based index): `kind` is one of
    retrain, refused, shadow, promotion, rollback; `label` says what happened."""

    kind: str
    after: int
    label: str


@dataclass(frozen=True)
class Timeline:
    title: str
    goals: dict[str, float]
    windows: list[WindowPoint]
    alerts: list[AlertSpan] = field(default_factory=list)
    #: features drawn in the drift panel, most important first, with their importance (or None)
    top_features: list[tuple[str, float | None]] = field(default_factory=list)
    weighted_drift_threshold: float | None = None
    events: list[LoopEvent] = field(default_factory=list)


def write_timeline(timeline: Timeline, path: str | Path) -> Path:
    """Render `timeline` to the HTML file `path` (folders created). Returns `path`."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(timeline))
    return out


def render_html(timeline: Timeline) -> str:
    """The whole page: a header, one panel per goal metric, the drift panel, the alert lanes."""
    windows = timeline.windows
    scale = _XScale(len(windows))
    panels = [
        _metric_panel(timeline, metric, goal, scale) for metric, goal in timeline.goals.items()
    ]
    panels.append(_drift_panel(timeline, scale))
    panels.append(_alert_panel(timeline, scale))
    phases = _phase_note(windows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(timeline.title)}</title>
<style>
body {{ font-family: sans-serif; margin: 16px 24px; color: #222; background: #fff; }}
h1 {{ font-size: 20px; margin: 0 0 4px 0; }}
p.note {{ margin: 2px 0 10px 0; font-size: 13px; color: #444; max-width: 1050px; }}
svg {{ display: block; margin-bottom: 6px; }}
svg text {{ font-size: 12px; fill: #222; }}
svg text.title {{ font-size: 14px; font-weight: bold; }}
svg text.small {{ font-size: 11px; fill: #555; }}
</style></head>
<body>
<h1>{_e(timeline.title)}</h1>
<p class="note">Each point is one replayed window of predictions, in time order ({phases}).
The <b>true</b> metric is computed from the window's real labels, which the monitor does not
see; the <b>estimate</b> is the monitor's label-free estimate with its band; the <b>live</b>
metric comes from the feedback labels received so far, with its interval.
Orange shading marks windows where the monitor said "model at risk".{_loop_note(timeline)}</p>
{"".join(panels)}
</body></html>
"""


class _XScale:
    """Window index -> x pixel (window i sits at the centre of its slot)."""

    def __init__(self, count: int) -> None:
        self.count = max(count, 1)
        self.slot = PLOT / self.count

    def x(self, position: float) -> float:
        return LEFT + (position + 0.5) * self.slot


def _metric_panel(timeline: Timeline, metric: str, goal: float, scale: _XScale) -> str:
    windows = timeline.windows
    values = [goal]
    for w in windows:
        for v in (w.truth.get(metric), w.champion_truth.get(metric)):
            values += [v] if v is not None and math.isfinite(v) else []
        for band in (w.estimate.get(metric), w.live.get(metric)):
            if band is not None:
                values += [v for v in (band.value, band.lower, band.upper) if v is not None]
    low = math.floor(min(values) * 20 - 0.5) / 20
    high = math.ceil(max(values) * 20 + 0.5) / 20
    height, top = 260, 30
    y = _YScale(low, high, top, top + 200)
    parts = [_frame(f"{metric} per window", y, height, scale, windows, ticks=5)]
    parts.append(_risk_shading(windows, scale, y))
    # the estimate's band as a filled area, broken where a window has no band
    for run in _runs([(i, w.estimate.get(metric)) for i, w in enumerate(windows)]):
        upper = [(scale.x(i), y(b.upper)) for i, b in run if b.upper is not None]
        lower = [(scale.x(i), y(b.lower)) for i, b in run if b.lower is not None]
        if upper and lower:
            points = " ".join(f"{px:.1f},{py:.1f}" for px, py in [*upper, *lower[::-1]])
            parts.append(
                f'<polygon data-kind="estimate-band" points="{points}" fill="{ESTIMATE}" '
                'fill-opacity="0.18" stroke="none"/>'
            )
        parts.append(_polyline([(scale.x(i), y(b.value)) for i, b in run], ESTIMATE, "estimate"))
    # the live metric with its interval as error bars
    for i, w in enumerate(windows):
        live = w.live.get(metric)
        if live is None:
            continue
        x = scale.x(i) + min(4.0, scale.slot / 4)
        if live.lower is not None and live.upper is not None:
            parts.append(
                f'<line data-kind="live-interval" x1="{x:.1f}" x2="{x:.1f}" '
                f'y1="{y(live.lower):.1f}" y2="{y(live.upper):.1f}" stroke="{LIVE}" '
                'stroke-width="1.5"/>'
            )
        parts.append(
            f'<rect data-kind="live" x="{x - 3:.1f}" y="{y(live.value) - 3:.1f}" width="6" '
            f'height="6" fill="{LIVE}"><title>window {i + 1}: live {metric} '
            f"{_interval_text(live)}</title></rect>"
        )
    # the truth, as the thick line everything else is judged against
    truth = [(i, w.truth.get(metric)) for i, w in enumerate(windows)]
    known = [(i, v) for i, v in truth if v is not None and math.isfinite(v)]
    parts.append(_polyline([(scale.x(i), y(v)) for i, v in known], TRUTH, "truth", width=2.5))
    for i, v in known:
        mark = "#fff" if v >= goal else TRUTH
        parts.append(
            f'<circle data-kind="window-truth" cx="{scale.x(i):.1f}" cy="{y(v):.1f}" r="4" '
            f'fill="{mark}" stroke="{TRUTH}" stroke-width="1.5"><title>window {i + 1}: true '
            f"{metric} {v:.3f} (goal {goal:.2f})</title></circle>"
        )
    # after a promotion: what the replaced champion would have scored on the same rows
    before = [(i, w.champion_truth.get(metric)) for i, w in enumerate(windows)]
    counter = [(i, v) for i, v in before if v is not None and math.isfinite(v)]
    for first, last in _index_runs([i for i, _ in counter]):
        line = [(scale.x(i), y(v)) for i, v in counter if first <= i <= last]
        parts.append(_polyline(line, CHAMPION, "champion-truth", width=1.5, dash="3 3"))
    parts.append(
        f'<line data-kind="goal-line" x1="{LEFT}" x2="{LEFT + PLOT}" y1="{y(goal):.1f}" '
        f'y2="{y(goal):.1f}" stroke="{GOAL}" stroke-width="2" stroke-dasharray="8 4"/>'
    )
    parts.append(_loop_events(timeline.events, scale, y.top, y.bottom))
    has_estimate = any(metric in w.estimate for w in windows)
    live_bands = [w.live[metric] for w in windows if metric in w.live]
    legend = [
        ("line", TRUTH, "true (from labels)", "filled: under the goal"),
        (
            "band",
            ESTIMATE,
            "estimate, no labels",
            "line and band" if has_estimate else "none exported",
        ),
        (
            "bar",
            LIVE,
            "live, from feedback",
            ("square and interval" if any(b.lower is not None for b in live_bands) else "square")
            if live_bands
            else "no live metric yet",
        ),
        ("dash", GOAL, f"goal {goal:.2f}", ""),
    ]
    if counter:
        legend.append(("dash", CHAMPION, "old champion, same rows", "after the promotion"))
    parts.append(_legend(legend, top + 4))
    return _svg(height, "".join(parts), f"panel-{metric}")


def _drift_panel(timeline: Timeline, scale: _XScale) -> str:
    windows = timeline.windows
    features = timeline.top_features[: len(FEATURE_COLOURS)]
    values = [1.0]
    for w in windows:
        values += [w.drift[f] for f, _ in features if f in w.drift]
        if w.weighted_drift is not None and timeline.weighted_drift_threshold:
            values.append(w.weighted_drift / timeline.weighted_drift_threshold)
    high = max(2.0, math.ceil(max(values) * 2) / 2)
    height, top = 240, 30
    y = _YScale(0.0, high, top, top + 180)
    ranked_by = (
        "most important features"
        if any(i is not None for _, i in features)
        else "features that moved most (no importance exported)"
    )
    title = f"drift / alarm level of the {ranked_by} (above 1: drifted)"
    parts = [_frame(title, y, height, scale, windows, 4)]
    parts.append(_risk_shading(windows, scale, y))
    parts.append(
        f'<line data-kind="drift-level" x1="{LEFT}" x2="{LEFT + PLOT}" y1="{y(1):.1f}" '
        f'y2="{y(1):.1f}" stroke="#444" stroke-width="1" stroke-dasharray="4 3"/>'
        f'<text class="small" x="{LEFT + 4}" y="{y(1) - 4:.1f}">alarm level</text>'
    )
    legend: list[tuple[str, str, str, str]] = []
    for (feature, importance), colour in zip(features, FEATURE_COLOURS, strict=False):
        points = [
            (scale.x(i), y(w.drift[feature])) for i, w in enumerate(windows) if feature in w.drift
        ]
        parts.append(_polyline(points, colour, "feature-drift", width=2))
        note = f"importance {importance:.3f}" if importance is not None else ""
        legend.append(("line", colour, feature, note))
    if timeline.weighted_drift_threshold:
        level = timeline.weighted_drift_threshold
        points = [
            (scale.x(i), y(w.weighted_drift / level))
            for i, w in enumerate(windows)
            if w.weighted_drift is not None
        ]
        if points:
            parts.append(_polyline(points, "#000", "weighted-drift", width=2.5, dash="6 3"))
            legend.append(("dash", "#000", "weighted by importance", ""))
    parts.append(_legend(legend, top + 4))
    return _svg(height, "".join(parts), "panel-drift")


def _alert_panel(timeline: Timeline, scale: _XScale) -> str:
    """One lane per alert (its name written in the lane, so long names fit), the monitor's
    verdict first."""
    windows = timeline.windows
    names = sorted({a.name for a in timeline.alerts})
    lane, top = 32, 30
    lanes = (
        ["model at risk (the monitor's verdict)", *names]
        if names
        else ["model at risk (the monitor's verdict)", "no alert fired during the replay"]
    )
    height = top + len(lanes) * lane + 40
    parts = [
        f'<text class="title" x="{LEFT}" y="18">the monitor\'s verdict, and the alerts '
        "firing in Prometheus</text>"
    ]
    for row, label in enumerate(lanes):
        y0 = top + row * lane
        parts.append(
            f'<text class="small" x="{LEFT + 2}" y="{y0 + 11}">{_e(label)}</text>'
            f'<line x1="{LEFT}" x2="{LEFT + PLOT}" y1="{y0 + lane - 1}" y2="{y0 + lane - 1}" '
            'stroke="#e5e5e5"/>'
        )
    runs = _risk_runs(windows)
    if not runs:
        parts.append(
            f'<text class="small" x="{LEFT + 2}" y="{top + 25}">not at risk in any judged window'
            "</text>"
        )
    for first, last in runs:
        parts.append(
            f'<rect data-kind="verdict" x="{scale.x(first - 0.5):.1f}" y="{top + 14}" '
            f'width="{scale.slot * (last - first + 1):.1f}" height="{lane - 18}" fill="{RISK}"/>'
        )
    times = [w.wall_time for w in windows]
    for row, name in enumerate(names, start=1):
        y0 = top + row * lane
        for span in (a for a in timeline.alerts if a.name == name):
            x1, x2 = scale.x(_position(times, span.start)), scale.x(_position(times, span.end))
            parts.append(
                f'<rect data-kind="alert-span" data-alert="{_e(name)}" x="{x1:.1f}" '
                f'y="{y0 + 14}" width="{max(x2 - x1, 3):.1f}" height="{lane - 18}" '
                f'fill="#C0392B"><title>{_e(name)} firing</title></rect>'
            )
    parts.append(_x_axis(windows, scale, top + len(lanes) * lane))
    return _svg(height, "".join(parts), "panel-alerts")


# --- drawing helpers -------------------------------------------------------------------------


class _YScale:
    def __init__(self, low: float, high: float, top: float, bottom: float) -> None:
        self.low, self.high, self.top, self.bottom = low, high, top, bottom

    def __call__(self, value: float) -> float:
        value = min(max(value, self.low), self.high)
        return self.bottom - (value - self.low) / (self.high - self.low) * (self.bottom - self.top)


def _frame(
    title: str, y: _YScale, height: int, scale: _XScale, windows: list[WindowPoint], ticks: int
) -> str:
    parts = [f'<text class="title" x="{LEFT}" y="18">{_e(title)}</text>']
    step = next(
        s
        for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 20, 50)
        if (y.high - y.low) / s <= ticks
    )
    for k in range(math.floor(y.high / step - y.low / step + 1e-9) + 1):
        value = math.ceil(y.low / step - 1e-9) * step + k * step
        if value > y.high + 1e-9:
            break
        py = y(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + PLOT}" y1="{py:.1f}" y2="{py:.1f}" stroke="#e5e5e5"/>'
            f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{value:.2f}</text>'
        )
    parts.append(_phase_boundaries(windows, scale, y.top, y.bottom))
    parts.append(_x_axis(windows, scale, y.bottom))
    return "".join(parts)


def _x_axis(windows: list[WindowPoint], scale: _XScale, y0: float) -> str:
    """Window numbers under the plot, with the data's date range of labelled windows."""
    parts = [f'<line x1="{LEFT}" x2="{LEFT + PLOT}" y1="{y0}" y2="{y0}" stroke="#888"/>']
    every = max(1, math.ceil(80 / scale.slot))  # a date label is about 75 pixels wide
    for i, w in enumerate(windows):
        if i % every:
            continue
        x = scale.x(i)
        parts.append(f'<text x="{x:.1f}" y="{y0 + 14}" text-anchor="middle">{i + 1}</text>')
        if w.first_time:
            parts.append(
                f'<text class="small" x="{x:.1f}" y="{y0 + 27}" text-anchor="middle">'
                f"{_e(w.first_time[:10])}</text>"
            )
    parts.append(
        f'<text class="small" x="{LEFT - 30}" y="{y0 + 14}" text-anchor="end">window</text>'
        f'<text class="small" x="{LEFT - 40}" y="{y0 + 27}" text-anchor="end">from</text>'
    )
    return "".join(parts)


def _phase_boundaries(windows: list[WindowPoint], scale: _XScale, top: float, bottom: float) -> str:
    parts = []
    for i in range(1, len(windows)):
        if windows[i].phase != windows[i - 1].phase:
            x = scale.x(i - 0.5)
            parts.append(
                f'<line data-kind="phase-boundary" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
                f'y2="{bottom}" stroke="#555" stroke-width="1.5"/>'
                f'<text class="small" x="{x + 4:.1f}" y="{top + 12}">'
                f"{_e(windows[i].phase)} starts</text>"
            )
    return "".join(parts)


def _index_runs(indexes: list[int]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive indexes."""
    runs: list[tuple[int, int]] = []
    for i in indexes:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _loop_events(events: list[LoopEvent], scale: _XScale, top: float, bottom: float) -> str:
    """A vertical mark after the window where each loop step happened, labelled."""
    parts = []
    for n, event in enumerate(events):
        x = scale.x(event.after + 0.5)
        colour = EVENT_COLOURS.get(event.kind, "#555")
        parts.append(
            f'<line data-kind="loop-event" data-event="{_e(event.kind)}" x1="{x:.1f}" '
            f'x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="{colour}" stroke-width="2.5">'
            f"<title>{_e(event.label)}</title></line>"
            f'<text class="small" x="{x + 3:.1f}" y="{bottom - 6 - 13 * (n % 3)}" '
            f'fill="{colour}">{_e(event.kind)}</text>'
        )
    return "".join(parts)


def _risk_runs(windows: list[WindowPoint]) -> list[tuple[int, int]]:
    """(first, last) indexes of each run of windows judged "model at risk"."""
    runs: list[tuple[int, int]] = []
    for i, w in enumerate(windows):
        if not w.at_risk:
            continue
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _risk_shading(windows: list[WindowPoint], scale: _XScale, y: _YScale) -> str:
    return "".join(
        f'<rect data-kind="at-risk" x="{scale.x(first - 0.5):.1f}" y="{y.top}" '
        f'width="{scale.slot * (last - first + 1):.1f}" height="{y.bottom - y.top}" '
        f'fill="{RISK}" fill-opacity="0.16"><title>windows {first + 1}-{last + 1}: model at risk'
        "</title></rect>"
        for first, last in _risk_runs(windows)
    )


def _legend(items: list[tuple[str, str, str, str]], y0: float) -> str:
    x0, parts = LEFT + PLOT + 12, []
    for row, (kind, colour, label, note) in enumerate(items):
        y = y0 + row * 34
        if kind == "band":
            parts.append(
                f'<rect x="{x0}" y="{y - 4}" width="22" height="10" fill="{colour}" '
                'fill-opacity="0.25"/>'
            )
        elif kind == "bar":
            parts.append(
                f'<line x1="{x0 + 11}" x2="{x0 + 11}" y1="{y - 6}" y2="{y + 8}" '
                f'stroke="{colour}" stroke-width="1.5"/>'
                f'<rect x="{x0 + 8}" y="{y - 2}" width="6" height="6" fill="{colour}"/>'
            )
        else:
            dash = ' stroke-dasharray="6 3"' if kind == "dash" else ""
            parts.append(
                f'<line x1="{x0}" x2="{x0 + 22}" y1="{y + 1}" y2="{y + 1}" '
                f'stroke="{colour}" stroke-width="2.5"{dash}/>'
            )
        parts.append(f'<text x="{x0 + 28}" y="{y + 5}">{_e(label)}</text>')
        if note:
            parts.append(f'<text class="small" x="{x0 + 28}" y="{y + 18}">{_e(note)}</text>')
    return "".join(parts)


def _polyline(
    points: list[tuple[float, float]], colour: str, kind: str, width: float = 1.5, dash: str = ""
) -> str:
    if not points:
        return ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<polyline data-kind="{kind}" points="{coords}" fill="none" stroke="{colour}" '
        f'stroke-width="{width}"{dashes}/>'
    )


def _svg(height: int, body: str, name: str) -> str:
    return (
        f'<svg id="{name}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}">{body}</svg>\n'
    )


def _runs(items: list[tuple[int, Interval | None]]) -> list[list[tuple[int, Interval]]]:
    """Consecutive windows that have a value, as separate runs (a gap breaks the line)."""
    runs: list[list[tuple[int, Interval]]] = [[]]
    for i, band in items:
        if band is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((i, band))
    return [r for r in runs if r]


def _position(times: list[float], t: float) -> float:
    """Fractional window position of wall time `t` (window i's verdict was read at times[i])."""
    if not times:
        return 0.0
    if t <= times[0]:
        return 0.0
    for i in range(1, len(times)):
        if t <= times[i]:
            return i - 1 + (t - times[i - 1]) / max(times[i] - times[i - 1], 1e-9)
    return len(times) - 0.5


def _phase_note(windows: list[WindowPoint]) -> str:
    phases: list[tuple[str, int]] = []
    for w in windows:
        if phases and phases[-1][0] == w.phase:
            phases[-1] = (w.phase, phases[-1][1] + 1)
        else:
            phases.append((w.phase, 1))
    return "; ".join(f"{count} windows of {_e(phase)}" for phase, count in phases) or "no windows"


def _loop_note(timeline: Timeline) -> str:
    if not timeline.events:
        return ""
    steps = "; ".join(f"{e.label} (after window {e.after + 1})" for e in timeline.events)
    return (
        f"<br>The retrain loop, marked by vertical lines: {_e(steps)}. After a promotion the "
        "dashed grey line is what the replaced champion scores on the same rows."
    )


def _interval_text(band: Interval) -> str:
    if band.lower is None or band.upper is None:
        return f"{band.value:.3f}"
    return f"{band.value:.3f} [{band.lower:.3f}, {band.upper:.3f}]"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
