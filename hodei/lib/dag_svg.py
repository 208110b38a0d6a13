"""A DAG drawn as server-rendered SVG (as the dashboard's chart): a pipeline's jobs, or a
run's, in columns by depth, each edge an arrow from a job to one that needs it.

It takes plain data (nodes with an id, a label, a state and a link; edges as pairs of
ids), so the orchestrator's pipeline page and the pipelines app's run page draw with the
same code without importing each other. The layout is computed here, the markup is the
template ``admin/hodei/dag.html``."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from hodei.admin_tools import STATUS_COLOURS

NODE_WIDTH, NODE_HEIGHT = 184, 44
WAYPOINT_HEIGHT = 12  # the room an edge takes where it crosses a column
COLUMN_GAP, ROW_GAP, MARGIN = 56, 18, 10
LABEL_CHARS = 19  # what fits a node in bold 13 px; the full name is in the tooltip
NEVER_RUN = "#eef0f3"  # a job no run has reached yet (no state)


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    state: str | None = None  # colours the node from the status palette; None: not run
    url: str = ""
    detail: str = ""  # a second, smaller line (the state, an attempt)
    title: str = ""  # the tooltip; the label when empty


@dataclass
class PlacedNode:
    node: Node
    x: int
    y: int
    fill: str
    ink: str  # text colour readable on ``fill``
    label: str
    title: str


@dataclass
class PlacedEdge:
    source: str
    target: str
    path: str


def levels(ids: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Each node's column: 0 for what needs nothing, else one more than the deepest of
    what it needs (the longest path from a root). A node on a cycle, which the services
    refuse, goes after everything else rather than looping."""
    ids = list(dict.fromkeys(ids))
    needs: dict[str, set[str]] = {i: set() for i in ids}
    dependants: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        if source in needs and target in needs and source != target:
            needs[target].add(source)
            dependants[source].add(target)
    remaining = {i: len(needs[i]) for i in ids}
    level: dict[str, int] = {}
    ready = [i for i in ids if not remaining[i]]
    while ready:
        node = ready.pop()
        level[node] = max((level[n] + 1 for n in needs[node]), default=0)
        for child in dependants[node]:
            remaining[child] -= 1
            if not remaining[child]:
                ready.append(child)
    last = max(level.values(), default=-1) + 1
    return {i: level.get(i, last) for i in ids}


def _columns(
    rank: dict[str, int], labels: dict[str, str], edges: list[tuple[str, str]]
) -> list[list[str]]:
    """Ids by column, each column ordered to keep edges short and crossings few: by the
    mean row of their neighbours in the column before (then after, then before again;
    the classic barycentre sweeps), ties by label."""
    columns: list[list[str]] = [[] for _ in range(max(rank.values(), default=-1) + 1)]
    for key in sorted(rank, key=lambda k: (labels[k], k)):
        columns[rank[key]].append(key)
    before: dict[str, list[str]] = defaultdict(list)
    after: dict[str, list[str]] = defaultdict(list)
    for source, target in edges:
        before[target].append(source)
        after[source].append(target)

    def sweep(order: range, neighbours: dict[str, list[str]], step: int) -> None:
        for c in order:
            row = {key: i for i, key in enumerate(columns[c - step])}

            def position(key: str, row=row) -> tuple:
                rows = [row[n] for n in neighbours[key] if n in row]
                return (sum(rows) / len(rows) if rows else float("inf"), labels[key])

            columns[c].sort(key=position)

    count = len(columns)
    sweep(range(1, count), before, 1)
    sweep(range(count - 2, -1, -1), after, -1)
    sweep(range(1, count), before, 1)
    return columns


def _ink(colour: str) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    light = 0.299 * red + 0.587 * green + 0.114 * blue > 160
    return "#1f2328" if light else "#ffffff"


def layout(nodes: Iterable[Node], edges: Iterable[tuple[str, str]]) -> dict:
    """Where everything goes: placed nodes, edge paths (from the right side of a node to
    the left side of one that needs it) and the drawing's size.

    An edge that skips columns passes through a waypoint in each column it crosses,
    ordered with the nodes there like one of them (Sugiyama's dummy nodes): it runs
    between the nodes of those columns instead of under them."""
    by_id = {n.id: n for n in nodes}
    edges = sorted({(s, t) for s, t in edges if s in by_id and t in by_id and s != t})
    rank = levels(list(by_id), edges)
    labels = {key: node.label for key, node in by_id.items()}
    chains: dict[tuple[str, str], list[str]] = {}
    segments = []
    for source, target in edges:
        chain = [source]
        for c in range(rank[source] + 1, rank[target]):
            waypoint = f"{source}>{target}@{c}"
            rank[waypoint], labels[waypoint] = c, labels[source]
            chain.append(waypoint)
        chain.append(target)
        chains[(source, target)] = chain
        segments += zip(chain, chain[1:], strict=False)
    columns = _columns(rank, labels, segments)

    def height(key: str) -> int:
        return NODE_HEIGHT if key in by_id else WAYPOINT_HEIGHT

    def column_height(column: list[str]) -> int:
        return sum(height(k) for k in column) + ROW_GAP * max(len(column) - 1, 0)

    tallest = max((column_height(c) for c in columns), default=0)
    top_of: dict[str, int] = {}
    left_of: dict[str, int] = {}
    for c, column in enumerate(columns):
        # Each column centred on the tallest one: a diamond looks like one.
        y = MARGIN + (tallest - column_height(column)) // 2
        for key in column:
            top_of[key], left_of[key] = y, MARGIN + c * (NODE_WIDTH + COLUMN_GAP)
            y += height(key) + ROW_GAP
    placed = []
    for column in columns:
        for key in column:
            node = by_id.get(key)
            if node is None:
                continue
            fill = STATUS_COLOURS.get(node.state, NEVER_RUN) if node.state else NEVER_RUN
            label = node.label or node.id[:8]
            short = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
            placed.append(
                PlacedNode(
                    node=node,
                    x=left_of[key],
                    y=top_of[key],
                    fill=fill,
                    ink=_ink(fill),
                    label=short,
                    title=node.title or label,
                )
            )

    def middle(key: str) -> int:
        return top_of[key] + height(key) // 2

    paths = []
    for (source, target), chain in chains.items():
        x, y = left_of[source] + NODE_WIDTH, middle(source)
        path = f"M{x},{y}"
        for key in chain[1:]:
            # A curve into the next column; through a waypoint, straight across it.
            x2, y2 = left_of[key] - (4 if key == target else 0), middle(key)
            bend = max((x2 - x) // 2, 20)
            path += f" C{x + bend},{y} {x2 - bend},{y2} {x2},{y2}"
            x, y = x2, y2
            if key != target:
                x += NODE_WIDTH
                path += f" L{x},{y}"
        paths.append(PlacedEdge(source=source, target=target, path=path))
    width = 2 * MARGIN + len(columns) * NODE_WIDTH + max(len(columns) - 1, 0) * COLUMN_GAP
    return {
        "nodes": placed,
        "edges": paths,
        "width": width,
        "height": 2 * MARGIN + tallest,
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
    }


def render(
    nodes: Iterable[Node], edges: Iterable[tuple[str, str]], *, label: str = "Graph"
) -> SafeString:
    """The SVG of the DAG, with a legend of the states it shows. ``edges`` are
    ``(needed, needing)`` pairs: the arrow points the way the run goes."""
    drawing = layout(nodes, edges)
    states = dict.fromkeys(p.node.state for p in drawing["nodes"])
    legend = [
        {"state": s or "not run", "colour": STATUS_COLOURS.get(s, NEVER_RUN) if s else NEVER_RUN}
        for s in states
    ]
    return render_to_string(
        "admin/hodei/dag.html", {"g": drawing, "legend": legend, "label": label}
    )
