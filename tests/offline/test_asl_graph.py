"""The state machine picture: every state drawn, the path taken bold and coloured."""

import json
import re
from pathlib import Path
from xml.etree import ElementTree

from offline.asl_graph import COLOURS, render_svg

ASL = json.loads((Path(__file__).parents[2] / "state_machine" / "retrain.asl.json").read_text())


def _fill_of(svg: str, state: str) -> str:
    match = re.search(rf'<rect [^>]*fill="(#[0-9a-f]+)"[^>]*/><text [^>]*>{state} \(', svg)
    assert match, f"{state} not drawn"
    return match.group(1)


def test_render_failed_run_marks_path_and_failed_state() -> None:
    # GIVEN a run that failed in CheckRules
    path = [
        *("LoadRunSettings", "ClaimPipeline", "IsPipelineFree", "ValidateDataset", "CheckAlreadyTrained"),
        *("IsNewDataset", "StartTuning", "CheckRules", "NotifyFailure", "RunFailed"),
    ]
    # WHEN it is drawn
    svg = render_svg(ASL, path, failed_state="CheckRules")
    # THEN it is valid SVG with every state, the failed state red and unvisited states white
    ElementTree.fromstring(svg)
    for state in ASL["States"]:
        assert f">{state} (" in svg
    assert _fill_of(svg, "CheckRules") == COLOURS["failed"]
    assert _fill_of(svg, "ValidateDataset") == COLOURS["visited"]
    assert _fill_of(svg, "DeployEndpoint") == "#ffffff"
    # bold: the seven real transitions of the path (StartTuning -> CheckRules and NotifyFailure -> RunFailed are
    # no edges of the ASL)
    assert svg.count('stroke-width="2.5"') == 7


def test_render_successful_run_draws_no_failure_edges() -> None:
    path = ["LoadRunSettings", "ValidateDataset", "RetrainingSucceeded"]
    svg = render_svg(ASL, path)
    assert _fill_of(svg, "NotifyFailure") == "#ffffff"
    assert _fill_of(svg, "RetrainingSucceeded") == COLOURS["visited"]
