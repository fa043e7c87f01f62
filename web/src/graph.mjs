// The graph view: an op histogram (HTML bars) and the layered graph as SVG.
// The layout (layer and position of each node) comes from Python (webinfer_demo.layout_graph);
// this file only turns it into pixels, with no external library.

const SVG_NS = "http://www.w3.org/2000/svg";
const NODE_W = 118;
const NODE_H = 26;
const GAP_X = 22;
const GAP_Y = 22;

/** Op families, for colours; anything else is "other". */
const FAMILIES = {
  conv: ["Conv", "ConvTranspose", "FusedConv", "QLinearConv", "ConvInteger"],
  matmul: ["MatMul", "Gemm", "FusedMatMul", "MatMulInteger", "QLinearMatMul", "Einsum", "Attention"],
  activation: ["Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Gelu", "FastGelu", "Clip", "LeakyRelu",
    "Softmax", "LogSoftmax", "Erf", "Elu", "Selu", "Mish", "Softplus"],
  norm: ["BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "SkipLayerNormalization", "RMSNormalization", "SimplifiedLayerNormalization"],
  pool: ["GlobalAveragePool", "AveragePool", "MaxPool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax"],
  shape: ["Reshape", "Transpose", "Concat", "Slice", "Gather", "Unsqueeze", "Squeeze", "Shape", "Expand",
    "Resize", "Split", "Flatten", "Pad", "Cast", "Where", "ConstantOfShape", "Range"],
};
const FAMILY_OF = new Map(Object.entries(FAMILIES).flatMap(([f, ops]) => ops.map((op) => [op, f])));

export function family(op) {
  return FAMILY_OF.get(op) ?? "other";
}

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

/**
 * Render the op histogram into `container`.
 * @param {HTMLElement} container
 * @param {Record<string, number>} histogram op -> count, most common first
 */
export function renderHistogram(container, histogram) {
  container.replaceChildren();
  const entries = Object.entries(histogram);
  const max = Math.max(1, ...entries.map(([, n]) => n));
  for (const [op, n] of entries) {
    const row = document.createElement("div");
    row.className = "hist-row";
    const name = document.createElement("span");
    name.className = "hist-op";
    name.textContent = op;
    const bar = document.createElement("span");
    bar.className = `hist-bar fam-${family(op.split(".").pop())}`;
    bar.style.width = `${(100 * n) / max}%`;
    const count = document.createElement("span");
    count.className = "hist-n";
    count.textContent = String(n);
    const track = document.createElement("span");
    track.className = "hist-track";
    track.appendChild(bar);
    row.append(name, track, count);
    container.appendChild(row);
  }
}

/**
 * Render a layered graph layout as SVG into `container`.
 * @param {HTMLElement} container
 * @param {{nodes: {op: string, name: string, layer: number, pos: number, device: string, outputs: string[],
 *          reads_input: boolean}[], edges: number[][], layers: number, inputs: string[]} | null} layout
 * @param {number} zoom scale factor (1 = 100%)
 * @returns {SVGSVGElement | null}
 */
export function renderGraph(container, layout, zoom = 1) {
  container.replaceChildren();
  if (!layout) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "This graph is too large to draw usefully; see the op histogram.";
    container.appendChild(p);
    return null;
  }
  const minPos = Math.min(0, ...layout.nodes.map((n) => n.pos));
  const maxPos = Math.max(0, ...layout.nodes.map((n) => n.pos));
  const colW = NODE_W + GAP_X;
  const rowH = NODE_H + GAP_Y;
  const width = (maxPos - minPos + 1) * colW + GAP_X;
  const top = NODE_H + GAP_Y; // room for the inputs row
  const height = top + layout.layers * rowH + GAP_Y;
  const cx = (n) => GAP_X / 2 + (n.pos - minPos) * colW + NODE_W / 2;
  const cy = (n) => top + n.layer * rowH + NODE_H / 2;

  const svg = el("svg", {
    width: Math.ceil(width * zoom), height: Math.ceil(height * zoom), viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": `graph with ${layout.nodes.length} nodes`, class: "graph-svg",
  });
  const edges = el("g", { class: "edges" }, svg);
  const nodes = el("g", { class: "nodes" }, svg);

  const inputsLabel = el("text", { x: width / 2, y: NODE_H / 2 + 6, class: "graph-inputs", "text-anchor": "middle" }, svg);
  inputsLabel.textContent = `inputs: ${layout.inputs.join(", ")}`;
  for (const n of layout.nodes) {
    if (n.reads_input) {
      el("path", { d: `M${width / 2},${NODE_H / 2 + 12} L${cx(n)},${cy(n) - NODE_H / 2}`, class: "edge input-edge" }, edges);
    }
  }
  for (const [a, b] of layout.edges) {
    const s = layout.nodes[a];
    const t = layout.nodes[b];
    const x1 = cx(s);
    const y1 = cy(s) + NODE_H / 2;
    const x2 = cx(t);
    const y2 = cy(t) - NODE_H / 2;
    const bend = Math.min(60, (y2 - y1) / 2);
    el("path", { d: `M${x1},${y1} C${x1},${y1 + bend} ${x2},${y2 - bend} ${x2},${y2}`, class: "edge" }, edges);
  }
  for (const n of layout.nodes) {
    const g = el("g", { class: `node fam-${family(n.op)} dev-${n.device}`,
      transform: `translate(${cx(n) - NODE_W / 2},${cy(n) - NODE_H / 2})` }, nodes);
    el("rect", { width: NODE_W, height: NODE_H, rx: 5 }, g);
    el("rect", { width: 5, height: NODE_H, rx: 2, class: "dev-mark" }, g);
    const label = el("text", { x: NODE_W / 2 + 2, y: NODE_H / 2 + 4, "text-anchor": "middle" }, g);
    label.textContent = n.op.length > 17 ? `${n.op.slice(0, 16)}…` : n.op;
    const title = el("title", {}, g);
    title.textContent = `${n.op}  ${n.name}\non ${n.device}\n→ ${n.outputs.join(", ")}`;
  }
  container.appendChild(svg);
  container.scrollLeft = (container.scrollWidth - container.clientWidth) / 2;  // the inputs are at the top centre
  return svg;
}
