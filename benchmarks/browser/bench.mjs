// The in-page half of benchmarks/bench_browser.py: time one runtime on one model, report numbers.
// Served at /bench/ next to the webinfer bundle (/) and onnxruntime-web's files (/ort/).
// Inputs arrive from Python (base64 of the raw little-endian data), so both runtimes and the native
// reference see identical bytes; the first output goes back the same way for the accuracy check.

import { callPython, loadWebinfer } from "/webinfer.mjs";
import { PY_BENCH } from "./py_bench.mjs";

const TYPED = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array };

function fromBase64(b64) {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function toBase64(view) {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function typedFeed(f) {
  const raw = fromBase64(f.b64);
  return new TYPED[f.dtype](raw.buffer, raw.byteOffset, raw.byteLength / TYPED[f.dtype].BYTES_PER_ELEMENT);
}

async function fetchBytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** The WebGPU adapter, if any, within `timeoutMs` (some drivers never answer). */
export async function adapterInfo(timeoutMs = 4000) {
  if (!navigator.gpu) return null;
  const adapter = await Promise.race([
    navigator.gpu.requestAdapter(),
    new Promise((resolve) => setTimeout(() => resolve(null), timeoutMs)),
  ]);
  if (!adapter) return null;
  const info = adapter.info ?? {};
  return [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") +
    (info.isFallbackAdapter ? " (fallback)" : "");
}


/**
 * webinfer in Pyodide on this page's main thread. With webgpu, webinfer's device is opened first (behind
 * a timeout, as the demo does); init_ms counts that with the runtime's load.
 */
export async function runWebinfer({ modelUrl, feeds, runs, warmup, providers, wasmVariants }) {
  const t0 = performance.now();
  const pyodide = await loadWebinfer();
  // wasmVariants (e.g. [] to switch the GEMM kernels off) re-initialises them; null keeps the loader's choice.
  if (wasmVariants) await pyodide.runPythonAsync(`import webinfer\nawait webinfer.init_wasm(tuple(${JSON.stringify(wasmVariants)}))`);
  const gemm = pyodide.runPython("from webinfer import gemm\ngemm.describe()");
  const initMs = performance.now() - t0;
  const model = await fetchBytes(modelUrl);
  const fn = pyodide.runPython(PY_BENCH);
  const r = await callPython(pyodide, fn, {
    model,
    feeds: feeds.map((f) => ({ name: f.name, dtype: f.dtype, shape: f.shape, data: fromBase64(f.b64) })),
    runs,
    warmup,
    providers,
  });
  return { init_ms: initMs + r.device_ms, load_ms: r.load_ms, first_ms: r.first_ms, times_ms: r.times_ms,
    providers: r.providers, nodes_gpu: r.nodes_gpu, nodes_total: r.nodes_total, dispatches: r.dispatches,
    output: toBase64(r.output), gemm };
}

/**
 * onnxruntime-web with one execution provider; `threads` null keeps its default thread count (the reply's
 * `threads` is what it used: it needs cross-origin isolation for more than one).
 */
export async function runOrt({ modelUrl, feeds, runs, warmup, ep, threads }) {
  const t0 = performance.now();
  const ort = await import("/ort/ort.all.min.mjs");
  ort.env.wasm.wasmPaths = "/ort/";
  if (threads != null) ort.env.wasm.numThreads = threads;
  const initMs = performance.now() - t0;
  const model = await fetchBytes(modelUrl);
  const t1 = performance.now();
  const session = await ort.InferenceSession.create(model, { executionProviders: [ep], graphOptimizationLevel: "all" });
  const loadMs = performance.now() - t1;
  const inputs = Object.fromEntries(feeds.map((f) => [f.name, new ort.Tensor(f.dtype, typedFeed(f), f.shape)]));
  const t2 = performance.now();
  const first = await session.run(inputs);
  const firstMs = performance.now() - t2;
  const out0 = first[session.outputNames[0]];
  const output = Float32Array.from(await out0.getData());
  for (let i = 0; i < warmup; i++) await session.run(inputs);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await session.run(inputs);
    times.push(performance.now() - t);
  }
  await session.release();
  return { init_ms: initMs, load_ms: loadMs, first_ms: firstMs, times_ms: times, providers: [ep],
    threads: ort.env.wasm.numThreads, isolated: self.crossOriginIsolated, output: toBase64(output) };
}
