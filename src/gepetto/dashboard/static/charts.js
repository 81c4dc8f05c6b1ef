/* gepetto dashboard: small SVG and canvas charts, no library. */
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, parent) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  if (parent) parent.appendChild(el);
  return el;
}

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) { hi = lo + 1; }
  const span = hi - lo;
  const step0 = Math.pow(10, Math.floor(Math.log10(span / count)));
  const err = (count * step0) / span;
  const step = step0 * (err <= 0.15 ? 10 : err <= 0.35 ? 5 : err <= 0.75 ? 2 : 1);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

function formatTick(value, kind) {
  if (kind === "time") {
    if (value >= 3600) return (value / 3600).toFixed(1) + "h";
    if (value >= 60) return (value / 60).toFixed(value >= 600 ? 0 : 1) + "m";
    if (value > 0 && value < 1) return Math.round(value * 1000) + "ms";
    return value.toFixed(value >= 10 ? 0 : 1) + "s";
  }
  if (kind === "cost") return "$" + (value >= 1 ? value.toFixed(2) : value.toPrecision(2));
  if (Math.abs(value) >= 1000) return (value / 1000).toFixed(value >= 10000 ? 0 : 1) + "k";
  return String(+value.toPrecision(4));
}

/**
 * A line chart: series = [{name, color, points: [[x, y], ...], step: bool}].
 * Options: xLabel, xKind ("calls" | "time" | "cost"), yLabel, width, height, id.
 */
function lineChart(series, options) {
  const width = options.width || 460, height = options.height || 240;
  const m = { left: 46, right: 12, top: 10, bottom: 34 };
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
  if (options.id) svg.id = options.id;
  const all = series.flatMap((s) => s.points);
  svg.dataset.points = String(all.length);
  if (all.length === 0) {
    svgEl("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, svg).textContent =
      options.empty || "no data yet";
    return svg;
  }
  let xLo = Math.min(...all.map((p) => p[0])), xHi = Math.max(...all.map((p) => p[0]));
  let yLo = Math.min(...all.map((p) => p[1])), yHi = Math.max(...all.map((p) => p[1]));
  if (options.yZero !== false) yLo = Math.min(0, yLo);
  if (yHi - yLo < 1e-9) yHi = yLo + 1;
  if (xHi - xLo < 1e-12) xHi = xLo + 1;
  const pw = width - m.left - m.right, ph = height - m.top - m.bottom;
  const sx = (x) => m.left + ((x - xLo) / (xHi - xLo)) * pw;
  const sy = (y) => m.top + ph - ((y - yLo) / (yHi - yLo)) * ph;
  const grid = svgEl("g", { class: "grid" }, svg);
  const axis = svgEl("g", { class: "axis" }, svg);
  for (const t of niceTicks(yLo, yHi, 5)) {
    svgEl("line", { x1: m.left, x2: width - m.right, y1: sy(t), y2: sy(t) }, grid);
    svgEl("text", { x: m.left - 4, y: sy(t) + 4, "text-anchor": "end" }, axis).textContent = formatTick(t);
  }
  for (const t of niceTicks(xLo, xHi, 5)) {
    svgEl("line", { x1: sx(t), x2: sx(t), y1: m.top + ph, y2: m.top + ph + 4 }, axis);
    svgEl("text", { x: sx(t), y: m.top + ph + 16, "text-anchor": "middle" }, axis).textContent =
      formatTick(t, options.xKind);
  }
  svgEl("line", { x1: m.left, x2: width - m.right, y1: m.top + ph, y2: m.top + ph }, axis);
  svgEl("line", { x1: m.left, x2: m.left, y1: m.top, y2: m.top + ph }, axis);
  svgEl("text", { x: m.left + pw / 2, y: height - 4, "text-anchor": "middle" }, axis).textContent =
    options.xLabel || "";
  for (const s of series) {
    if (s.points.length === 0) continue;
    let d = "";
    s.points.forEach(([x, y], i) => {
      if (i === 0) d += `M${sx(x).toFixed(1)},${sy(y).toFixed(1)}`;
      else if (s.step) d += `H${sx(x).toFixed(1)}V${sy(y).toFixed(1)}`;
      else d += `L${sx(x).toFixed(1)},${sy(y).toFixed(1)}`;
    });
    const path = svgEl("path", { d, fill: "none", stroke: s.color, "stroke-width": 2,
      class: "series series-" + s.name }, svg);
    if (s.dash) path.setAttribute("stroke-dasharray", s.dash);
    path.dataset.points = String(s.points.length);
    const [lx, ly] = s.points[s.points.length - 1];
    svgEl("circle", { cx: sx(lx), cy: sy(ly), r: 3, fill: s.color }, svg);
  }
  return svg;
}

function legend(series) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = s.dash ? `repeating-linear-gradient(90deg, ${s.color} 0 4px, transparent 4px 6px)` : s.color;
    item.append(swatch, s.label || s.name);
    box.append(item);
  }
  return box;
}

/** Colour of a score in [lo, hi] on a white-to-blue scale; null -> light grey. */
function heatColour(value, lo, hi) {
  if (value === null || value === undefined || Number.isNaN(value)) return [234, 238, 242];
  const t = hi > lo ? Math.max(0, Math.min(1, (value - lo) / (hi - lo))) : 1;
  const stops = [[247, 251, 255], [107, 174, 214], [8, 48, 107]];
  const k = t < 0.5 ? 0 : 1, u = t < 0.5 ? t * 2 : (t - 0.5) * 2;
  return stops[k].map((c, i) => Math.round(c + (stops[k + 1][i] - c) * u));
}

/**
 * Draw the score matrix on a canvas: rows = candidates, columns = examples, each cell
 * cell.w x cell.h pixels, after a gutter of row labels; marks[r] is "best", "front" or "".
 * Returns the gutter width (for mapping the mouse to a cell).
 */
function heatmap(canvas, rows, lo, hi, cell, labels, marks) {
  const nRows = rows.length, nCols = nRows ? rows[0].length : 0;
  const gutter = cell.h >= 9 ? 44 : 8;
  const image = new ImageData(Math.max(1, nCols), Math.max(1, nRows));
  for (let r = 0; r < nRows; r++) {
    const row = rows[r];
    for (let c = 0; c < nCols; c++) {
      const [red, green, blue] = heatColour(row[c], lo, hi);
      const at = (r * nCols + c) * 4;
      image.data[at] = red; image.data[at + 1] = green; image.data[at + 2] = blue; image.data[at + 3] = 255;
    }
  }
  const small = document.createElement("canvas");
  small.width = image.width; small.height = image.height;
  small.getContext("2d").putImageData(image, 0, 0);
  canvas.width = gutter + Math.max(1, nCols * cell.w); canvas.height = Math.max(1, nRows * cell.h);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, gutter, canvas.height);
  ctx.drawImage(small, gutter, 0, nCols * cell.w, nRows * cell.h);
  const markColour = { best: "#0969da", front: "#d4a72c" };
  for (let r = 0; r < nRows; r++) {
    if (markColour[marks[r]]) {
      ctx.fillStyle = markColour[marks[r]];
      ctx.fillRect(gutter - 6, r * cell.h, 4, cell.h);
    }
    if (gutter > 8) {
      ctx.fillStyle = "#57606a";
      ctx.font = `${Math.min(11, cell.h - 1)}px system-ui, sans-serif`;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      ctx.fillText("#" + labels[r], gutter - 9, r * cell.h + cell.h / 2);
    }
  }
  return gutter;
}

/**
 * The lineage tree: nodes = [{id, parents, score, role}], laid out in rows by generation.
 * onPick(id) is called when a node is clicked.
 */
function lineageTree(nodes, onPick) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const depth = new Map();
  for (const n of nodes) {  // nodes come in id order: parents before children
    const d = Math.max(-1, ...n.parents.filter((p) => depth.has(p)).map((p) => depth.get(p)));
    depth.set(n.id, d + 1);
  }
  const rows = [];
  for (const n of nodes) {
    const d = depth.get(n.id);
    (rows[d] = rows[d] || []).push(n);
  }
  const gapX = 34, gapY = 54, r = 12;
  const widest = Math.max(1, ...rows.map((row) => row.length));
  const width = Math.max(300, widest * gapX + 40), height = rows.length * gapY + 30;
  const pos = new Map();
  rows.forEach((row, d) => {
    // each row ordered by where its nodes' parents stand, so edges cross less
    const parentX = (n) => {
      const xs = n.parents.filter((p) => pos.has(p)).map((p) => pos.get(p)[0]);
      return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
    };
    row.sort((a, b) => parentX(a) - parentX(b) || a.id - b.id);
    const offset = (width - row.length * gapX) / 2 + gapX / 2;
    row.forEach((n, i) => pos.set(n.id, [offset + i * gapX, 24 + d * gapY]));
  });
  const svg = svgEl("svg", { class: "tree", width, height, viewBox: `0 0 ${width} ${height}` });
  svg.dataset.nodes = String(nodes.length);
  const edges = svgEl("g", {}, svg);
  for (const n of nodes) {
    const [x, y] = pos.get(n.id);
    for (const p of n.parents) {
      if (!pos.has(p)) continue;
      const [px, py] = pos.get(p);
      svgEl("path", { class: "edge", d: `M${px},${py + r} C${px},${py + gapY / 2} ${x},${y - gapY / 2} ${x},${y - r}` }, edges);
    }
  }
  const colours = { best: "#54aeff", front: "#f0b72f", "": "#d0d7de" };
  for (const n of nodes) {
    const [x, y] = pos.get(n.id);
    const g = svgEl("g", { class: "node", transform: `translate(${x},${y})` }, svg);
    g.dataset.id = String(n.id);
    const circle = svgEl("circle", { r, fill: colours[n.role || ""] || colours[""] }, g);
    svgEl("title", {}, circle).textContent =
      `candidate ${n.id}` + (n.score === null ? "" : ` · score ${n.score.toFixed(3)}`) +
      (n.parents.length ? ` · from ${n.parents.join(", ")}` : " · seed") + (n.role ? ` · ${n.role}` : "");
    svgEl("text", { "text-anchor": "middle", y: 3.5 }, g).textContent = String(n.id);
    circle.addEventListener("click", () => onPick(n.id));
  }
  if (!byId.size) svgEl("text", { x: 20, y: 20 }, svg).textContent = "no candidates yet";
  return svg;
}

window.charts = { lineChart, legend, heatmap, heatColour, lineageTree };
