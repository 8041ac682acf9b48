"""The state machine picture: a layered drawing of the real ASL, every transition once, the path taken highlighted.

The checks read the SVG itself (the boxes and the polylines it draws), not the layout's own data structures.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from pipeline.common.state_machine_drawing import COLOURS, EDGE_IDLE, render_svg

ASL = json.loads((Path(__file__).parents[2] / "state_machine" / "retrain.asl.json").read_text())
SVG_NS = {"svg": "http://www.w3.org/2000/svg"}
TERMINAL = {"Succeed", "Fail"}

# A run that polled the tuning job twice, then failed in CheckRules: its error was caught and the run ended in
# RunFailed after RecordRun and ReleasePipeline.
FAILED_RUN = [
    *("LoadRunSettings", "ClaimPipeline", "IsPipelineFree", "ValidateDataset", "CheckAlreadyTrained"),
    *("IsNewDataset", "StartTuning", "WaitForTuning", "GetTuningStatus", "IsTuningDone", "WaitForTuning"),
    *("GetTuningStatus", "IsTuningDone", "PickBestJob", "StartTraining", "WaitForTraining", "GetTrainingStatus"),
    *("IsTrainingDone", "CheckRules", "NotifyFailure", "RecordRun", "WriteRunReport", "ReleasePipeline"),
    *("HowDidItEnd", "RunFailed"),
]
FAILED_RUN_TRANSITIONS = {
    ("LoadRunSettings", "ClaimPipeline", "next", 0),
    ("ClaimPipeline", "IsPipelineFree", "next", 0),
    ("IsPipelineFree", "ValidateDataset", "choice", 0),
    ("ValidateDataset", "CheckAlreadyTrained", "next", 0),
    ("CheckAlreadyTrained", "IsNewDataset", "next", 0),
    ("IsNewDataset", "StartTuning", "choice", 0),
    ("StartTuning", "WaitForTuning", "next", 0),
    ("WaitForTuning", "GetTuningStatus", "next", 0),
    ("GetTuningStatus", "IsTuningDone", "next", 0),
    ("IsTuningDone", "WaitForTuning", "default", 0),
    ("IsTuningDone", "PickBestJob", "choice", 0),
    ("PickBestJob", "StartTraining", "next", 0),
    ("StartTraining", "WaitForTraining", "next", 0),
    ("WaitForTraining", "GetTrainingStatus", "next", 0),
    ("GetTrainingStatus", "IsTrainingDone", "next", 0),
    ("IsTrainingDone", "CheckRules", "choice", 0),
    ("CheckRules", "NotifyFailure", "catch", 0),  # the failure: drawn red
    ("NotifyFailure", "RecordRun", "next", 0),  # not its Catch, which joins the same two states
    ("RecordRun", "WriteRunReport", "next", 0),
    ("WriteRunReport", "ReleasePipeline", "next", 0),
    ("ReleasePipeline", "HowDidItEnd", "next", 0),
    ("HowDidItEnd", "RunFailed", "choice", 0),
}


@dataclass(frozen=True)
class Rect:
    x0: float
    y0: float
    x1: float
    y1: float

    def touches(self, point: tuple[float, float], tolerance: float = 0.6) -> bool:
        """The point lies on the rectangle's outline."""
        x, y = point
        inside = self.x0 - tolerance <= x <= self.x1 + tolerance and self.y0 - tolerance <= y <= self.y1 + tolerance
        on_side = min(abs(x - self.x0), abs(x - self.x1), abs(y - self.y0), abs(y - self.y1)) <= tolerance
        return inside and on_side


@dataclass(frozen=True)
class Drawn:
    source: str
    target: str
    kind: str
    index: int
    taken: bool
    stroke: str
    width: float
    dashed: bool
    points: list[tuple[float, float]]

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.source, self.target, self.kind, self.index)


def _asl_transitions(asl: dict[str, Any]) -> Counter[tuple[str, str, str, int]]:
    """Every Next, Default, Choices[].Next and Catch[].Next of the ASL, read here independently of the module."""
    found: Counter[tuple[str, str, str, int]] = Counter()
    for name, state in asl["States"].items():
        if "Next" in state:
            found[(name, state["Next"], "next", 0)] += 1
        if "Default" in state:
            found[(name, state["Default"], "default", 0)] += 1
        for i, choice in enumerate(state.get("Choices", [])):
            found[(name, choice["Next"], "choice", i)] += 1
        for i, catch in enumerate(state.get("Catch", [])):
            found[(name, catch["Next"], "catch", i)] += 1
    return found


def _parse(svg: str) -> tuple[dict[str, Rect], dict[str, dict[str, str]], list[Drawn]]:
    root = ElementTree.fromstring(svg)  # valid XML, or this raises
    boxes: dict[str, Rect] = {}
    states: dict[str, dict[str, str]] = {}
    for group in root.iterfind(".//svg:g[@class='state']", SVG_NS):
        rect = group.find("svg:rect", SVG_NS)
        assert rect is not None
        x, y, w, h = (float(rect.get(a, "nan")) for a in ("x", "y", "width", "height"))
        name = group.get("data-state", "")
        boxes[name] = Rect(x, y, x + w, y + h)
        texts = [t.text for t in group.iterfind("svg:text", SVG_NS)]
        states[name] = {"type": group.get("data-type", ""), "fill": rect.get("fill", ""), "texts": " ".join(texts)}
    drawn = []
    for path in root.iterfind(".//svg:path[@class='transition']", SVG_NS):
        d = path.get("d", "")
        assert re.fullmatch(r"M [-\d. ]+( L [-\d. ]+)+", d), d  # straight segments only
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
        drawn.append(
            Drawn(
                source=path.get("data-source", ""),
                target=path.get("data-target", ""),
                kind=path.get("data-kind", ""),
                index=int(path.get("data-index", "-1")),
                taken=path.get("data-taken") == "true",
                stroke=path.get("stroke", ""),
                width=float(path.get("stroke-width", "0")),
                dashed=path.get("stroke-dasharray") is not None,
                points=list(zip(numbers[::2], numbers[1::2], strict=True)),
            )
        )
    return boxes, states, drawn


def _segment_hits_rect(p: tuple[float, float], q: tuple[float, float], rect: Rect, margin: float = 1.0) -> bool:
    """Liang-Barsky clipping of segment pq against the rectangle grown by ``margin``."""
    (x0, y0), (x1, y1) = p, q
    dx, dy = x1 - x0, y1 - y0
    low, high = 0.0, 1.0
    for step, distance in (
        (-dx, x0 - (rect.x0 - margin)),
        (dx, (rect.x1 + margin) - x0),
        (-dy, y0 - (rect.y0 - margin)),
        (dy, (rect.y1 + margin) - y0),
    ):
        if step == 0:
            if distance < 0:
                return False
            continue
        t = distance / step
        if step < 0:
            low = max(low, t)
        else:
            high = min(high, t)
        if low > high:
            return False
    return True


def test_every_terminal_state_is_below_every_other_state() -> None:
    boxes, states, _ = _parse(render_svg(ASL, []))
    terminals = [boxes[n] for n, s in states.items() if s["type"] in TERMINAL]
    others = [boxes[n] for n, s in states.items() if s["type"] not in TERMINAL]
    assert len(terminals) == sum(1 for s in ASL["States"].values() if s["Type"] in TERMINAL) > 4
    assert min(b.y0 for b in terminals) > max(b.y1 for b in others)
    # and the flow starts at the top: StartAt above every other state
    start = boxes[ASL["StartAt"]]
    assert all(start.y1 < b.y0 for name, b in boxes.items() if name != ASL["StartAt"])


def test_a_terminal_state_reached_early_still_sits_in_the_bottom_layer() -> None:
    # GIVEN a Fail reachable from the first state, which a plain layered layout would put in the second layer
    asl = {
        "StartAt": "Check",
        "States": {
            "Check": {"Type": "Choice", "Choices": [{"Variable": "$.ok", "BooleanEquals": False, "Next": "Bad"}],
                      "Default": "Work"},
            "Work": {"Type": "Task", "Resource": "arn", "Next": "More", "Catch": [
                {"ErrorEquals": ["States.ALL"], "Next": "Bad"}]},
            "More": {"Type": "Pass", "Next": "Done"},
            "Bad": {"Type": "Fail"},
            "Done": {"Type": "Succeed"},
        },
    }  # fmt: skip
    boxes, _, drawn = _parse(render_svg(asl, ["Check", "Bad"]))
    # THEN both terminals share the bottom layer, below More, and the early Fail's arrow avoids Work and More
    assert boxes["Bad"].y0 == boxes["Done"].y0 > boxes["More"].y1 > boxes["Work"].y1 > boxes["Check"].y1
    early = next(d for d in drawn if d.key == ("Check", "Bad", "choice", 0))
    for p, q in zip(early.points, early.points[1:], strict=False):
        assert not _segment_hits_rect(p, q, boxes["Work"]) and not _segment_hits_rect(p, q, boxes["More"])


def test_every_transition_of_the_asl_is_drawn_exactly_once_between_its_two_boxes() -> None:
    boxes, _, drawn = _parse(render_svg(ASL, FAILED_RUN, failed_state="CheckRules"))
    expected = _asl_transitions(ASL)
    assert Counter(d.key for d in drawn) == expected
    catches = sum(len(state.get("Catch", [])) for state in ASL["States"].values())
    assert catches > 10 and sum(n for key, n in expected.items() if key[2] == "catch") == catches
    assert expected[("NotifyFailure", "RecordRun", "next", 0)] == expected[("NotifyFailure", "RecordRun", "catch", 0)]
    for edge in drawn:
        assert boxes[edge.source].touches(edge.points[0]), edge
        assert boxes[edge.target].touches(edge.points[-1]), edge
        assert edge.dashed == (edge.kind == "catch"), edge


def test_no_transition_passes_through_a_state_it_does_not_join() -> None:
    boxes, _, drawn = _parse(render_svg(ASL, FAILED_RUN, failed_state="CheckRules"))
    crossings = [
        (edge.key, name)
        for edge in drawn
        for p, q in zip(edge.points, edge.points[1:], strict=False)
        for name, box in boxes.items()
        if name not in (edge.source, edge.target) and _segment_hits_rect(p, q, box)
    ]
    assert crossings == []
    # nor do two states overlap
    names = sorted(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ra, rb = boxes[a], boxes[b]
            assert ra.x1 <= rb.x0 or rb.x1 <= ra.x0 or ra.y1 <= rb.y0 or rb.y1 <= ra.y0, (a, b)


def test_the_path_taken_is_highlighted_and_nothing_else() -> None:
    _, states, drawn = _parse(render_svg(ASL, FAILED_RUN, failed_state="CheckRules"))
    assert {d.key for d in drawn if d.taken} == FAILED_RUN_TRANSITIONS
    for edge in drawn:
        if edge.key == ("CheckRules", "NotifyFailure", "catch", 0):
            assert (edge.stroke, edge.width) == (COLOURS["failed"], 2.6)
        elif edge.taken:
            assert (edge.stroke, edge.width) == (COLOURS["visited"], 2.6), edge.key
        else:
            assert (edge.stroke, edge.width) == (EDGE_IDLE, 1.2), edge.key
    # the failed state and the Fail state red, visited states green, the others white
    assert states["CheckRules"]["fill"] == states["RunFailed"]["fill"] == COLOURS["failed"]
    assert states["ValidateDataset"]["fill"] == states["HowDidItEnd"]["fill"] == COLOURS["visited"]
    assert states["DeployEndpoint"]["fill"] == states["RetrainingSucceeded"]["fill"] == "#ffffff"
    # every state readable: its name and its type
    for name, state in ASL["States"].items():
        assert states[name]["texts"] == f"{name} {state['Type']}"


def test_a_caught_failure_between_states_joined_by_next_and_catch_highlights_the_catch() -> None:
    # GIVEN WriteRunReport failed: its Catch and its Next both lead to ReleasePipeline
    path = ["LoadRunSettings", "ClaimPipeline", "IsPipelineFree", "RecordRun", "WriteRunReport", "ReleasePipeline"]
    _, _, drawn = _parse(render_svg(ASL, path, failed_state="WriteRunReport"))
    taken = {d.key for d in drawn if d.taken}
    assert ("WriteRunReport", "ReleasePipeline", "catch", 0) in taken
    assert ("WriteRunReport", "ReleasePipeline", "next", 0) not in taken
    assert ("IsPipelineFree", "RecordRun", "default", 0) in taken


def test_a_successful_run_draws_no_failure_highlighted() -> None:
    path = [*("LoadRunSettings", "ClaimPipeline", "IsPipelineFree", "RecordRun", "WriteRunReport"),
            *("ReleasePipeline", "HowDidItEnd")]  # fmt: skip
    _, states, drawn = _parse(render_svg(ASL, [*path, "QueuedBehindRunningRun"]))
    assert states["NotifyFailure"]["fill"] == "#ffffff"
    assert states["QueuedBehindRunningRun"]["fill"] == COLOURS["visited"]
    assert not any(d.taken for d in drawn if d.kind == "catch")
    assert all(d.stroke != COLOURS["failed"] for d in drawn)


def test_svg_is_self_contained_with_a_legend_and_drawn_the_same_every_time() -> None:
    svg = render_svg(ASL, FAILED_RUN, failed_state="CheckRules")
    root = ElementTree.fromstring(svg)
    legend = root.find(".//svg:g[@class='legend']", SVG_NS)
    assert legend is not None
    legend_text = " ".join(t.text or "" for t in legend.iterfind(".//svg:text", SVG_NS))
    for entry in ("visited", "failed", "not visited", "transition taken", "Catch"):
        assert entry in legend_text
    assert not re.search(r"<(style|script|image|link)\b|@import|https?://(?!www\.w3\.org/2000/svg)|href=", svg)
    assert re.findall(r"url\(([^)]*)\)", svg) and all(u.startswith("#") for u in re.findall(r"url\(([^)]*)\)", svg))
    assert render_svg(ASL, FAILED_RUN, failed_state="CheckRules") == svg
