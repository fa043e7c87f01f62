#!/usr/bin/env node
// The Node.js rows of benchmarks/bench_browser.py (--node): webinfer (the bundle's Pyodide + wheel, the same
// Python timing code as the page: py_bench.mjs) or onnxruntime-web's wasm backend, on one model, in this
// process.
//
//   node benchmarks/browser/bench_node.mjs ARGS.json
//
// ARGS.json: {runtime: "webinfer" | "ort", dist, ortDir, modelPath, feeds: [{name, dtype, shape, b64}],
//             runs, warmup, threads (ort; null: its default)}
// Prints one JSON line with bench.mjs's fields: init_ms, load_ms, first_ms, times_ms, output (base64 float32).

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

import { PY_BENCH } from "./py_bench.mjs";

const TYPED = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array };
const args = JSON.parse(readFileSync(process.argv[2], "utf8"));

function raw(f) {
  const buf = Buffer.from(f.b64, "base64");
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

function toBase64(view) {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength).toString("base64");
}

async function runWebinfer({ dist, modelPath, feeds, runs, warmup }) {
  const t0 = performance.now();
  const { callPython, loadWebinfer } = await import(pathToFileURL(join(resolve(dist), "webinfer.mjs")).href);
  const pyodide = await loadWebinfer({ stdout: (l) => console.error(l), stderr: (l) => console.error(l) });
  const gemm = pyodide.runPython("from webinfer import gemm\ngemm.describe()");
  const initMs = performance.now() - t0;
  const fn = pyodide.runPython(PY_BENCH);
  const r = (await callPython(pyodide, fn, {
    model: new Uint8Array(readFileSync(modelPath)),
    feeds: feeds.map((f) => ({ name: f.name, dtype: f.dtype, shape: f.shape, data: raw(f) })),
    runs,
    warmup,
    providers: ["cpu"],
  }));
  return { init_ms: initMs, load_ms: r.load_ms, first_ms: r.first_ms, times_ms: r.times_ms, providers: r.providers,
    nodes_gpu: r.nodes_gpu, nodes_total: r.nodes_total, dispatches: r.dispatches ?? null, output: toBase64(r.output), gemm };
}

async function runOrt({ ortDir, modelPath, feeds, runs, warmup, threads }) {
  const t0 = performance.now();
  // The ES-module build picks its default thread count with require("node:os"), which an ES module lacks.
  globalThis.require ??= createRequire(import.meta.url);
  const ort = await import(pathToFileURL(join(resolve(ortDir), "ort.wasm.min.mjs")).href);
  ort.env.wasm.wasmPaths = pathToFileURL(resolve(ortDir) + "/").href;
  if (threads != null) ort.env.wasm.numThreads = threads;
  const initMs = performance.now() - t0;
  const t1 = performance.now();
  const session = await ort.InferenceSession.create(new Uint8Array(readFileSync(modelPath)),
    { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  const loadMs = performance.now() - t1;
  const inputs = Object.fromEntries(feeds.map((f) => {
    const bytes = raw(f).slice();
    return [f.name, new ort.Tensor(f.dtype, new TYPED[f.dtype](bytes.buffer), f.shape)];
  }));
  const t2 = performance.now();
  const first = await session.run(inputs);
  const firstMs = performance.now() - t2;
  const output = Float32Array.from(await first[session.outputNames[0]].getData());
  for (let i = 0; i < warmup; i++) await session.run(inputs);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await session.run(inputs);
    times.push(performance.now() - t);
  }
  await session.release();
  return { init_ms: initMs, load_ms: loadMs, first_ms: firstMs, times_ms: times, providers: ["wasm"],
    threads: ort.env.wasm.numThreads, output: toBase64(output) };
}

const result = await (args.runtime === "ort" ? runOrt(args) : runWebinfer(args));
// Exit once the line is written (stdout to a pipe is asynchronous); Pyodide keeps no reason to stay alive.
process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
