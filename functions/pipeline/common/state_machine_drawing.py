"""A picture of the state machine with the path an execution took, drawn as SVG straight from the ASL.

The layout is grandalf's Sugiyama (layered) layout, the algorithm of graphviz's ``dot``: states are ranked top to
bottom from ``StartAt`` (a poll loop's way back is reversed for the ranking only), ordered within their layer to
reduce crossings and placed by Brandes and Köpf; a transition that spans several layers runs through one dummy
vertex per layer it crosses, so it keeps to a lane of its own. The terminal states (Succeed, Fail) are moved to the
bottom layer. Each transition is drawn as a polyline that crosses a layer only vertically, at its own vertex or
dummy, and bends only in the free space between layers, so it never passes through another state's box.

Visited states are green, the failed one red, the rest white; every transition the execution made is drawn bold
(green, or red for the Catch that caught the failure): the same reading as the Step Functions console's graph
inspector. Catch transitions are dashed. The SVG is self-contained: no fonts, styles or scripts from outside.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from html import escape
from itertools import pairwise
from typing import Any

from grandalf.graphs import Edge, Graph, Vertex
from grandalf.layouts import SugiyamaLayout

BOX_H, MIN_BOX_W, CHAR_W, PORT_STEP = 40, 150, 8.2, 12
X_SPACE, Y_SPACE, MARGIN, LANE_W, LANE_STEP, START_SPACE = 24, 34, 24, 10, 5, 34
LEGEND_W = 250
COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "visited": "#2e7d32", "idle": "#9e9e9e"}
EDGE_IDLE = "#b0b0b0"
TERMINAL_TYPES = ("Succeed", "Fail")


@dataclass(frozen=True)
class Transition:
    """One arrow of the ASL: ``kind`` is next, default, choice (``Choices[index]``) or catch (``Catch[index]``)."""

    source: str
    target: str
    kind: str
    index: int = 0

    @property
    def label(self) -> str:
        where = {"next": "Next", "default": "Default"}.get(self.kind, f"{self.kind.title()}[{self.index}]")
        return f"{self.source} → {self.target} ({where})"


@dataclass(frozen=True)
class Box:
    x: float  # left
    y: float  # top
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


@dataclass
class Layout:
    boxes: dict[str, Box]
    routes: dict[Transition, list[tuple[float, float]]]
    layers: dict[str, int]
    width: float
    height: float


def transitions(asl: dict[str, Any]) -> list[Transition]:
    """Every transition of the ASL's top-level states, in the order a reader meets them."""
    found: list[Transition] = []
    for name, state in asl["States"].items():
        found += [Transition(name, c["Next"], "choice", i) for i, c in enumerate(state.get("Choices", []))]
        if "Default" in state:
            found.append(Transition(name, state["Default"], "default"))
        if "Next" in state:
            found.append(Transition(name, state["Next"], "next"))
        found += [Transition(name, c["Next"], "catch", i) for i, c in enumerate(state.get("Catch", []))]
    return found


def taken_transitions(asl: dict[str, Any], path_taken: list[str], failed_state: str | None = None) -> set[Transition]:
    """The transitions behind each step of ``path_taken``. Where two transitions join the same two states (a Next
    and a Catch), the Catch counts only from ``failed_state``, the state whose error was caught."""
    by_pair: dict[tuple[str, str], list[Transition]] = defaultdict(list)
    for transition in transitions(asl):
        by_pair[(transition.source, transition.target)].append(transition)
    taken: set[Transition] = set()
    for source, target in pairwise(path_taken):
        candidates = by_pair.get((source, target))
        if not candidates:
            continue  # not a transition of the ASL (a shortened path)
        caught = [t for t in candidates if t.kind == "catch"]
        normal = [t for t in candidates if t.kind != "catch"]
        if source == failed_state and caught:
            taken.add(caught[0])
        else:
            taken.add((normal or caught)[0])
    return taken


def _box_width(name: str, state: dict[str, Any], degree: int) -> float:
    text = max(len(name) * CHAR_W, len(state["Type"]) * CHAR_W * 0.8) + 28
    return float(max(MIN_BOX_W, text, (degree + 1) * PORT_STEP))


def _feedback_edges(asl: dict[str, Any], successors: dict[str, list[str]]) -> set[tuple[str, str]]:
    """Edges that close a cycle in a depth-first walk from StartAt: reversed for the ranking only."""
    feedback: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1: on the walk's stack, 2: done
    for root in [asl["StartAt"], *asl["States"]]:
        if root in state:
            continue
        stack = [(root, iter(successors[root]))]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                feedback.add((node, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(successors[child])))
    return feedback


class _TerminalsLast(SugiyamaLayout):  # type: ignore[misc]  # grandalf has no type hints
    """Sugiyama ranking, then every terminal state moved to the layer below the deepest other state."""

    def __init__(self, graph: Any, terminals: set[Vertex]) -> None:
        super().__init__(graph)
        self._terminals = terminals

    def rank_all(self, roots: list[Vertex], optimize: bool = False) -> None:
        super().rank_all(roots, optimize)
        others = [self.grx[v].rank for v in self.g.sV if v not in self._terminals]
        bottom = max(others, default=-1) + 1
        for vertex in self._terminals:
            attributes = self.grx[vertex]
            if attributes.rank == bottom:
                continue
            self.layers[attributes.rank].remove(vertex)
            attributes.rank = bottom
            if bottom == len(self.layers):
                self.layers.append(type(self.layers[0])([vertex]))
            else:
                self.layers[bottom].append(vertex)
        while self.layers and not self.layers[-1]:
            self.layers.pop()

    def setxy(self) -> None:
        """grandalf's Brandes-Köpf placement from its two left alignments (towards the median predecessor, and
        towards the median successor), each vertex at the mean of the two. grandalf also computes the two right
        alignments and takes the mean of the medians of all four, but it never shifts the four onto a common frame
        (a step of the paper it leaves out), and its right alignments keep the dead space of the paper's original
        compaction (see the authors' erratum, arXiv:2008.01252): a state would end up far from its neighbours.
        Each alignment keeps every two neighbours in a layer ``xspace`` apart, and so does their mean."""
        self._edge_inverter()
        self._detect_alignment_conflicts()
        for layer in self.layers:
            for v in layer:
                attributes = self.grx[v]
                attributes.root = attributes.align = attributes.sink = v
                attributes.shift, attributes.X, attributes.x = float("inf"), None, [0.0] * 4
        current: int = getattr(self, "dirvh")  # noqa: B009  (grandalf's attribute, untyped)
        left_alignments = (0, 2)  # dirvh 0: leftmost upper, 2: leftmost lower
        for dirvh in left_alignments:
            self.dirvh = dirvh
            self._coord_vertical_alignment()
            self._coord_horizontal_compact()
        self.dirvh = current
        y = 0.0
        for layer in self.layers:
            half = max(v.view.h / 2.0 for v in layer)
            for v in layer:
                x = sum(self.grx[v].x[k] for k in left_alignments) / len(left_alignments)
                v.view.xy = (x, y + half)
            y += 2 * half + self.yspace
        self._edge_inverter()


def layout(asl: dict[str, Any]) -> Layout:
    """Boxes for every state and a route (polyline, source box to target box) for every transition."""
    states = asl["States"]
    arrows = transitions(asl)
    pairs: dict[tuple[str, str], list[Transition]] = defaultdict(list)
    for transition in arrows:
        pairs[(transition.source, transition.target)].append(transition)
    successors: dict[str, list[str]] = {name: [] for name in states}
    for source, target in pairs:
        successors[source].append(target)
    degree: defaultdict[tuple[str, str], int] = defaultdict(int)
    for transition in arrows:
        degree[(transition.source, "out")] += 1
        degree[(transition.target, "in")] += 1

    vertices: dict[str, Vertex] = {}
    for name, state in states.items():
        vertex = Vertex(name)
        vertex.view = _View(_box_width(name, state, max(degree[(name, "in")], degree[(name, "out")])), BOX_H)
        vertices[name] = vertex
    edges: dict[tuple[str, str], Edge] = {}
    feedback = _feedback_edges(asl, successors)
    for source, target in pairs:
        if source != target:
            edges[(source, target)] = Edge(vertices[source], vertices[target])
    graph = Graph(list(vertices.values()), list(edges.values()))

    boxes: dict[str, Box] = {}
    layers: dict[str, int] = {}
    lanes: dict[tuple[str, str], dict[int, tuple[float, float]]] = {}  # pair -> rank -> (x of its dummy, y)
    left = float(MARGIN)
    for component in graph.C:
        terminals = {v for v in component.sV if states[v.data]["Type"] in TERMINAL_TYPES}
        sugiyama = _TerminalsLast(component, terminals)
        sugiyama.xspace, sugiyama.yspace = X_SPACE, Y_SPACE
        roots = [v for v in component.sV if v.data == asl["StartAt"]] or [next(iter(component.sV))]
        inverted = [e for key, e in edges.items() if key in feedback and e in component.sE]
        sugiyama.init_all(roots=roots, inverted_edges=inverted)
        for key, edge in edges.items():
            for dummy in sugiyama.ctrls.get(edge, {}).values():
                if dummy.view is not edge.v[0].view and dummy.view is not edge.v[1].view:
                    dummy.view.w = LANE_W + LANE_STEP * (len(pairs[key]) - 1)
                    dummy.view.h = BOX_H
        sugiyama.draw(N=8.5)
        placed = [v.view for layer in sugiyama.layers for v in layer]
        shift = left - min(view.xy[0] - view.w / 2 for view in placed)
        for vertex in component.sV:
            (x, y), view = vertex.view.xy, vertex.view
            boxes[vertex.data] = Box(x - view.w / 2 + shift, y - view.h / 2 + MARGIN + START_SPACE, view.w, view.h)
            layers[vertex.data] = sugiyama.grx[vertex].rank
        for key, edge in edges.items():
            if edge in sugiyama.ctrls:
                ranks = sugiyama.ctrls[edge]
                lanes[key] = {
                    rank: (ranks[rank].view.xy[0] + shift, ranks[rank].view.xy[1] + MARGIN + START_SPACE)
                    for rank in ranks
                    if ranks[rank].view is not edge.v[0].view and ranks[rank].view is not edge.v[1].view
                }
        left = max(view.xy[0] + view.w / 2 for view in placed) + shift + 3 * X_SPACE

    routes = _routes(arrows, pairs, boxes, layers, lanes)
    width = max(b.x + b.w for b in boxes.values()) + MARGIN
    height = max(b.y + b.h for b in boxes.values()) + MARGIN
    return Layout(boxes, routes, layers, width, height)


class _View:
    def __init__(self, w: float, h: float) -> None:
        self.w, self.h = w, h
        self.xy: tuple[float, float] = (0.0, 0.0)


def _routes(
    arrows: list[Transition],
    pairs: dict[tuple[str, str], list[Transition]],
    boxes: dict[str, Box],
    layers: dict[str, int],
    lanes: dict[tuple[str, str], dict[int, tuple[float, float]]],
) -> dict[Transition, list[tuple[float, float]]]:
    # The points each transition passes between its two boxes: one (x, y centre) per layer it crosses.
    middles: dict[Transition, list[tuple[float, float]]] = {}
    for transition in arrows:
        key = (transition.source, transition.target)
        siblings = pairs[key]
        offset = (siblings.index(transition) - (len(siblings) - 1) / 2) * LANE_STEP
        r0, r1 = layers[transition.source], layers[transition.target]
        direction = 1 if r1 > r0 else -1
        lane = lanes.get(key, {})
        middles[transition] = [
            (lane[r][0] + offset, lane[r][1]) for r in range(r0 + direction, r1, direction) if r in lane
        ]
    # Ports: where a transition leaves or enters a box, spread along the side it uses, ordered by where it goes.
    sides: dict[tuple[str, str], list[tuple[float, int, Transition, str]]] = defaultdict(list)
    for order, transition in enumerate(arrows):
        if transition.source == transition.target:
            continue
        down = layers[transition.target] > layers[transition.source]
        points = middles[transition]
        towards_target = points[0][0] if points else boxes[transition.target].cx
        towards_source = points[-1][0] if points else boxes[transition.source].cx
        sides[(transition.source, "bottom" if down else "top")].append((towards_target, order, transition, "out"))
        sides[(transition.target, "top" if down else "bottom")].append((towards_source, order, transition, "in"))
    ports: dict[tuple[Transition, str], tuple[float, float]] = {}
    for (name, side), users in sides.items():
        box = boxes[name]
        users.sort(key=lambda u: (u[0], u[1]))
        spacing = min(float(PORT_STEP), (box.w - 16) / max(len(users) - 1, 1))
        y = box.y + box.h if side == "bottom" else box.y
        for i, (_, _, transition, end) in enumerate(users):
            ports[(transition, end)] = (box.cx + (i - (len(users) - 1) / 2) * spacing, y)

    routes: dict[Transition, list[tuple[float, float]]] = {}
    for transition in arrows:
        box = boxes[transition.source]
        if transition.source == transition.target:  # a loop on itself: out of the right side and back in
            right, mid = box.x + box.w, box.y + box.h / 2
            routes[transition] = [(right, mid - 8), (right + 18, mid - 8), (right + 18, mid + 8), (right, mid + 8)]
            continue
        direction = 1 if layers[transition.target] > layers[transition.source] else -1
        route = [ports[(transition, "out")]]
        for x, y in middles[transition]:
            route += [(x, y - direction * BOX_H / 2), (x, y + direction * BOX_H / 2)]
        route.append(ports[(transition, "in")])
        routes[transition] = _without_collinear(route)
    return routes


def _without_collinear(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    kept = [points[0]]
    for here, after in pairwise(points[1:]):
        before = kept[-1]
        cross = (here[0] - before[0]) * (after[1] - before[1]) - (here[1] - before[1]) * (after[0] - before[0])
        if abs(cross) > 1e-6:
            kept.append(here)
    kept.append(points[-1])
    return kept


def _state_colours(name: str, state: dict[str, Any], visited: set[str], failed_state: str | None) -> tuple[str, str]:
    """(stroke, fill) of a state's box."""
    if name == failed_state or (name in visited and state["Type"] == "Fail"):
        return COLOURS["failed"], COLOURS["failed"]
    if name in visited:
        return COLOURS["visited"], COLOURS["visited"]
    return COLOURS["idle"], "#ffffff"


def _edge_style(transition: Transition, taken: bool, failed_state: str | None) -> tuple[str, str, str]:
    """(colour, stroke width, marker id)."""
    if taken:
        red = transition.kind == "catch" and transition.source == failed_state
        return (COLOURS["failed"], "2.6", "sm-arrow-red") if red else (COLOURS["visited"], "2.6", "sm-arrow-green")
    return EDGE_IDLE, "1.2", "sm-arrow-grey"


def _path(points: list[tuple[float, float]]) -> str:
    return "M " + " L ".join(f"{x:.1f} {y:.1f}" for x, y in points)


def render_svg(asl: dict[str, Any], path_taken: list[str], failed_state: str | None = None) -> str:
    """``path_taken`` is the sequence of state names entered; ``failed_state`` the one whose error ended the run."""
    drawing = layout(asl)
    taken = taken_transitions(asl, path_taken, failed_state)
    visited = set(path_taken)
    width, height = drawing.width + LEGEND_W, max(drawing.height, 330)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif" font-size="13">',
        f"<title>{escape(asl.get('Comment', 'State machine'))}</title>",
        "<defs>",
        *(
            f'<marker id="sm-arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" markerUnits="userSpaceOnUse" orient="auto"><path d="M 0 0 L 10 5 L 0 10 z" '
            f'fill="{colour}"/></marker>'
            for name, colour in (("grey", EDGE_IDLE), ("green", COLOURS["visited"]), ("red", COLOURS["failed"]))
        ),
        "</defs>",
        f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
    ]
    # Not taken first, so the path taken is drawn over them.
    for transition in sorted(drawing.routes, key=lambda t: t in taken):
        colour, stroke, marker = _edge_style(transition, transition in taken, failed_state)
        dash = ' stroke-dasharray="6 4"' if transition.kind == "catch" else ""
        parts.append(
            f'<path class="transition" data-source="{escape(transition.source)}" '
            f'data-target="{escape(transition.target)}" data-kind="{transition.kind}" '
            f'data-index="{transition.index}" data-taken="{str(transition in taken).lower()}" '
            f'd="{_path(drawing.routes[transition])}" fill="none" stroke="{colour}" stroke-width="{stroke}"'
            f'{dash} stroke-linejoin="round" marker-end="url(#{marker})"><title>{escape(transition.label)}</title>'
            "</path>"
        )
    start = drawing.boxes[asl["StartAt"]]
    parts.append(
        f'<g class="start"><circle cx="{start.cx:.1f}" cy="{start.y - START_SPACE + 8:.1f}" r="6" fill="#424242"/>'
        f'<path d="M {start.cx:.1f} {start.y - START_SPACE + 14:.1f} L {start.cx:.1f} {start.y:.1f}" '
        'stroke="#424242" stroke-width="1.5" marker-end="url(#sm-arrow-grey)"/></g>'
    )
    for name, box in drawing.boxes.items():
        state = asl["States"][name]
        stroke, fill = _state_colours(name, state, visited, failed_state)
        text, subtext = ("#ffffff", "#e8f5e9") if fill != "#ffffff" else ("#212121", "#616161")
        radius = BOX_H / 2 if state["Type"] in TERMINAL_TYPES else 6
        parts.append(
            f'<g class="state" data-state="{escape(name)}" data-type="{escape(state["Type"])}" '
            f'data-layer="{drawing.layers[name]}"><title>{escape(state.get("Comment", name))}</title>'
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" rx="{radius}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="2"/>'
            f'<text x="{box.cx:.1f}" y="{box.y + 17:.1f}" text-anchor="middle" font-weight="bold" '
            f'fill="{text}">{escape(name)}</text>'
            f'<text x="{box.cx:.1f}" y="{box.y + 32:.1f}" text-anchor="middle" font-size="11" '
            f'fill="{subtext}">{escape(state["Type"])}</text></g>'
        )
    parts += _legend(drawing.width + 10, MARGIN)
    parts.append("</svg>")
    return "\n".join(parts)


def _legend(x: float, y: float) -> list[str]:
    parts = [
        f'<g class="legend" transform="translate({x:.0f} {y:.0f})" font-size="12">',
        '<rect x="0" y="0" width="230" height="286" rx="6" fill="#fafafa" stroke="#e0e0e0"/>',
        '<text x="12" y="22" font-weight="bold">Legend</text>',
    ]
    boxes = (
        ("visited", COLOURS["visited"], COLOURS["visited"]),
        ("failed (its error was caught)", COLOURS["failed"], COLOURS["failed"]),
        ("not visited", COLOURS["idle"], "#ffffff"),
    )
    for row, (label, stroke, fill) in enumerate(boxes):
        top = 36 + row * 28
        parts.append(
            f'<rect x="12" y="{top}" width="34" height="18" rx="4" fill="{fill}" stroke="{stroke}" stroke-width="2"/>'
            f'<text x="56" y="{top + 13}">{label}</text>'
        )
    lines = (
        ("transition taken", COLOURS["visited"], "2.6", "", "green"),
        ("Catch taken (the failure)", COLOURS["failed"], "2.6", ' stroke-dasharray="6 4"', "red"),
        ("Next / Choice / Default", EDGE_IDLE, "1.2", "", "grey"),
        ("Catch (on error)", EDGE_IDLE, "1.2", ' stroke-dasharray="6 4"', "grey"),
    )
    for row, (label, colour, stroke, dash, marker) in enumerate(lines):
        mid = 130 + row * 26
        parts.append(
            f'<path d="M 12 {mid} L 46 {mid}" stroke="{colour}" stroke-width="{stroke}"{dash} '
            f'marker-end="url(#sm-arrow-{marker})"/><text x="56" y="{mid + 4}">{label}</text>'
        )
    parts += [
        '<rect x="12" y="236" width="34" height="18" rx="9" fill="#ffffff" stroke="#9e9e9e" stroke-width="2"/>',
        '<text x="56" y="249">terminal state (Succeed, Fail)</text>',
        '<text x="12" y="274" fill="#616161" font-size="11">Hover a box or an arrow for details.</text>',
        "</g>",
    ]
    return parts
