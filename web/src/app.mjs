// The demo page: talks to the worker (worker.mjs), draws results. No Python runs on this thread.

import { FaceDemo } from "./face.mjs";
import { renderGraph, renderHistogram } from "./graph.mjs";

const $ = (id) => document.getElementById(id);
const DEMO_MODEL_URL = new URL("./models/ppocr_det.onnx", import.meta.url);
const SAMPLE_URL = new URL("./sample.png", import.meta.url);
const STAGE_ORDER = ["pyodide", "webinfer", "kernels", "webgpu", "model", "first-run"];

/**
 * Promise-based requests to the worker; progress messages go to `onProgress`. `early`: the worker index.html
 * started before this module loaded ({worker, early: its messages and errors so far}), or null.
 */
class WorkerClient {
  constructor(url, onProgress, onCrash, early = null) {
    this.pending = new Map();
    this.next = 1;
    this.worker = early?.worker ?? new Worker(url, { type: "module" });
    this.worker.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === "progress") {
        onProgress(msg);
        return;
      }
      const waiter = this.pending.get(msg.reqId);
      if (!waiter) return;
      this.pending.delete(msg.reqId);
      if (msg.ok) waiter.resolve(msg.result);
      else waiter.reject(Object.assign(new Error(msg.error.message), { detail: msg.error.detail }));
    };
    this.worker.onerror = (event) => {
      const err = new Error(`the worker failed: ${event.message || "it could not start (see the console)"}`);
      for (const waiter of this.pending.values()) waiter.reject(err);
      this.pending.clear();
      onCrash(err);
    };
    for (const event of early?.early ?? []) {
      if (event.type === "error") this.worker.onerror(event);
      else this.worker.onmessage(event);
    }
  }

  call(type, args = {}) {
    const reqId = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(reqId, { resolve, reject });
      this.worker.postMessage({ reqId, type, ...args });
    });
  }
}

const state = {
  providers: ["webgpu", "cpu"],
  versions: null,
  adapter: null,
  demoBytes: null,
  demo: null,
  imagePng: null,
  imageBitmap: null,
  lastDetection: null,
  user: null,
  userBytes: null,
  lastRun: null,
  downloads: [],
  graphZoom: 0.8,
  timings: {},
  /** How many detections, runs, model loads and errors so far: lets scripts and tests wait for the next one. */
  counters: { detections: 0, runs: 0, loads: 0, errors: 0 },
};

// ------------------------------------------------------------------ formatting
function fmtMs(ms) {
  if (ms == null) return "–";
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

function fmtNum(x) {
  if (x == null) return "–";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? x.toExponential(3) : x.toFixed(4);
}

function fmtBytes(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`;
}

function fmtShape(shape) {
  return shape == null ? "?" : `[${shape.join(", ")}]`;
}

// ------------------------------------------------------------------ status
function setProgress(stage, message, fraction) {
  const idx = STAGE_ORDER.indexOf(stage);
  for (const li of $("stages").children) {
    const i = STAGE_ORDER.indexOf(li.dataset.stage);
    li.className = i < idx ? "done" : i === idx ? "active" : "";
  }
  if (stage === "ready") for (const li of $("stages").children) li.className = "done";
  if (message) $("progress-text").textContent = message;
  if (fraction != null) $("progress-bar").style.width = `${Math.round(100 * Math.min(1, fraction))}%`;
}

function showError(title, err) {
  $("error-title").textContent = title;
  $("error-message").textContent = err?.message ?? String(err);
  $("error-detail").textContent = err?.detail ?? err?.stack ?? "";
  $("error").hidden = false;
  state.counters.errors += 1;
  console.error(title, err);
}

function clearError() {
  $("error").hidden = true;
}

function showNotice(text) {
  $("notice").textContent = text ?? "";
  $("notice").hidden = !text;
}

function updateBadge(summary) {
  const badge = $("provider-badge");
  if (!summary) return;
  const used = summary.providers.join(", ");
  const gpu = summary.providers.includes("webgpu");
  badge.textContent = gpu ? `webgpu: ${summary.nodes_gpu}/${summary.nodes_total} nodes on GPU`
    : `cpu (${state.versions?.gemm ?? "numpy"})`;
  badge.className = `badge ${gpu ? "gpu" : "cpu"}`;
  badge.title = `providers used: ${used}${state.adapter?.available ? `; adapter: ${adapterText()}` : ""}`;
}

/** The GPU work of a run, for a tooltip: dispatches and submits per run, the adapter. */
function gpuWorkText(gpu) {
  if (!gpu) return "no GPU work (the run was on the CPU)";
  return `${gpu.dispatches} GPU dispatches, ${gpu.submits} submit(s), ${gpu.readbacks} readback(s) per run on ` +
    gpu.adapter;
}

function adapterText() {
  const a = state.adapter;
  if (!a) return "–";
  if (!a.available) return `none (${a.problem})`;
  const name = [a.vendor, a.architecture, a.description].filter(Boolean).join(" ");
  return `${name || "unnamed"}${a.fallback ? " (software fallback)" : ""}`;
}

function renderRuns(container, times) {
  container.replaceChildren();
  const max = Math.max(...times);
  times.forEach((t, i) => {
    const bar = document.createElement("span");
    bar.style.height = `${Math.max(6, (100 * t) / max)}%`;
    bar.title = `run ${i + 1}: ${fmtMs(t)}`;
    container.appendChild(bar);
  });
  const label = document.createElement("em");
  label.textContent = `${times.length} run${times.length > 1 ? "s" : ""}`;
  container.appendChild(label);
}

// --------------------------------------------------------------- detection
function drawDetection() {
  const canvas = $("det-canvas");
  const ctx = canvas.getContext("2d");
  const bmp = state.imageBitmap;
  if (!bmp) return;
  canvas.width = bmp.width;
  canvas.height = bmp.height;
  ctx.drawImage(bmp, 0, 0);
  const det = state.lastDetection;
  if (!det) return;
  if ($("det-heatmap").checked && det.prob) {
    const img = ctx.getImageData(0, 0, det.width, det.height);
    for (let i = 0; i < det.prob.length; i++) {
      const p = det.prob[i];
      const a = Math.min(1, p) * 0.75;
      img.data[4 * i] = img.data[4 * i] * (1 - a) + 255 * a;
      img.data[4 * i + 1] = img.data[4 * i + 1] * (1 - a) + 40 * a;
      img.data[4 * i + 2] = img.data[4 * i + 2] * (1 - a) + 90 * a;
    }
    ctx.putImageData(img, 0, 0);
  }
  ctx.lineWidth = 2;
  ctx.font = "11px system-ui, sans-serif";
  for (const b of det.boxes) {
    ctx.strokeStyle = "rgba(16, 185, 129, 0.95)";
    ctx.fillStyle = "rgba(16, 185, 129, 0.12)";
    ctx.fillRect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0);
    ctx.strokeRect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0);
  }
}

/**
 * Detect text on the current image. Runs the page starts by itself (startup, a new image, other
 * providers) go once, so a result shows as soon as possible (a run takes seconds on a software GPU);
 * the Run button repeats as many times as the "runs" field says, for p50/p90.
 */
async function runDetection(reason, repeatsOverride = null) {
  if (!state.demo || !state.imagePng) return;
  const repeats = repeatsOverride ?? Math.max(1, Math.min(50, Number($("det-repeats").value) || 1));
  $("det-run").disabled = true;
  $("det-stats").dataset.state = "running";
  $("det-status").textContent = `${reason}: running ${repeats}×…`;
  try {
    const det = await state.worker.call("detect", { id: state.demo.id, png: state.imagePng.slice(0), repeats });
    state.lastDetection = det;
    state.counters.detections += 1;
    drawDetection();
    $("det-boxes").textContent = String(det.boxes.length);
    $("det-p50").textContent = fmtMs(det.latency.p50);
    $("det-p90").textContent = fmtMs(det.latency.p90);
    $("det-input").textContent = `x ${fmtShape(det.input_shape)}`;
    $("det-provider").textContent = det.providers.join(", ");
    $("det-gpu").textContent = `${state.demo.nodes_gpu} of ${state.demo.nodes_total}`;
    $("det-gpu").title = gpuWorkText(det.gpu);
    $("det-status").textContent = `done: ${det.boxes.length} text boxes`;
    renderRuns($("det-runs"), det.times_ms);
    if (state.timings.firstResultMs == null) {
      state.timings.firstResultMs = performance.now();
      $("det-first").textContent = fmtMs(state.timings.firstResultMs);
    }
    $("det-stats").dataset.state = "done";
  } catch (err) {
    $("det-stats").dataset.state = "error";
    $("det-status").textContent = "failed (see the message above)";
    showError("Text detection failed", err);
  } finally {
    $("det-run").disabled = false;
  }
}

async function setImage(pngBytes) {
  state.imagePng = pngBytes;
  state.imageBitmap = await createImageBitmap(new Blob([pngBytes], { type: "image/png" }));
  state.lastDetection = null;
  drawDetection();
}

/** Any image the browser can decode -> PNG bytes (the worker decodes PNG in Python). */
async function toPng(file) {
  const buf = new Uint8Array(await file.arrayBuffer());
  const isPng = buf.length > 8 && buf[0] === 0x89 && buf[1] === 0x50 && buf[2] === 0x4e && buf[3] === 0x47;
  if (isPng) return buf;
  const bmp = await createImageBitmap(file);
  const canvas = new OffscreenCanvas(bmp.width, bmp.height);
  canvas.getContext("2d").drawImage(bmp, 0, 0);
  return new Uint8Array(await (await canvas.convertToBlob({ type: "image/png" })).arrayBuffer());
}

// --------------------------------------------------------------- models
async function loadSession(bytes, name, describe = true) {
  return state.worker.call("load", { bytes: bytes.slice(0), name, providers: state.providers, describe });
}

function afterLoad(summary) {
  state.counters.loads += 1;
  showNotice(summary.notice);
  updateBadge(summary);
  refreshGraphChoices();
}

async function fetchWithProgress(url, onProgress) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url.pathname ?? url} answered ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get("content-length")) || 0;
  if (!res.body || !total) return new Uint8Array(await res.arrayBuffer());
  const reader = res.body.getReader();
  const out = new Uint8Array(total);
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    out.set(value, got);
    got += value.length;
    onProgress(got / total);
  }
  return out.subarray(0, got);
}

function renderUserModel() {
  const s = state.user;
  $("model-panel").hidden = !s;
  if (!s) return;
  $("model-name").textContent = s.name;
  const fl = s.info.flops != null ? `${(s.info.flops / 1e9).toFixed(2)} GFLOPs, ` : "";
  $("model-meta").textContent =
    `${fmtBytes(s.bytes)}, ${s.info.nodes} nodes (${s.nodes_total} after optimization), ` +
    `${s.info.parameters.toLocaleString()} parameters, ${fl}loaded in ${fmtMs(s.load_ms)}`;
  const body = $("model-inputs").querySelector("tbody");
  body.replaceChildren();
  for (const inp of s.inputs) {
    const tr = document.createElement("tr");
    const shapeInput = document.createElement("input");
    shapeInput.type = "text";
    shapeInput.className = "shape";
    shapeInput.dataset.input = inp.name;
    shapeInput.value = (inp.default_shape ?? []).join(", ");
    shapeInput.title = `declared: ${fmtShape(inp.shape)}`;
    const npy = document.createElement("input");
    npy.type = "file";
    npy.accept = ".npy";
    npy.dataset.input = inp.name;
    npy.className = "npy";
    const cells = [inp.name, inp.type, shapeInput, npy];
    for (const c of cells) {
      const td = document.createElement("td");
      if (typeof c === "string") td.textContent = c;
      else td.appendChild(c);
      tr.appendChild(td);
    }
    const declared = document.createElement("div");
    declared.className = "muted small";
    declared.textContent = `declared ${fmtShape(inp.shape)}; random data unless a .npy is chosen`;
    tr.children[2].appendChild(declared);
    body.appendChild(tr);
  }
  $("model-result").hidden = true;
}

async function loadUserModel(file) {
  const name = file.name || "model.onnx";
  $("dropzone").classList.add("busy");
  $("model-run").disabled = true;
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const summary = await loadSession(bytes, name);
    if (state.user) state.worker.call("release", { id: state.user.id }).catch(() => {});
    state.user = summary;
    state.userBytes = bytes;
    clearError();
    renderUserModel();
    afterLoad(summary);
    $("graph-model").value = String(summary.id);
    showGraph();
    await runUserModel();
  } catch (err) {
    showError(`Could not load ${name}`, err);
  } finally {
    $("dropzone").classList.remove("busy");
    $("model-run").disabled = false;
  }
}

async function runUserModel() {
  const s = state.user;
  if (!s) return;
  const shapes = {};
  const npy = {};
  try {
    for (const input of document.querySelectorAll("#model-inputs input.shape")) {
      const dims = input.value.split(/[\s,x×]+/).filter(Boolean).map(Number);
      if (dims.some((d) => !Number.isInteger(d) || d < 0)) {
        throw new Error(`shape for '${input.dataset.input}' must be whole numbers like "1, 3, 224, 224"`);
      }
      shapes[input.dataset.input] = dims;
    }
    for (const input of document.querySelectorAll("#model-inputs input.npy")) {
      if (input.files?.length) npy[input.dataset.input] = new Uint8Array(await input.files[0].arrayBuffer());
    }
  } catch (err) {
    showError("Bad input", err);
    return;
  }
  const repeats = Math.max(1, Math.min(100, Number($("model-repeats").value) || 1));
  $("model-run").disabled = true;
  $("model-run").textContent = `Running ${repeats}×…`;
  try {
    const r = await state.worker.call("run", { id: s.id, shapes, npy, repeats });
    state.lastRun = r;
    state.counters.runs += 1;
    $("model-result").hidden = false;
    $("model-p50").textContent = fmtMs(r.latency.p50);
    $("model-p90").textContent = fmtMs(r.latency.p90);
    $("model-provider").textContent = r.providers.join(", ");
    $("model-gpu").textContent = `${s.nodes_gpu} of ${s.nodes_total}`;
    $("model-gpu").title = gpuWorkText(r.gpu);
    renderRuns($("model-runs"), r.times_ms);
    const body = $("model-outputs").querySelector("tbody");
    body.replaceChildren();
    for (const url of state.downloads) URL.revokeObjectURL(url);
    state.downloads = [];
    for (const o of r.outputs) {
      const tr = document.createElement("tr");
      const head = o.head ? o.head.map(fmtNum).join(", ") + (o.shape && o.shape.reduce((a, b) => a * b, 1) > 8 ? ", …" : "") : o.text;
      for (const v of [o.name, o.dtype, fmtShape(o.shape), fmtNum(o.min), fmtNum(o.max), fmtNum(o.mean), head]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.appendChild(td);
      }
      const td = document.createElement("td");
      const file = r.npy?.[o.name];
      if (file) {
        const a = document.createElement("a");
        a.href = URL.createObjectURL(new Blob([file], { type: "application/octet-stream" }));
        a.download = `${o.name.replace(/[^\w.-]+/g, "_")}.npy`;
        a.textContent = ".npy";
        a.title = `download ${o.name} as a numpy file`;
        state.downloads.push(a.href);
        td.appendChild(a);
      }
      tr.appendChild(td);
      body.appendChild(tr);
    }
  } catch (err) {
    showError(`Running ${s.name} failed`, err);
  } finally {
    $("model-run").disabled = false;
    $("model-run").textContent = "Run";
  }
}

// ------------------------------------------------------------------ graph
function refreshGraphChoices() {
  const select = $("graph-model");
  const current = select.value;
  select.replaceChildren();
  for (const s of [state.demo, state.faceDemo?.session, state.user].filter(Boolean)) {
    const opt = document.createElement("option");
    opt.value = String(s.id);
    opt.textContent = s === state.demo ? "PP-OCRv4 det (demo)" : s.name;
    select.appendChild(opt);
  }
  if ([...select.options].some((o) => o.value === current)) select.value = current;
}

function selectedSummary() {
  const id = Number($("graph-model").value);
  return [state.demo, state.faceDemo?.session, state.user].find((s) => s && s.id === id) ?? state.demo;
}

function showGraph() {
  const s = selectedSummary();
  if (!s?.info) return;  // the demo model's info comes after its first result (describe)
  $("graph-title").textContent = `of ${s.name}`;
  const gpu = s.nodes_gpu ? `, ${s.nodes_gpu} on the GPU` : "";
  $("graph-summary").textContent =
    `${s.info.nodes} nodes in the file, ${s.nodes_total} after folding and fusion${gpu}; opsets ` +
    Object.entries(s.info.opsets).map(([d, v]) => `${d} ${v}`).join(", ");
  renderHistogram($("histogram"), s.info.op_histogram);
  renderGraph($("graph"), s.graph, state.graphZoom);
}

// ------------------------------------------------------------------ start
async function reloadForProviders() {
  state.providers = $("providers").value.split(",");
  $("providers").disabled = true;
  try {
    if (state.demoBytes) {
      const old = state.demo;
      state.demo = await loadSession(state.demoBytes, "ppocr_det.onnx");
      if (old) state.worker.call("release", { id: old.id }).catch(() => {});
      afterLoad(state.demo);
      showGraph();
      await runDetection("providers changed", 1);
    }
    if (state.userBytes) {
      const old = state.user;
      state.user = await loadSession(state.userBytes, old.name);
      state.worker.call("release", { id: old.id }).catch(() => {});
      renderUserModel();
      refreshGraphChoices();
    }
    await state.faceDemo?.providersChanged();
  } catch (err) {
    showError("Reloading the models failed", err);
  } finally {
    $("providers").disabled = false;
  }
}

function wireControls() {
  $("error").querySelector(".close").addEventListener("click", clearError);
  $("det-run").addEventListener("click", () => runDetection("run"));
  $("det-heatmap").addEventListener("change", drawDetection);
  $("det-image").addEventListener("change", async (e) => {
    const file = e.target.files?.[0];
    if (!file) return;
    try {
      await setImage(await toPng(file));
      await runDetection(file.name, 1);
    } catch (err) {
      showError(`Could not use ${file.name}`, err);
    }
  });
  $("model-file").addEventListener("change", (e) => {
    const file = e.target.files?.[0];
    e.target.value = "";
    if (file) loadUserModel(file);
  });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer?.files?.[0];
    if (file) loadUserModel(file);
  });
  $("model-run").addEventListener("click", runUserModel);
  $("server-models").addEventListener("change", (e) => {
    const url = e.target.value;
    e.target.value = "";
    if (url) loadServerModel(url);
  });
  $("graph-model").addEventListener("change", showGraph);
  $("zoom-in").addEventListener("click", () => {
    state.graphZoom = Math.min(2, state.graphZoom * 1.25);
    showGraph();
  });
  $("zoom-out").addEventListener("click", () => {
    state.graphZoom = Math.max(0.2, state.graphZoom / 1.25);
    showGraph();
  });
  $("providers").addEventListener("change", reloadForProviders);
}

/** Models the server offers (`webinfer serve --models DIR` lists them at /api/models); absent on static hosting. */
async function listServerModels() {
  try {
    const res = await fetch(new URL("./api/models", import.meta.url));
    if (!res.ok) return;
    const models = await res.json();
    const select = $("server-models");
    for (const m of models) {
      const opt = document.createElement("option");
      opt.value = m.url;
      opt.textContent = `${m.name} (${fmtBytes(m.bytes)})`;
      select.appendChild(opt);
    }
    $("server-models-wrap").hidden = models.length === 0;
  } catch (err) {
    console.info("no model list on this server", err);
  }
}

async function loadServerModel(url) {
  const name = decodeURIComponent(url.split("/").pop());
  try {
    const bytes = await fetchWithProgress(new URL(url, import.meta.url), () => {});
    await loadUserModel(new File([bytes], name));
  } catch (err) {
    showError(`Could not fetch ${name}`, err);
  }
}

function footer() {
  const parts = [];
  if (state.versions) {
    const v = state.versions;
    parts.push(`webinfer ${v.webinfer}`, `Python ${v.python}`, `Pyodide ${v.pyodide}`, `numpy ${v.numpy}`, `CPU GEMM ${v.gemm}`);
  }
  parts.push(`WebGPU adapter: ${adapterText()}`);
  if (state.timings.readyMs != null) parts.push(`runtime ready after ${fmtMs(state.timings.readyMs)}`);
  $("footer").textContent = parts.join(" · ");
}

async function start() {
  wireControls();
  listServerModels();
  // ?providers=cpu starts on the CPU path (the browser's WebGPU adapter is not asked for): what a browser
  // without WebGPU gets, and what the cold-start benchmark measures.
  const asked = new URLSearchParams(location.search).get("providers");
  if (asked && [...$("providers").options].some((o) => o.value === asked)) {
    $("providers").value = asked;
    state.providers = asked.split(",");
  }
  const webgpu = state.providers.includes("webgpu");
  const stageBase = { pyodide: 0, webinfer: 0.45, kernels: 0.5, ready: 0.52 };
  setProgress("pyodide", "Loading the Python runtime (Pyodide)…", 0.02);
  // Python is loaded ("ready"): the worker opens webinfer's WebGPU device next, before any session.
  state.worker = new WorkerClient(
    new URL("./worker.mjs", import.meta.url),
    (p) => p.stage === "ready"
      ? setProgress("webgpu", "Opening the WebGPU device…", stageBase.ready)
      : setProgress(p.stage, p.message, stageBase[p.stage]),
    (err) => {
      document.body.dataset.state = "failed";
      showError("webinfer could not start", err);
    },
    window.webinferEarlyWorker ?? null,
  );
  const modelBytes = fetchWithProgress(DEMO_MODEL_URL, () => {});
  const sample = fetchWithProgress(SAMPLE_URL, () => {});
  try {
    const workerStart = performance.now();
    const init = await state.worker.call("init", { webgpu });
    state.versions = init.versions;
    state.adapter = init.adapter;
    state.timings.readyMs = performance.now();
    // The cold-start breakdown (benchmarks/bench_cold_start.py): the worker's stages, then the page's.
    // page: this module running; worker: the worker (started by index.html) beginning to load Pyodide.
    const stages = { page: workerStart, ...init.timings };
    stages.worker = init.startedAt - performance.timeOrigin;
    footer();
    setProgress("model", "Loading the PP-OCRv4 model into webinfer…", 0.6);
    let t = performance.now();
    state.demoBytes = await modelBytes;
    stages.modelFetchWait = performance.now() - t;
    t = performance.now();
    // The graph view's info and layout come after the first result (describe), not before it.
    state.demo = await loadSession(state.demoBytes, "ppocr_det.onnx", false);
    stages.modelLoad = performance.now() - t;
    afterLoad(state.demo);
    await setImage(await sample);
    setProgress("first-run", "Running text detection on the sample image…", 0.8);
    document.body.dataset.state = "running";
    t = performance.now();
    await runDetection("first run", 1);
    stages.firstRun = performance.now() - t;
    state.timings.stages = stages;
    Object.assign(state.demo, await state.worker.call("describe", { id: state.demo.id }));
    showGraph();
    state.faceDemo = new FaceDemo({ $, state, loadSession, afterLoad, showError, fmtMs, fmtShape, toPng });
    $("face-run").disabled = false;
    setProgress("ready", "Ready", 1);
    document.body.dataset.state = "ready";
    setTimeout(() => ($("loading").hidden = true), 600);
  } catch (err) {
    document.body.dataset.state = "failed";
    setProgress("first-run", "Startup failed", 1);
    showError("webinfer could not start", err);
  }
}

window.webinferDemo = { state, runDetection, loadUserModel, runUserModel };
start();
