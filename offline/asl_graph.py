"""A picture of the state machine with the path an execution took, drawn as SVG straight from the ASL.

States are laid out top to bottom in the order the flow first reaches them; the failure states sit in a column of
their own. Visited states are green, the failed one red, the rest grey, and every transition the execution made is
drawn bold — the same reading as the Step Functions console's graph inspector.
"""

from __future__ import annotations

from html import escape
from itertools import pairwise
from typing import Any

BOX_W, BOX_H, GAP_Y, MARGIN = 230, 34, 22, 20
COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "visited": "#2e7d32", "idle": "#9e9e9e"}


def _successors(state: dict[str, Any]) -> list[str]:
    nexts = [c["Next"] for c in state.get("Choices", [])]
    for key in ("Next", "Default"):
        if key in state:
            nexts.append(state[key])
    nexts += [c["Next"] for c in state.get("Catch", [])]
    return nexts


def _layout_order(asl: dict[str, Any]) -> list[str]:
    order: list[str] = []
    pending = [asl["StartAt"]]
    while pending:
        name = pending.pop(0)
        if name in order:
            continue
        order.append(name)
        pending.extend(_successors(asl["States"][name]))
    return order + [name for name in asl["States"] if name not in order]


def _is_failure_state(name: str, asl: dict[str, Any]) -> bool:
    catch_targets = {c["Next"] for s in asl["States"].values() for c in s.get("Catch", [])}
    return asl["States"][name]["Type"] == "Fail" or name in catch_targets


def render_svg(asl: dict[str, Any], path_taken: list[str], failed_state: str | None = None) -> str:
    """``path_taken`` is the sequence of state names entered; ``failed_state`` the one whose error ended the run."""
    order = _layout_order(asl)
    main = [n for n in order if not _is_failure_state(n, asl)]
    side = [n for n in order if _is_failure_state(n, asl)]
    position: dict[str, tuple[int, int]] = {}
    for row, name in enumerate(main):
        position[name] = (MARGIN + 60, MARGIN + row * (BOX_H + GAP_Y))
    for row, name in enumerate(side):
        position[name] = (MARGIN + 60 + BOX_W + 120, MARGIN + (len(main) // 2 + row) * (BOX_H + GAP_Y))
    width = MARGIN * 2 + 60 + BOX_W * 2 + 120 + 40
    height = MARGIN * 2 + max(len(main), len(main) // 2 + len(side)) * (BOX_H + GAP_Y)

    taken = set(pairwise(path_taken))
    visited = set(path_taken)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="13">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    for name in order:
        state = asl["States"][name]
        for target in dict.fromkeys(_successors(state)):
            bold = (name, target) in taken
            if not bold and target in side and name not in side:
                continue  # every task can fail; draw only the catch that actually happened
            parts.append(_edge(position[name], position[target], bold))
    for name in order:
        x, y = position[name]
        if name == failed_state:
            colour = COLOURS["failed"]
        elif name in visited:
            colour = COLOURS["failed"] if asl["States"][name]["Type"] == "Fail" else COLOURS["visited"]
        else:
            colour = COLOURS["idle"]
        fill = colour if name in visited or name == failed_state else "#ffffff"
        text = "#ffffff" if fill != "#ffffff" else "#424242"
        label = f"{name} ({asl['States'][name]['Type']})"
        parts.append(
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" stroke="{colour}" '
            f'stroke-width="2"/><text x="{x + BOX_W / 2}" y="{y + BOX_H / 2 + 4}" text-anchor="middle" '
            f'fill="{text}">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _edge(start: tuple[int, int], end: tuple[int, int], bold: bool) -> str:
    (x1, y1), (x2, y2) = start, end
    style = 'stroke="#222" stroke-width="2.5"' if bold else 'stroke="#bbb" stroke-width="1.2"'
    if x1 == x2 and y2 > y1:  # straight down the main column
        d = f"M {x1 + BOX_W / 2} {y1 + BOX_H} L {x2 + BOX_W / 2} {y2}"
    elif x1 == x2:  # a poll loop going back up: bow out to the left
        bow = x1 - 45
        d = f"M {x1} {y1 + BOX_H / 2} C {bow} {y1 + BOX_H / 2}, {bow} {y2 + BOX_H / 2}, {x2} {y2 + BOX_H / 2}"
    else:
        d = f"M {x1 + BOX_W} {y1 + BOX_H / 2} L {x2} {y2 + BOX_H / 2}"
    return f'<path d="{d}" fill="none" {style} marker-end="url(#arrow)"/>'
