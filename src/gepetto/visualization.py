"""The lineage tree of a run's candidates: as DOT text, and as a self-contained HTML page.

gepa 0.1.4 draws the same tree (``gepa.visualization``); the function names and the DOT
layout are gepa's. Each drawing is pure data first (:func:`lineage_info`), then rendered:
DOT for Graphviz, or an HTML page with an inline SVG laid out here (rows by generation), so
the page loads nothing: no CDN, no network (gepa's page loads a Graphviz renderer from a CDN
to draw its DOT text).

Node colours: cyan for the best candidate, orange for the other candidates on the Pareto
front, light gray for the rest. The HTML page holds, like gepa's, the DOT text, the nodes'
data as JSON (``idx``, ``score``, ``parents``, ``role``, ``components``) and a tooltip
element (``id="tooltip"``) that a small inline script (``showTooltip``) fills with a
candidate's texts on hover; without scripts, each node's own SVG title shows them. A table
below the drawing lists every candidate's texts.

Example:
    >>> print(candidate_tree_dot_from_data(
    ...     [{"p": "a"}, {"p": "b"}], [[], [0]], [0.25, 0.75], {0: {1}}, best_idx=1))
    digraph G {
        rankdir=TB;
        node [style=filled, shape=circle, fontsize=50];
        0 [label="0\\n(0.25)", fillcolor=lightgray, tooltip=" "];
        1 [label="1\\n(0.75)", fillcolor=cyan, tooltip=" "];
        0 -> 1;
    }
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LineageNode",
    "candidate_tree_dot_from_data",
    "candidate_tree_html_from_data",
    "lineage_info",
]

_COLOURS = {"best": "cyan", "front": "orange", "": "lightgray"}


@dataclass(frozen=True, slots=True)
class LineageNode:
    """One candidate of the tree."""

    idx: int
    score: float
    parents: tuple[int, ...]
    role: str
    """``"best"``, ``"front"`` (on the Pareto front) or ``""``."""
    generation: int
    """Steps from the seed along the longest chain of parents (the seed is 0)."""
    texts: Mapping[str, str]


def lineage_info(
    candidates: Sequence[Mapping[str, str]],
    parents: Sequence[Sequence[int | None]],
    val_scores: Sequence[float],
    pareto_front_programs: Mapping[Any, set[int]] | Sequence[int],
    *,
    best_idx: int | None = None,
) -> list[LineageNode]:
    """The tree's nodes, in candidate order.

    Args:
        candidates: each candidate's texts.
        parents: each candidate's parent ids (gepa's ``[None]`` for the seed is accepted).
        val_scores: each candidate's mean validation score.
        pareto_front_programs: the front, either gepa's per-example fronts (example ->
            candidate ids) or a list of the non-dominated candidate ids.
        best_idx: the best candidate (default: the first highest score, as gepa).
    """
    if best_idx is None and val_scores:
        best_idx = max(range(len(val_scores)), key=lambda i: val_scores[i])
    if isinstance(pareto_front_programs, Mapping):
        front = {i for ids in pareto_front_programs.values() for i in ids}
    else:
        front = set(pareto_front_programs)
    nodes: list[LineageNode] = []
    for idx, texts in enumerate(candidates):
        ids = tuple(p for p in parents[idx] if p is not None)
        generation = 1 + max((nodes[p].generation for p in ids if p < idx), default=-1)
        role = "best" if idx == best_idx else ("front" if idx in front else "")
        nodes.append(LineageNode(idx, float(val_scores[idx]), ids, role, generation, texts))
    return nodes


def candidate_tree_dot_from_data(
    candidates: Sequence[Mapping[str, str]],
    parents: Sequence[Sequence[int | None]],
    val_scores: Sequence[float],
    pareto_front_programs: Mapping[Any, set[int]] | Sequence[int],
    *,
    best_idx: int | None = None,
) -> str:
    """The lineage tree as Graphviz DOT text (gepa's layout; the texts are not in it)."""
    nodes = lineage_info(candidates, parents, val_scores, pareto_front_programs, best_idx=best_idx)
    return _dot(nodes)


def _dot(nodes: Sequence[LineageNode]) -> str:
    lines = [
        "digraph G {",
        "    rankdir=TB;",
        "    node [style=filled, shape=circle, fontsize=50];",
    ]
    for node in nodes:
        lines.append(
            f'    {node.idx} [label="{node.idx}\\n({node.score:.2f})", '
            f'fillcolor={_COLOURS[node.role]}, tooltip=" "];'
        )
    lines.extend(f"    {parent} -> {node.idx};" for node in nodes for parent in node.parents)
    lines.append("}")
    return "\n".join(lines)


_NODE_W, _NODE_H, _GAP_X, _GAP_Y, _MARGIN = 96, 44, 24, 56, 20


def _layout(nodes: Sequence[LineageNode]) -> dict[int, tuple[float, float]]:
    """Node centres: one row per generation, candidates left to right in id order."""
    rows: dict[int, list[int]] = {}
    for node in nodes:
        rows.setdefault(node.generation, []).append(node.idx)
    width = max((len(row) for row in rows.values()), default=1)
    full = width * (_NODE_W + _GAP_X) - _GAP_X
    centres: dict[int, tuple[float, float]] = {}
    for generation, row in rows.items():
        used = len(row) * (_NODE_W + _GAP_X) - _GAP_X
        left = _MARGIN + (full - used) / 2
        for position, idx in enumerate(row):
            x = left + position * (_NODE_W + _GAP_X) + _NODE_W / 2
            y = _MARGIN + generation * (_NODE_H + _GAP_Y) + _NODE_H / 2
            centres[idx] = (x, y)
    return centres


def _svg(nodes: Sequence[LineageNode]) -> str:
    centres = _layout(nodes)
    xs = [x for x, _ in centres.values()] or [0.0]
    ys = [y for _, y in centres.values()] or [0.0]
    width = max(xs) + _NODE_W / 2 + _MARGIN
    height = max(ys) + _NODE_H / 2 + _MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="candidate lineage">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for node in nodes:
        for parent in node.parents:
            (x1, y1), (x2, y2) = centres[parent], centres[node.idx]
            parts.append(
                f'<line class="edge" x1="{x1:.1f}" y1="{y1 + _NODE_H / 2:.1f}" x2="{x2:.1f}" '
                f'y2="{y2 - _NODE_H / 2:.1f}" stroke="#555" marker-end="url(#arrow)"/>'
            )
    for node in nodes:
        x, y = centres[node.idx]
        tooltip = "\n".join(
            [
                f"candidate {node.idx}: {node.score:.4f}",
                f"parents: {', '.join(map(str, node.parents)) or 'seed'}",
                *(f"{name}: {text}" for name, text in node.texts.items()),
            ]
        )
        parts.append(
            f'<g class="node" id="node-{node.idx}" data-idx="{node.idx}">'
            f"<title>{html.escape(tooltip)}</title>"
            f'<rect x="{x - _NODE_W / 2:.1f}" y="{y - _NODE_H / 2:.1f}" width="{_NODE_W}" '
            f'height="{_NODE_H}" rx="8" fill="{_COLOURS[node.role]}" stroke="#333"/>'
            f'<text x="{x:.1f}" y="{y - 4:.1f}" text-anchor="middle" font-size="14" '
            f'font-weight="bold">{node.idx}</text>'
            f'<text x="{x:.1f}" y="{y + 13:.1f}" text-anchor="middle" font-size="12">'
            f"{node.score:.4f}</text></g>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


_TOOLTIP_SCRIPT = """
const nodes = JSON.parse(document.getElementById("lineage-data").textContent);
const tip = document.getElementById("tooltip");
function showTooltip(event, idx) {
  const node = nodes[idx];
  const lines = [`candidate ${node.idx}: ${node.score.toFixed(4)}`,
    `parents: ${node.parents.join(", ") || "seed"}`];
  for (const [name, text] of Object.entries(node.components)) lines.push(`${name}: ${text}`);
  tip.textContent = lines.join("\\n");
  tip.style.left = `${event.pageX + 12}px`;
  tip.style.top = `${event.pageY + 12}px`;
  tip.style.display = "block";
}
function hideTooltip() { tip.style.display = "none"; }
for (const g of document.querySelectorAll("g.node")) {
  const idx = Number(g.dataset.idx);
  g.querySelector("title")?.remove();  // the tooltip replaces the SVG title
  g.addEventListener("mousemove", (event) => showTooltip(event, idx));
  g.addEventListener("mouseleave", hideTooltip);
}
"""


def _nodes_json(nodes: Sequence[LineageNode]) -> str:
    """The nodes' data as JSON safe inside a ``<script>`` element (``<`` escaped)."""
    data = [
        {
            "idx": n.idx,
            "score": n.score,
            "parents": list(n.parents),
            "role": n.role,
            "components": dict(n.texts),
        }
        for n in nodes
    ]
    return json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")


def candidate_tree_html_from_data(
    candidates: Sequence[Mapping[str, str]],
    parents: Sequence[Sequence[int | None]],
    val_scores: Sequence[float],
    pareto_front_programs: Mapping[Any, set[int]] | Sequence[int],
    *,
    best_idx: int | None = None,
    title: str = "gepetto: candidate lineage",
) -> str:
    """The lineage tree as a self-contained HTML page: an inline SVG drawing (texts in each
    node's tooltip), the DOT text, the nodes' data as JSON and a table of every candidate's
    texts; nothing is loaded from the network."""
    nodes = lineage_info(candidates, parents, val_scores, pareto_front_programs, best_idx=best_idx)
    rows = []
    roles = {"best": "Best", "front": "Pareto front", "": ""}
    for node in nodes:
        texts = "".join(
            f"<div><b>{html.escape(name)}</b><pre>{html.escape(text)}</pre></div>"
            for name, text in node.texts.items()
        )
        rows.append(
            f'<tr id="candidate-{node.idx}"><td>{node.idx}</td>'
            f"<td>{', '.join(map(str, node.parents)) or 'seed'}</td>"
            f"<td>{node.score:.4f}</td><td>{roles[node.role]}</td><td>{texts}</td></tr>"
        )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;margin:1.5em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
            "vertical-align:top}pre{white-space:pre-wrap;margin:0 0 .5em;max-width:70em}"
            ".node:hover rect{stroke-width:3}#tooltip{display:none;position:absolute;"
            "background:#fff;border:1px solid #333;padding:6px;white-space:pre-wrap;"
            "max-width:40em;pointer-events:none}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            "<p>Cyan: the best candidate; orange: on the Pareto front; an arrow goes from a "
            "parent to its child. Hover a node for its texts.</p>",
            _svg(nodes),
            "<table><thead><tr><th>id</th><th>parents</th><th>val score</th><th>role</th>"
            "<th>texts</th></tr></thead><tbody>",
            *rows,
            "</tbody></table>",
            '<details><summary>Graphviz DOT</summary><pre id="lineage-dot">'
            + html.escape(_dot(nodes), quote=False)
            + "</pre></details>",
            '<div id="tooltip" role="tooltip"></div>',
            f'<script type="application/json" id="lineage-data">{_nodes_json(nodes)}</script>',
            f"<script>{_TOOLTIP_SCRIPT}</script>",
            "</body></html>",
        ]
    )
