"""The run report: one self-contained HTML page per run, pure (no AWS), the same page for the same inputs.

``render_report(ReportInputs(...))`` returns the page. Every part of the inputs is optional, so a failed run gets
the same page with what it has, and the error (the state that failed, Error and Cause) at the top:

- ``record``: the run record (``run_record.build_record``): trigger, dataset, jobs, hyperparameters, rules, gate,
  deployment, timings, cost estimate, outcome, error;
- ``trials``: the tuning trials ``{"name", "status", "objective", "duration_seconds", "hyperparameters"}``;
- ``history``: the final training job's ``metrics.json`` ``epochs`` (training_code/training_job.py);
- ``rules``: CheckRules' output (``{"passed", "rules", "details", "sagemaker_rules", "warnings", ...}``); the
  record's ``rules`` when not given;
- ``evaluation``: the final job's ``evaluation.json`` (training_code/paired_evaluation.py): champion against
  challenger on the same test images;
- ``thumbnails``: misclassified test images ``{"jpeg", "true", "predicted", "probability"}``;
- ``timeline``: the states entered ``{"state", "entered" (ISO 8601), "seconds", "status"}``;
- ``state_machine_svg``: the state machine drawing (state_machine_drawing.py), embedded as given (less an XML
  prolog, and any script);
- ``notes``: what the caller could not gather for the report, shown under the header.

Self-contained: no script, no stylesheet, font or image fetched from anywhere; the plots are matplotlib's SVG
(object API, no pyplot, so no backend is switched and threads do not share a figure), with text drawn as paths and a
fixed hash salt, ids scoped per plot, and no date in them; thumbnails are base64 JPEGs of at most 128 px. All text
from the inputs is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

THUMBNAIL_PX = 128
BREED_CHANGES_SHOWN = 8
LISTED_BREEDS = 20
NO_ISSUES, ISSUES = "NoIssuesFound", "IssuesFound"

# rcParams are process-wide: each plot is drawn inside rc_context under one lock.
_PLOT_LOCK = threading.Lock()
_RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "run-report",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "figure.dpi": 100,
}
GREEN, RED, AMBER, BLUE, GREY = "#1a7f37", "#cf222e", "#9a6700", "#0969da", "#6e7781"

OUTCOMES = {
    "succeeded": ("Succeeded", "the new model was deployed", "ok"),
    "rejected": ("Rejected", "the gate or the approver kept the serving model", "warn"),
    "approval_timed_out": ("Approval timed out", "nobody approved the model in time; it stays pending", "warn"),
    "failed": ("Failed", "nothing in production was changed", "bad"),
    "already_trained": ("Already trained", "this dataset was trained before; nothing to do", "neutral"),
    "queued": ("Queued", "another run was in progress; this trigger waits for it", "neutral"),
}


@dataclass(frozen=True)
class ReportInputs:
    record: Mapping[str, Any] | None = None
    trials: Sequence[Mapping[str, Any]] | None = None
    history: Sequence[Mapping[str, Any]] | None = None
    rules: Mapping[str, Any] | None = None
    evaluation: Mapping[str, Any] | None = None
    thumbnails: Sequence[Mapping[str, Any]] | None = None
    timeline: Sequence[Mapping[str, Any]] | None = None
    state_machine_svg: str | None = None
    # What the caller could not read for the report (an artifact gone, an unreadable archive): shown at the top.
    notes: Sequence[str] | None = None


# ------------------------------------------------------------------------------------------------------- helpers


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def breed_name(label: Any) -> str:
    """ "001.Affenpinscher" -> "Affenpinscher", "023.German_shepherd_dog" -> "German shepherd dog"."""
    text = re.sub(r"^\d+\.", "", str(label)).replace("_", " ").strip()
    return text or str(label)


def _pct(value: Any, digits: int = 2) -> str:
    number = _num(value)
    return "—" if number is None else f"{number * 100:.{digits}f}%"


def _pp(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"{number * 100:+.2f} pp"


def _interval(interval: Any) -> str:
    values = [_num(v) for v in _list(interval)]
    if len(values) != 2 or values[0] is None or values[1] is None:
        return "—"
    return f"[{values[0] * 100:+.2f}, {values[1] * 100:+.2f}] pp"


def _seconds(value: Any) -> str:
    number = _num(value)
    if number is None:
        return "—"
    if number < 120:
        return f"{number:.1f} s"
    minutes, seconds = divmod(round(number), 60)
    if minutes < 120:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _usd(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"${number:.4f}"


def _size(value: Any) -> str:
    number = _num(value)
    if number is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if number < 1024 or unit == "GB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return "—"  # pragma: no cover


def _fixed(value: Any, spec: str) -> str:
    number = _num(value)
    return "—" if number is None else format(number, spec)


def _mpl(text: Any) -> str:
    """Text for matplotlib: a ``$`` would start mathtext."""
    return str(text).replace("$", r"\$")


def _readable_cause(cause: Any) -> tuple[str, str | None]:
    """A Lambda error's Cause is the JSON of errorMessage/errorType/stackTrace: (message, stack trace)."""
    if cause is None:
        return "", None
    text = str(cause)
    try:
        parsed = json.loads(text)
    except ValueError:
        return text, None
    if not isinstance(parsed, dict):
        return text, None
    trace = parsed.get("stackTrace")
    trace_text = "".join(str(line) for line in trace) if isinstance(trace, list) and trace else None
    return str(parsed.get("errorMessage", text)), trace_text


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = (), css: str = "") -> str:
    """``rows`` hold HTML already escaped; ``numeric`` the columns aligned right."""
    head = "".join(f"<th{' class=n' if i in numeric else ''}>{_esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _pairs(items: Iterable[tuple[str, str]]) -> str:
    """A two-column key/value table; values are HTML already escaped."""
    rows = "".join(f"<tr><th>{_esc(key)}</th><td>{value}</td></tr>" for key, value in items)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _note(text: str, kind: str = "info") -> str:
    return f'<p class="note {kind}">{text}</p>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_esc(title)}</h2>{body}</section>'


def _code(value: Any) -> str:
    if isinstance(value, Mapping | list):
        value = json.dumps(value, sort_keys=True, default=str)
    return f"<code>{_esc(value)}</code>"


# ---------------------------------------------------------------------------------------------------------- plots


def _scope_svg(svg: str, prefix: str) -> str:
    """matplotlib's SVG made fit to sit inline beside others: no prolog, metadata or global style, ids prefixed."""
    svg = re.sub(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'<style type="text/css">.*?</style>', "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg)
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", svg)
    return svg.strip()


def _plot(name: str, size: tuple[float, float], draw: Callable[[Figure], None], caption: str) -> str:
    with _PLOT_LOCK, rc_context(_RC):
        figure = Figure(figsize=size, layout="constrained")
        draw(figure)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = _scope_svg(buffer.getvalue(), f"{name}-")
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{_esc(caption)}" ', 1)
    return f'<figure class="plot">{svg}<figcaption>{_esc(caption)}</figcaption></figure>'


def _interval_plot(difference: float, low: float, high: float, tolerance: float | None, confidence: float) -> str:
    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        points = [difference * 100, low * 100, high * 100, 0.0]
        if tolerance is not None:
            points.append(-tolerance * 100)
        span = max(max(points) - min(points), 1.0)
        left, right = min(points) - span * 0.15, max(points) + span * 0.15
        axes.set_xlim(left, right)
        axes.set_ylim(-1, 1)
        passed = tolerance is None or low >= -tolerance - 1e-9
        if tolerance is not None:
            axes.axvspan(left, -tolerance * 100, color=RED, alpha=0.08, lw=0)
            axes.axvline(-tolerance * 100, color=RED, ls="--", lw=1.2, label=f"tolerance −{tolerance * 100:.2f} pp")
        axes.axvline(0, color=GREY, lw=1, label="no difference")
        colour = GREEN if passed else RED
        axes.errorbar(
            [difference * 100],
            [0],
            xerr=[[difference * 100 - low * 100], [high * 100 - difference * 100]],
            fmt="o",
            color=colour,
            capsize=6,
            lw=2.5,
            ms=8,
            label=f"difference, {confidence:.0%} interval",
        )
        axes.annotate(
            f"{difference * 100:+.2f} pp  [{low * 100:+.2f}, {high * 100:+.2f}]",
            (difference * 100, 0),
            xytext=(0, 12),
            textcoords="offset points",
            ha="center",
            color=colour,
            fontweight="bold",
        )
        axes.set_yticks([])
        axes.spines["left"].set_visible(False)
        axes.grid(axis="y", visible=False)
        axes.set_xlabel("challenger − champion accuracy on the same test images (percentage points)")
        axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8)

    return _plot("interval", (7.5, 1.9), draw, "Paired difference with its interval, against the tolerance")


def _breed_change_plot(changes: list[tuple[str, float, float, float, int]]) -> str:
    shown = changes[::-1]

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        values = [change * 100 for _, change, _, _, _ in shown]
        axes.barh(range(len(shown)), values, color=[GREEN if v > 0 else RED for v in values], height=0.6)
        axes.set_yticks(range(len(shown)), [_mpl(breed_name(name)) for name, *_ in shown])
        axes.axvline(0, color=GREY, lw=1)
        axes.set_xlabel("per-breed accuracy change (percentage points)")
        axes.grid(axis="y", visible=False)

    return _plot(
        "breeds", (7.5, 0.8 + 0.24 * len(shown)), draw, "Breeds with the largest accuracy change, challenger − champion"
    )


def _training_plot(history: list[dict[str, Any]]) -> str:
    def draw(figure: Figure) -> None:
        losses, accuracy = figure.subplots(1, 2)
        epochs = [_num(row.get("epoch")) for row in history]
        for key, label, colour in (("train_loss", "train loss", BLUE), ("valid_loss", "validation loss", AMBER)):
            points = [(e, _num(row.get(key))) for e, row in zip(epochs, history, strict=True)]
            xs = [e for e, v in points if e is not None and v is not None]
            ys = [v for e, v in points if e is not None and v is not None]
            if xs:
                losses.plot(xs, ys, marker="o", ms=3, color=colour, label=label)
        losses.set_title("Loss")
        losses.set_xlabel("epoch")
        losses.legend()
        points = [(e, _num(row.get("valid_accuracy"))) for e, row in zip(epochs, history, strict=True)]
        xs = [e for e, v in points if e is not None and v is not None]
        ys = [v * 100 for e, v in points if e is not None and v is not None]
        if xs:
            accuracy.plot(xs, ys, marker="o", ms=3, color=GREEN, label="validation accuracy")
        accuracy.set_title("Validation accuracy (%)")
        accuracy.set_xlabel("epoch")
        for axes in (losses, accuracy):
            axes.xaxis.get_major_locator().set_params(integer=True)

    return _plot("training", (7.5, 2.6), draw, "Training curves of the final training job")


def _tuning_plot(trials: list[dict[str, Any]], names: list[str], best: str | None) -> str:
    def draw(figure: Figure) -> None:
        axes_list = figure.subplots(1, len(names), squeeze=False)[0]
        for axes, name in zip(axes_list, names, strict=True):
            _tuning_axes(axes, trials, name, best)
        axes_list[0].set_ylabel("validation accuracy (%)")

    return _plot(
        "tuning",
        (min(3.6 * len(names), 7.5) if len(names) > 1 else 4.2, 2.6),
        draw,
        "Tuning: objective (validation accuracy) over each searched hyperparameter; ★ the best trial",
    )


def _tuning_axes(axes: Axes, trials: list[dict[str, Any]], name: str, best: str | None) -> None:
    values = [_hyper(_dict(t.get("hyperparameters")).get(name)) for t in trials]
    numbers = [_num(v) for v in values]
    numeric = all(n is not None for n in numbers)
    categories = sorted({str(v) for v in values})
    points = []
    for trial, value, number in zip(trials, values, numbers, strict=True):
        objective = _num(trial.get("objective"))
        if objective is None:
            continue
        x = number if number is not None and numeric else float(categories.index(str(value)))
        points.append((x, objective * 100, trial.get("name") == best))
    if numeric:
        positive = [n for n in numbers if n is not None and n > 0]
        if positive and len(positive) == len(numbers):
            if "learning_rate" in name or max(positive) / min(positive) >= 10:
                axes.set_xscale("log")
                axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
                axes.xaxis.set_minor_formatter(NullFormatter())
            elif "batch" in name:
                axes.set_xscale("log", base=2)
                ticks = sorted(set(positive))
                axes.set_xticks(ticks, [f"{t:g}" for t in ticks])
                axes.minorticks_off()
    else:
        axes.set_xticks(range(len(categories)), [_mpl(c) for c in categories])
    plain = [(x, y) for x, y, is_best in points if not is_best]
    if plain:
        axes.scatter([x for x, _ in plain], [y for _, y in plain], color=BLUE, s=28, zorder=3)
    starred = [(x, y) for x, y, is_best in points if is_best]
    if starred:
        axes.scatter([x for x, _ in starred], [y for _, y in starred], color=AMBER, marker="*", s=160, zorder=4)
    axes.set_xlabel(_mpl(name.replace("_", " ")) + (" (log)" if axes.get_xscale() == "log" else ""))


def _timeline_plot(rows: list[dict[str, Any]]) -> str:
    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        end = max((start + seconds for row in rows for start, seconds, _ in row["bars"]), default=1.0)
        visible = max(end, 1.0) * 0.003  # an instant state still shows as a sliver
        for index, row in enumerate(rows):
            bars = [(start, max(seconds, visible)) for start, seconds, _ in row["bars"]]
            colours = [RED if failed else (GREY if row["poll"] else BLUE) for _, _, failed in row["bars"]]
            axes.broken_barh(bars, (index - 0.35, 0.7), facecolors=colours)
        axes.set_yticks(range(len(rows)), [_mpl(row["state"]) for row in rows])
        axes.invert_yaxis()
        axes.set_xlabel("seconds since the run started")
        axes.set_xlim(left=0)
        axes.grid(axis="y", visible=False)

    return _plot(
        "timeline",
        (7.5, 0.9 + 0.2 * len(rows)),
        draw,
        "Timeline: when each state ran (grey: waits and polls, red: the state that failed)",
    )


# ------------------------------------------------------------------------------------------------- the sections


@dataclass(frozen=True)
class _Facts:
    """What the header and several sections share."""

    outcome: str
    failed_state: str | None
    challenger_accuracy: float | None
    served_as: str | None
    champion_accuracy: float | None
    champion_state: str  # "scored", "none", "unscored", "unknown"
    champion_error: str | None
    paired: dict[str, Any]
    tolerance: float | None
    gate: dict[str, Any]


def _failed_state(timeline: Sequence[Mapping[str, Any]]) -> str | None:
    failed = [str(entry.get("state")) for entry in timeline if str(entry.get("status", "")).lower() == "failed"]
    return failed[0] if failed else None


def _facts(inputs: ReportInputs) -> _Facts:
    record = _dict(inputs.record)
    evaluation = _dict(inputs.evaluation)
    gate = _dict(record.get("gate"))
    challenger = _dict(evaluation.get("challenger"))
    champion_entry = evaluation.get("champion")
    champion = _dict(champion_entry)
    paired = _dict(evaluation.get("paired"))
    outcome = str(record.get("outcome") or "")
    failed_state = _failed_state(inputs.timeline or [])
    if not outcome:
        outcome = "failed" if failed_state or record.get("error") else "unknown"
    challenger_accuracy = _num(challenger.get("accuracy"))
    if challenger_accuracy is None:
        challenger_accuracy = _num(gate.get("challenger_accuracy"))
    if challenger_accuracy is None:
        challenger_accuracy = _num(record.get("test_accuracy"))
    champion_accuracy = _num(paired.get("champion_accuracy"))
    if champion_accuracy is None:
        champion_accuracy = _num(champion.get("accuracy")) if "error" not in champion else None
    if champion_accuracy is None:
        champion_accuracy = _num(gate.get("champion_accuracy"))
    if "error" in champion:
        champion_state = "unscored"
    elif champion_accuracy is not None:
        champion_state = "scored"
    elif (inputs.evaluation is not None and champion_entry is None) or gate.get("comparison") == "no champion":
        champion_state = "none"
    elif gate.get("comparison") == "champion unscored":
        champion_state = "unscored"
    else:
        champion_state = "unknown"
    tolerance = _num(gate.get("tolerance"))
    return _Facts(
        outcome=outcome,
        failed_state=failed_state,
        challenger_accuracy=challenger_accuracy,
        served_as=str(challenger.get("served_as") or gate.get("served_as") or "") or None,
        champion_accuracy=champion_accuracy,
        champion_state=champion_state,
        champion_error=str(champion["error"]) if "error" in champion else None,
        paired=paired or _dict(gate.get("paired")),
        tolerance=tolerance,
        gate=gate,
    )


def _header(inputs: ReportInputs, facts: _Facts) -> str:
    record = _dict(inputs.record)
    execution = _dict(record.get("execution"))
    title, meaning, kind = OUTCOMES.get(facts.outcome, (facts.outcome.replace("_", " ").capitalize(), "", "neutral"))
    dataset = _dict(record.get("dataset"))
    subtitle = []
    if execution.get("name"):
        subtitle.append(f"execution <code>{_esc(execution['name'])}</code>")
    if dataset.get("key"):
        subtitle.append(f"dataset <code>{_esc(dataset['key'])}</code>")
    if _dict(record.get("timings")).get("started_at"):
        subtitle.append(f"started {_esc(record['timings']['started_at'])}")

    champion_value = {
        "scored": _pct(facts.champion_accuracy),
        "none": "none yet",
        "unscored": "not scored",
    }.get(facts.champion_state, "—")
    paired = facts.paired
    confidence = _num(paired.get("confidence")) or _num(_dict(inputs.evaluation).get("confidence")) or 0.95
    gate = facts.gate
    if "passed" in gate:
        decision = ("deploy" if gate["passed"] else "reject", "ok" if gate["passed"] else "bad")
    elif facts.outcome == "failed":
        decision = ("none", "bad")
    else:
        decision = ("none", "neutral")
    cost = _dict(record.get("cost"))
    cards = [
        (
            "Challenger accuracy",
            _pct(facts.challenger_accuracy),
            f"as served ({facts.served_as})" if facts.served_as else "test split",
            "",
        ),
        ("Champion accuracy", champion_value, "same test images" if facts.champion_state == "scored" else "", ""),
        (
            "Difference",
            _pp(paired.get("difference")),
            f"{confidence:.0%} interval {_interval(paired.get('interval'))}" if paired else "no paired comparison",
            "",
        ),
        (
            "Decision",
            decision[0],
            f"tolerance {facts.tolerance * 100:.2f} pp"
            if facts.tolerance is not None
            else ("the run failed before the gate" if facts.outcome == "failed" else ""),
            decision[1],
        ),
        ("Duration", _seconds(_dict(record.get("timings")).get("total_seconds")), "", ""),
        ("Cost estimate", _usd(cost.get("total_usd")), "SageMaker jobs" if cost else "", ""),
    ]
    card_html = "".join(
        f'<div class="card {css}"><div class="k">{_esc(k)}</div><div class="v">{_esc(v)}</div>'
        f'<div class="s">{_esc(s)}</div></div>'
        for k, v, s, css in cards
    )
    return (
        f'<header><div class="outcome {kind}"><span class="badge">{_esc(title)}</span> {_esc(meaning)}</div>'
        f"<h1>Retraining run report</h1><p class=sub>{' · '.join(subtitle)}</p>"
        f'<div class="cards">{card_html}</div></header>'
    )


def _error_section(inputs: ReportInputs, facts: _Facts) -> str:
    error = _dict(_dict(inputs.record).get("error"))
    if facts.outcome != "failed" and not error:
        return ""
    message, trace = _readable_cause(error.get("Cause"))
    items = [
        ("Failed state", f"<strong>{_esc(facts.failed_state or 'not known')}</strong>"),
        ("Error", f"<code>{_esc(error.get('Error') or 'not recorded')}</code>"),
        ("Cause", f'<pre class="cause">{_esc(message or "not recorded")}</pre>'),
    ]
    body = _pairs(items)
    if trace:
        body += f"<details><summary>Stack trace</summary><pre>{_esc(trace)}</pre></details>"
    return f'<section id="error" class="error"><h2>What failed</h2>{body}</section>'


def _decision_section(inputs: ReportInputs, facts: _Facts) -> str:
    gate = facts.gate
    if not gate:
        why = {
            "failed": "The run failed before the champion/challenger gate (see what failed above).",
            "already_trained": "This dataset was trained before: the run ended before training.",
            "queued": "The run waited behind another one.",
        }.get(facts.outcome, "No gate decision was recorded.")
        return _section("decision", "Decision", _note(_esc(why)))
    passed = gate.get("passed")
    verdict = '<span class="st pass">✔ passed: deploy</span>' if passed else '<span class="st fail">✖ rejected</span>'
    items = [
        ("Verdict", verdict),
        ("Reason", _esc(gate.get("reason"))),
        ("Comparison", _esc(gate.get("comparison"))),
        ("Accuracy floor", _pct(gate.get("floor"))),
        ("Tolerance", f"{facts.tolerance * 100:.2f} pp" if facts.tolerance is not None else "—"),
    ]
    if gate.get("per_breed_tolerance") is not None:
        items.append(("Per-breed tolerance", _pct(gate.get("per_breed_tolerance"))))
    if gate.get("model_package_arn"):
        items.append(("Model package", _code(gate["model_package_arn"])))
    decision = _dict(_dict(inputs.record).get("approval_decision"))
    if decision:  # ApprovalMode manual: the person's decision in the registry
        items.append(
            ("Approval", f"{_esc(decision.get('status'))} by {_code(decision.get('approved_by'))}: "
             f"{_esc(decision.get('description'))}")
        )  # fmt: skip
    elif facts.outcome == "approval_timed_out":
        items.append(("Approval", "nobody decided within ApprovalTimeoutHours: the package stays pending"))
    return _section("decision", "Decision", _pairs(items))


def _breed_changes(evaluation: dict[str, Any]) -> list[tuple[str, float, float, float, int]]:
    """(breed, change, challenger accuracy, champion accuracy, images) on the breeds both models know."""
    challenger = _dict(_dict(evaluation.get("challenger")).get("per_breed"))
    champion = _dict(_dict(evaluation.get("champion")).get("per_breed"))
    paired = _dict(evaluation.get("paired"))
    excluded = {str(b) for b in _list(paired.get("breeds_only_challenger")) + _list(paired.get("breeds_only_champion"))}
    changes = []
    for breed in sorted(set(challenger) & set(champion) - excluded):
        ours, theirs = _dict(challenger[breed]), _dict(champion[breed])
        ours_n, theirs_n = _num(ours.get("images")), _num(theirs.get("images"))
        ours_c, theirs_c = _num(ours.get("correct")), _num(theirs.get("correct"))
        if not ours_n or not theirs_n or ours_c is None or theirs_c is None:
            continue
        mine, other = ours_c / ours_n, theirs_c / theirs_n
        changes.append((breed, mine - other, mine, other, int(ours_n)))
    return changes


def _confused_table(model: dict[str, Any]) -> str:
    pairs = [_dict(p) for p in _list(model.get("confused_pairs"))]
    if not pairs:
        return _note("No confusions recorded.")
    return _table(
        ["True breed", "Predicted as", "Images"],
        ([_esc(breed_name(p.get("true"))), _esc(breed_name(p.get("predicted"))), _esc(p.get("count"))] for p in pairs),
        numeric=(2,),
    )


def _evaluation_section(inputs: ReportInputs, facts: _Facts) -> str:
    evaluation = _dict(inputs.evaluation)
    if not evaluation:
        text = "No paired evaluation for this run (the final training job left no evaluation.json)."
        if facts.gate:
            text += f" The gate recorded challenger accuracy {_pct(facts.challenger_accuracy)}"
            text += (
                f" and champion accuracy {_pct(facts.champion_accuracy)}."
                if facts.champion_accuracy is not None
                else "."
            )
        return _section("evaluation", "Champion vs challenger", _note(_esc(text)))
    challenger = _dict(evaluation.get("challenger"))
    champion = _dict(evaluation.get("champion"))
    scored = bool(champion) and "error" not in champion
    parts = []
    if evaluation.get("champion") is None:
        parts.append(_note("First model: no serving model to compare with, so only the accuracy floor applies."))
    elif not scored:
        parts.append(
            _note(
                f"The serving model could not be scored: <strong>{_esc(champion.get('error'))}</strong>. "
                "Only the accuracy floor applies.",
                "warn",
            )
        )

    def model_rows(key: str, label: str) -> list[str]:
        row = [_esc(label), _esc(challenger.get(key) if key != "accuracy" else _pct(challenger.get(key)))]
        if scored:
            row.append(_esc(champion.get(key) if key != "accuracy" else _pct(champion.get(key))))
        return row

    headers = ["", "Challenger (new model)"] + (["Champion (serving model)"] if scored else [])
    rows = [
        model_rows("accuracy", "Top-1 accuracy"),
        [_esc("Top-5 accuracy"), _pct(challenger.get("top5_accuracy"))]
        + ([_pct(champion.get("top5_accuracy"))] if scored else []),
        model_rows("served_as", "Served as"),
    ]
    if scored and champion.get("model_package_arn"):
        rows.append(["Model package", "this run's", _code(champion["model_package_arn"])])
    parts.append(_table(headers, rows, numeric=(1, 2), css="" if scored else "narrow"))
    parts.append(
        f"<p>{_esc(evaluation.get('test_images', '—'))} test images; confidence "
        f"{_esc(_pct(evaluation.get('confidence', 0.95), 0))}.</p>"
    )
    paired = _dict(evaluation.get("paired"))
    if paired:
        confidence = _num(paired.get("confidence")) or _num(evaluation.get("confidence")) or 0.95
        interval = [_num(v) for v in _list(paired.get("interval"))]
        difference = _num(paired.get("difference"))
        items = [
            ("Difference (challenger − champion)", f"<strong>{_pp(difference)}</strong>"),
            (f"{confidence:.0%} interval", f"<strong>{_interval(paired.get('interval'))}</strong>"),
            ("Method", _esc(paired.get("method"))),
            ("Exact McNemar p", _esc(f"{p:.3g}" if (p := _num(paired.get("mcnemar_p"))) is not None else "—")),
            (
                "Images only one model got right",
                f"challenger {_esc(paired.get('challenger_only_correct', '—'))}, "
                f"champion {_esc(paired.get('champion_only_correct', '—'))}",
            ),
            ("Paired images", _esc(paired.get("images"))),
            ("Shared breeds", _esc(paired.get("shared_breeds"))),
        ]
        for key, who in (("breeds_only_challenger", "the new model"), ("breeds_only_champion", "the serving model")):
            breeds = [breed_name(b) for b in _list(paired.get(key))]
            if breeds:
                shown = ", ".join(breeds[:LISTED_BREEDS]) + (
                    f" and {len(breeds) - LISTED_BREEDS} more" if len(breeds) > LISTED_BREEDS else ""
                )
                items.append((f"Breeds only {who} knows (left out)", _esc(shown)))
        parts.append(_pairs(items))
        if difference is not None and len(interval) == 2 and interval[0] is not None and interval[1] is not None:
            parts.append(_interval_plot(difference, interval[0], interval[1], facts.tolerance, confidence))
    if scored:
        changes = _breed_changes(evaluation)
        gains = sorted((c for c in changes if c[1] > 0), key=lambda c: (-c[1], c[0]))[:BREED_CHANGES_SHOWN]
        losses = sorted((c for c in changes if c[1] < 0), key=lambda c: (c[1], c[0]))[:BREED_CHANGES_SHOWN]

        def change_table(items: list[tuple[str, float, float, float, int]]) -> str:
            if not items:
                return _note("None.")
            return _table(
                ["Breed", "Change", "Challenger", "Champion", "Images"],
                (
                    [_esc(breed_name(b)), _pp(c), _pct(mine, 0), _pct(other, 0), _esc(n)]
                    for b, c, mine, other, n in items
                ),
                numeric=(1, 2, 3, 4),
            )

        parts.append(
            f'<h3>Per-breed gains and losses</h3><p class="small">{len(changes)} breeds both models know; '
            f"{sum(1 for c in changes if c[1] > 0)} better, {sum(1 for c in changes if c[1] < 0)} worse, "
            f"{sum(1 for c in changes if c[1] == 0)} unchanged.</p>"
            f'<div class="cols"><div><h4>Largest gains</h4>{change_table(gains)}</div>'
            f"<div><h4>Largest losses</h4>{change_table(losses)}</div></div>"
        )
        if gains or losses:
            ordered = sorted(gains + losses, key=lambda c: (-c[1], c[0]))
            parts.append(_breed_change_plot(ordered))
    confused = f"<div><h4>Challenger</h4>{_confused_table(challenger)}</div>"
    if scored:
        confused += f"<div><h4>Champion</h4>{_confused_table(champion)}</div>"
    parts.append(f'<h3>Most confused pairs</h3><div class="cols">{confused}</div>')
    parts.append(_misclassified(challenger, inputs.thumbnails or []))
    return _section("evaluation", "Champion vs challenger", "".join(parts))


def _thumbnail(jpeg: Any) -> str | None:
    from PIL import Image

    if not isinstance(jpeg, bytes | bytearray):
        return None
    try:
        with Image.open(io.BytesIO(jpeg)) as opened:
            image = opened.convert("RGB")
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _misclassified(challenger: dict[str, Any], thumbnails: Sequence[Mapping[str, Any]]) -> str:
    parts = ["<h3>Misclassified test images (challenger)</h3>"]
    tiles = []
    for thumbnail in thumbnails:
        encoded = _thumbnail(thumbnail.get("jpeg"))
        true, predicted = breed_name(thumbnail.get("true")), breed_name(thumbnail.get("predicted"))
        caption = f"<b>{_esc(true)}</b><br>taken for {_esc(predicted)} ({_pct(thumbnail.get('probability'), 0)})"
        image = (
            f'<img src="data:image/jpeg;base64,{encoded}" alt="{_esc(breed_name(thumbnail.get("true")))}">'
            if encoded
            else '<div class="noimg">image unreadable</div>'
        )
        tiles.append(f'<figure class="thumb">{image}<figcaption>{caption}</figcaption></figure>')
    if tiles:
        parts.append(f'<div class="thumbs">{"".join(tiles)}</div>')
    examples = [_dict(m) for m in _list(challenger.get("misclassified"))]
    if examples:
        parts.append(
            _table(
                ["Image", "True breed", "Predicted", "Probability"],
                (
                    [
                        _code(m.get("path")),
                        _esc(breed_name(m.get("true"))),
                        _esc(breed_name(m.get("predicted"))),
                        _pct(m.get("probability"), 1),
                    ]
                    for m in examples
                ),
                numeric=(3,),
            )
        )
    if len(parts) == 1:
        parts.append(_note("None recorded."))
    return "".join(parts)


def _assignments(values: Mapping[str, Any], shown: Callable[[Any], Any]) -> str:
    """``name = <code>value</code>, ...`` in name order."""
    return ", ".join(f"{_esc(k)} = <code>{_esc(shown(v))}</code>" for k, v in sorted(values.items()))


def _training_section(inputs: ReportInputs) -> str:
    record = _dict(inputs.record)
    history = [_dict(row) for row in inputs.history or []]
    parts = []
    hyperparameters = _dict(record.get("hyperparameters"))
    jobs = _dict(record.get("jobs"))
    items = []
    if jobs.get("training"):
        items.append(("Training job", _code(jobs["training"])))
    if hyperparameters:
        items.append(("Hyperparameters", _assignments(hyperparameters, lambda v: _format_hyper(_hyper(v)))))
    metrics = _dict(record.get("metrics"))
    if metrics:
        shown = _assignments(metrics, lambda m: f"{v:.4g}" if (v := _num(m)) is not None else m)
        items.append(("Final metrics", shown))
    if items:
        parts.append(_pairs(items))
    if not history:
        parts.append(_note("No per-epoch history for this run."))
        return _section("training", "Training", "".join(parts))
    parts.append(_training_plot(history))
    columns: list[tuple[str, str, Callable[[Any], str]]] = [
        ("epoch", "Epoch", _esc),
        ("train_loss", "Train loss", lambda v: _fixed(v, ".4f")),
        ("valid_loss", "Valid loss", lambda v: _fixed(v, ".4f")),
        ("valid_accuracy", "Valid accuracy", _pct),
        ("images_per_second", "Images/s", lambda v: _fixed(v, ".1f")),
        ("train_image_size", "Image size", lambda v: _esc(v if v is not None else "—")),
    ]
    present = [c for c in columns if any(c[0] in row for row in history)]
    parts.append(
        "<details open><summary>Per-epoch figures</summary>"
        + _table(
            [label for _, label, _ in present],
            ([render(row.get(key)) for key, _, render in present] for row in history),
            numeric=tuple(range(len(present))),
            css="compact",
        )
        + "</details>"
    )
    return _section("training", "Training", "".join(parts))


def _tuning_section(inputs: ReportInputs) -> str:
    record = _dict(inputs.record)
    trials = [_dict(t) for t in inputs.trials or []]
    jobs = _dict(record.get("jobs"))
    intro = f"<p>Tuning job {_code(jobs['tuning'])}.</p>" if jobs.get("tuning") else ""
    if not trials:
        return _section("tuning", "Tuning", intro + _note("No tuning trials for this run."))
    best_name = _dict(jobs.get("best_trial")).get("training_job_name")
    ranked = sorted(
        trials,
        key=lambda t: (_num(t.get("objective")) is None, -(_num(t.get("objective")) or 0.0), str(t.get("name"))),
    )
    if not best_name and ranked and _num(ranked[0].get("objective")) is not None:
        best_name = ranked[0].get("name")
    names: list[str] = []
    for trial in trials:
        for key in _dict(trial.get("hyperparameters")):
            if key not in names:
                names.append(str(key))
    rows = []
    for rank, trial in enumerate(ranked, 1):
        hyper = _dict(trial.get("hyperparameters"))
        is_best = trial.get("name") == best_name
        objective = _num(trial.get("objective"))
        rows.append(
            [
                _esc(rank if objective is not None else "—"),
                ("★ " if is_best else "") + _code(trial.get("name")),
                _esc(trial.get("status")),
                f"<strong>{_pct(objective)}</strong>" if is_best else _pct(objective),
                *(_esc(_format_hyper(_hyper(hyper.get(n)))) for n in names),
                _seconds(trial.get("duration_seconds")),
            ]
        )
    parts = [
        intro,
        _table(
            ["#", "Trial", "Status", "Validation accuracy", *(n.replace("_", " ") for n in names), "Duration"],
            rows,
            numeric=(0, 3, *range(4, 4 + len(names) + 1)),
        ),
    ]
    if names and any(_num(t.get("objective")) is not None for t in trials):
        parts.append(_tuning_plot(ranked, names, str(best_name) if best_name else None))
    return _section("tuning", "Tuning leaderboard", "".join(parts))


def _hyper(value: Any) -> Any:
    """A tuned value as SageMaker reports it: a categorical one comes JSON-quoted ('"64"')."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _format_hyper(value: Any) -> str:
    number = _num(value)
    if number is None:
        return "—" if value is None else str(value)
    return f"{number:.0f}" if number.is_integer() and abs(number) >= 1 else f"{number:.3g}"


RULE_STATUS = {
    NO_ISSUES: ("pass", "✔ No issues found"),
    ISSUES: ("fail", "✖ Issues found"),
}


def _rule_status(status: Any) -> str:
    css, text = RULE_STATUS.get(str(status), ("na", f"⚠ {status} — not a pass"))
    return f'<span class="st {css}">{_esc(text)}</span>'


def _rules_section(inputs: ReportInputs, facts: _Facts) -> str:
    rules = _dict(inputs.rules) or _dict(_dict(inputs.record).get("rules"))
    if not rules:
        why = (
            f"The run failed in {facts.failed_state}: see what failed above."
            if facts.failed_state == "CheckRules"
            else "The run did not reach the rule gate (CheckRules)."
        )
        return _section("rules", "Rules and profiler", _note(_esc(why)))
    details = _dict(rules.get("details"))
    statuses = _dict(rules.get("rules"))
    warned = " ".join(f"{w} " for w in _list(rules.get("warnings")))
    parts = []
    if "passed" in rules:
        parts.append(
            _note(
                "The rule gate passed: every blocking rule reported no issues."
                if rules["passed"]
                else "The rule gate did not pass.",
                "ok" if rules["passed"] else "bad",
            )
        )
    counts = {css: 0 for css in ("pass", "fail", "na")}
    for status in statuses.values():
        counts[RULE_STATUS.get(str(status), ("na", ""))[0]] += 1
    parts.append(
        f'<p class="small">{len(statuses)} rules: {counts["pass"]} no issues, {counts["fail"]} issues found, '
        f"{counts['na']} not evaluated (never counted as a pass). Evidence: {_esc(rules.get('evidence') or '—')}.</p>"
    )
    parts.append(
        _table(
            ["Rule", "Status", "Details"],
            (
                [
                    _esc(name)
                    + ('<br><span class="small">non-blocking</span>' if f"non-blocking rule {name} " in warned else ""),
                    _rule_status(status),
                    _esc(details.get(name, "")),
                ]
                for name, status in statuses.items()
            ),
            css="rules",
        )
    )
    sagemaker = _dict(rules.get("sagemaker_rules"))
    if sagemaker:
        parts.append("<h3>SageMaker's rule jobs</h3>")
        parts.append(_table(["Rule", "Status"], ([_esc(n), _rule_status(s)] for n, s in sagemaker.items())))
    warnings = [str(w) for w in _list(rules.get("warnings"))]
    if warnings:
        parts.append("<h3>Warnings</h3><ul>" + "".join(f"<li>{_esc(w)}</li>" for w in warnings) + "</ul>")
    if rules.get("reports_uri"):
        parts.append(f'<p class="small">Reports: {_code(rules["reports_uri"])}</p>')
    return _section("rules", "Rules and profiler", "".join(parts))


def _dataset_section(inputs: ReportInputs) -> str:
    record = _dict(inputs.record)
    dataset = _dict(record.get("dataset"))
    trigger = _dict(record.get("trigger"))
    parts = []
    trigger_text = (
        "schedule"
        if trigger.get("trigger") == "schedule" or trigger.get("detail-type") == "Scheduled Event"
        else str(trigger.get("detail-type") or trigger.get("trigger") or trigger.get("source") or "manual")
    )
    items = [("Trigger", _esc(trigger_text) + (f" at {_esc(trigger['time'])}" if trigger.get("time") else ""))]
    if record.get("forced"):
        items.append(("Forced", "yes: trained even if the dataset was trained before"))
    if not dataset:
        parts.append(_pairs(items))
        parts.append(_note("The run has no validated dataset."))
        return _section("dataset", "Dataset", "".join(parts))
    source = f"s3://{dataset.get('bucket', '?')}/{dataset.get('key', '?')}"
    items += [
        ("Source", _code(source)),
        ("Version", _code(dataset.get("version_id") or "unversioned")),
        ("ETag", _code(dataset.get("etag"))),
        ("Size", _esc(_size(dataset.get("size")))),
        ("Dataset id", _code(dataset.get("dataset_id"))),
        ("Validated copy", _code(dataset.get("validated_uri"))),
        ("Classes", _esc(dataset.get("class_count", "—"))),
    ]
    parts.append(_pairs(items))
    counts = _dict(dataset.get("counts"))
    if counts:
        total = sum(int(n) for n in (_num(v) for v in counts.values()) if n is not None)
        parts.append(
            _table(
                ["Split", "Images"],
                [*([_esc(s), _esc(n)] for s, n in counts.items()), ["<b>total</b>", f"<b>{total}</b>"]],
                numeric=(1,),
                css="narrow",
            )
        )
    ignored = _dict(dataset.get("ignored"))
    if ignored:
        examples = ", ".join(str(e) for e in _list(ignored.get("examples")))
        parts.append(
            _note(
                f"{_esc(ignored.get('count', 0))} entries ignored"
                + (
                    f" ({_esc(ignored['directory_entries'])} directory entries)"
                    if ignored.get("directory_entries")
                    else ""
                )
                + (f", e.g. <code>{_esc(examples)}</code>" if examples else "")
            )
        )
    return _section("dataset", "Dataset", "".join(parts))


def _deployment_section(inputs: ReportInputs, facts: _Facts) -> str:
    record = _dict(inputs.record)
    deployment = _dict(record.get("deployment"))
    if not deployment:
        why = {
            "rejected": "No deployment: the model was rejected (see the decision) and the serving model stays.",
            "approval_timed_out": "No deployment: nobody approved the model in time.",
            "failed": "No deployment was made by this run.",
            "already_trained": "No deployment: nothing was trained.",
        }.get(facts.outcome, "No deployment recorded.")
        return _section("deployment", "Deployment", _note(_esc(why)))
    status = _dict(deployment.get("status"))
    error = _dict(record.get("error"))
    serving = status.get("serving_config")
    rolled_back = error.get("Error") == "DeploymentRolledBack" or (
        serving is not None
        and deployment.get("endpoint_config") is not None
        and serving != deployment["endpoint_config"]
    )
    if rolled_back:
        kept = _code(serving or deployment.get("previous_endpoint_config"))
        rollback = f'<span class="st fail">✖ rolled back: the endpoint serves {kept}</span>'
    elif status.get("status") == "InService" or facts.outcome == "succeeded":
        rollback = '<span class="st pass">✔ no rollback</span>'
    else:
        rollback = _esc(status.get("status") or "not known")
    config = _dict(deployment.get("deployment_config"))
    policy = _dict(config.get("BlueGreenUpdatePolicy"))
    shifting = _dict(policy.get("TrafficRoutingConfiguration"))
    strategy = str(shifting.get("Type") or ("create" if deployment.get("action") == "create" else "—"))
    items = [
        ("Action", _esc(deployment.get("action"))),
        ("Strategy", _esc(strategy)),
        ("Endpoint", _code(deployment.get("endpoint"))),
        ("New endpoint config", _code(deployment.get("endpoint_config"))),
        ("Previous endpoint config", _code(deployment.get("previous_endpoint_config") or "none")),
        ("Model", _code(deployment.get("model"))),
        ("Endpoint status", _esc(status.get("status") or "—")),
        ("Rollback", rollback),
    ]
    if config:
        items.append(("Deployment config", _code(config)))
    return _section("deployment", "Deployment", _pairs(items))


def _cost_section(inputs: ReportInputs) -> str:
    cost = _dict(_dict(inputs.record).get("cost"))
    if not cost:
        return _section("cost", "Cost estimate", _note("No SageMaker job ran, so there is no cost estimate."))
    parts = []
    if cost.get("total_usd") is None:
        missing = ", ".join(str(m) for m in _list(cost.get("missing_prices")))
        parts.append(_note(f"Total unknown: InstancePrices has no price for <code>{_esc(missing)}</code>.", "warn"))
    items = [("Total (SageMaker jobs)", f"<strong>{_usd(cost.get('total_usd'))}</strong>")]
    if _num(cost.get("spot_savings_usd")):
        items.append(
            ("Managed spot saved", f"{_usd(cost.get('spot_savings_usd'))} of {_usd(cost.get('on_demand_usd'))}")
        )
    if cost.get("endpoint_usd_per_hour") is not None:
        items.append(("Endpoint, while it serves", f"{_usd(cost['endpoint_usd_per_hour'])} per hour"))
    items.append(("Basis", _esc(cost.get("basis"))))
    parts.append(_pairs(items))
    jobs = [_dict(j) for j in _list(cost.get("jobs"))]
    if jobs:
        parts.append(
            _table(
                ["Job", "Instances", "Billable", "Spot", "USD"],
                (
                    [
                        _code(j.get("job")),
                        _esc(f"{j.get('instance_count')} × {j.get('instance_type')}"),
                        _seconds(j.get("billable_seconds")),
                        "yes" if j.get("spot") else "no",
                        _usd(j.get("usd")),
                    ]
                    for j in jobs
                ),
                numeric=(2, 4),
            )
        )
    return _section("cost", "Cost estimate", "".join(parts))


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


POLL_STATES = ("GetTuningStatus", "GetTrainingStatus", "GetEndpointStatus")


def _timeline_rows(timeline: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per state (first entered first); a poll loop's visits are bars on one row."""
    entries = [_dict(e) for e in timeline]
    times = [_parse_time(e.get("entered")) for e in entries]
    known = [t for t in times if t is not None]
    start = min(known) if known and len(known) == len(times) else None
    rows: dict[str, dict[str, Any]] = {}
    offset = 0.0
    for entry, moment in zip(entries, times, strict=True):
        name = str(entry.get("state"))
        seconds = _num(entry.get("seconds")) or 0.0
        begin = (moment - start).total_seconds() if start is not None and moment is not None else offset
        offset = begin + seconds
        failed = str(entry.get("status", "")).lower() == "failed"
        row = rows.setdefault(
            name,
            {
                "state": name,
                "bars": [],
                "entries": 0,
                "seconds": 0.0,
                "status": "",
                "first": begin,
                "poll": name in POLL_STATES or name.startswith("WaitFor") or name.startswith("Is"),
            },
        )
        row["bars"].append((begin, seconds, failed))
        row["entries"] += 1
        row["seconds"] += seconds
        row["status"] = "failed" if failed or row["status"] == "failed" else str(entry.get("status", ""))
    return list(rows.values())


def _timeline_section(inputs: ReportInputs) -> str:
    rows = _timeline_rows(inputs.timeline or [])
    timings = _dict(_dict(inputs.record).get("timings"))
    parts = []
    phases = [
        ("Total", "total_seconds"),
        ("Before tuning", "before_tuning_seconds"),
        ("Tuning", "tuning_seconds"),
        ("Training", "training_seconds"),
        ("Training and rules", "training_and_rules_seconds"),
        ("After training", "after_training_seconds"),
    ]
    shown = [(label, _seconds(timings[key])) for label, key in phases if timings.get(key) is not None]
    if shown:
        parts.append(_pairs(shown))
    if not rows:
        parts.append(_note("No state timeline for this run."))
        return _section("timeline", "Timeline", "".join(parts))
    parts.append(_timeline_plot(rows))
    parts.append(
        "<details><summary>States, with each poll loop folded into one row</summary>"
        + _table(
            ["State", "Entries", "Seconds", "Status"],
            (
                [
                    _esc(r["state"]),
                    _esc(r["entries"]),
                    _esc(f"{r['seconds']:.1f}"),
                    f'<span class="st {"fail" if r["status"] == "failed" else "plain"}">{_esc(r["status"])}</span>',
                ]
                for r in rows
            ),
            numeric=(1, 2),
            css="compact",
        )
        + "</details>"
    )
    return _section("timeline", "Timeline", "".join(parts))


def _state_machine_section(inputs: ReportInputs) -> str:
    svg = inputs.state_machine_svg
    if not svg:
        return ""
    svg = re.sub(r"^\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", "", svg)
    svg = re.sub(r"<script\b.*?</script\s*>", "", svg, flags=re.S | re.I)  # a drawing never needs one
    return _section("graph", "State machine: the path taken", f'<div class="graph">{svg}</div>')


CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1f2328;
background:#fff;max-width:1080px;margin:0 auto;padding:24px 28px 48px;line-height:1.45;font-size:14px}
h1{font-size:1.7em;margin:.2em 0 0}h2{font-size:1.25em;border-bottom:2px solid #d0d7de;padding-bottom:4px;
margin:1.8em 0 .6em}h3{font-size:1.05em;margin:1.3em 0 .4em}h4{margin:.6em 0 .3em;font-size:.95em}
.sub{color:#57606a;margin:.2em 0 1em}code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
font-size:.88em;background:#f6f8fa;padding:0 3px;border-radius:3px;word-break:break-all}
nav{font-size:.9em;margin:14px 0 0;color:#57606a}nav a{color:#0969da;text-decoration:none;margin-right:12px}
.outcome{display:inline-block;padding:6px 12px;border-radius:6px;font-weight:600}
.outcome .badge{font-size:1.15em;margin-right:6px;text-transform:uppercase;letter-spacing:.04em}
.outcome.ok{background:#dafbe1;color:#116329}.outcome.bad{background:#ffebe9;color:#a40e26}
.outcome.warn{background:#fff8c5;color:#7d4e00}.outcome.neutral{background:#ddf4ff;color:#0a3069}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(155px,1fr));gap:10px}
.card{border:1px solid #d0d7de;border-radius:8px;padding:8px 12px}.card .k{color:#57606a;font-size:.85em}
.card .v{font-size:1.45em;font-weight:650;font-variant-numeric:tabular-nums}.card .s{color:#57606a;font-size:.8em}
.card.ok .v{color:#1a7f37}.card.bad .v{color:#cf222e}
table{border-collapse:collapse;width:100%;margin:.4em 0 .8em;font-size:.93em}
th,td{border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:top}
thead th{background:#f6f8fa;border-bottom:1px solid #d0d7de}td.n,th.n{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}
table.kv th{width:230px;color:#57606a;font-weight:500}table.narrow{width:auto;min-width:240px}
table.compact td,table.compact th{padding:2px 8px}
.st{font-weight:600;white-space:nowrap}.st.pass{color:#1a7f37}.st.fail{color:#cf222e}.st.na{color:#9a6700}
.note{padding:8px 12px;border-left:4px solid #0969da;background:#f6f8fa}.note.warn{border-color:#d4a72c;
background:#fff8c5}.note.bad{border-color:#cf222e;background:#ffebe9}.note.ok{border-color:#1a7f37;
background:#dafbe1}.small{color:#57606a;font-size:.9em}
section.error{border:2px solid #cf222e;background:#fff5f5;border-radius:8px;padding:4px 16px 12px;margin-top:20px}
section.error h2{color:#a40e26;border-color:#ffcecb}pre{white-space:pre-wrap;word-break:break-word;margin:0;
font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em}pre.cause{font-size:.95em}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:18px}
figure{margin:.6em 0 1em}figure.plot svg{max-width:100%;height:auto;display:block}
figcaption{color:#57606a;font-size:.85em}.thumbs{display:flex;flex-wrap:wrap;gap:12px}
figure.thumb{width:140px;margin:0}figure.thumb img{width:128px;height:128px;object-fit:contain;background:#f6f8fa;
border:1px solid #d0d7de;border-radius:4px}.noimg{width:128px;height:128px;background:#f6f8fa;color:#57606a;
display:flex;align-items:center;justify-content:center;font-size:.8em}
.graph{overflow-x:auto}.graph svg{max-width:100%;height:auto}details summary{cursor:pointer;color:#57606a}
footer{margin-top:32px;color:#57606a;font-size:.85em;border-top:1px solid #d0d7de;padding-top:8px}
@media print{body{max-width:none;padding:0;font-size:11px}nav{display:none}section,figure,table{
break-inside:avoid}h2{break-after:avoid}details>*{display:block}}
"""


def render_report(inputs: ReportInputs) -> str:
    """The whole page: header with outcome and key numbers, then the sections, with what the run has."""
    facts = _facts(inputs)
    record = _dict(inputs.record)
    sections = [
        _error_section(inputs, facts),
        _decision_section(inputs, facts),
        _evaluation_section(inputs, facts),
        _training_section(inputs),
        _tuning_section(inputs),
        _rules_section(inputs, facts),
        _dataset_section(inputs),
        _deployment_section(inputs, facts),
        _cost_section(inputs),
        _timeline_section(inputs),
        _state_machine_section(inputs),
    ]
    anchors = re.findall(r'<section id="([a-z]+)"[^>]*><h2>([^<]+)</h2>', "".join(sections))
    nav = "<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in anchors) + "</nav>"
    execution = _dict(record.get("execution"))
    footer = (
        f"<footer>Execution {_code(execution.get('arn') or execution.get('name') or 'not recorded')}"
        + (f"; recorded {_esc(record['recorded_at'])}" if record.get("recorded_at") else "")
        + ". Generated from the run record by pipeline.common.run_report.</footer>"
    )
    title = f"Run report: {execution.get('name') or 'retraining run'} ({facts.outcome})"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
        + _header(inputs, facts)
        + nav
        + "".join(_note(_esc(note), "warn") for note in inputs.notes or [])
        + "".join(sections)
        + footer
        + "</body></html>\n"
    )
