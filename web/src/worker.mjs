// The demo's Web Worker: Pyodide, webinfer and the sessions live here, so the page never freezes.
//
// Protocol (page -> worker): {reqId, type, ...args}; replies {reqId, ok, result | error}; while
// loading, {type: "progress", ...} messages. Requests run one at a time, in order (Python is
// single-threaded and a run must not interleave with another).
//   init {webgpu}               -> {versions, adapter, loadMs, timings, startedAt} (webinfer's WebGPU device
//                                  is opened here unless webgpu is false; timings: ms per loading stage;
//                                  loading starts with the worker: startedAt, epoch ms)
//   load {bytes, name, providers, providerOptions?, describe?} -> model summary (interface, providers used,
//                                  placement, nodes on the GPU; with describe (default) also info and graph)
//   describe {id}               -> {info, graph} of a loaded model (what load with describe: false left out)
//   run {id, shapes, npy, repeats} -> outputs summary + latency
//   detect {id, png, repeats}   -> text boxes + latency + probability map (Float32Array)
//   face {id, png, repeats}     -> faces (boxes, keypoints) + latency (face_demo.py, imported on first use)
//   release {id}

import { callPython, describeError, loadWebinfer, versions } from "./webinfer.mjs";

/** How long webinfer waits for requestAdapter() (then requestDevice()): some drivers never answer. */
const ADAPTER_TIMEOUT_S = 4;
let pyodide = null;
let demo = null;
let adapter = null;
let queue = Promise.resolve();
let faceDemo = null;

/** face_demo.py, fetched and imported when the face panel is first used (the OCR demo's start never waits on it). */
async function faceModule() {
  if (!faceDemo) {
    const source = await (await fetch(new URL("./face_demo.py", import.meta.url))).text();
    pyodide.FS.writeFile("/home/pyodide/face_demo.py", source);
    faceDemo = pyodide.pyimport("face_demo");
  }
  return faceDemo;
}

// Pyodide, numpy and webinfer start loading as soon as this module runs, not when the page's init request
// comes (the page's own modules load meanwhile); so does the demo's Python module, imported right after.
const t0 = performance.now();
let timings = {};
const loading = loadWebinfer({
  onProgress: (p) => {
    if (p.timings) timings = p.timings;
    postMessage({ type: "progress", ...p });
  },
});
const demoSource = fetch(new URL("./webinfer_demo.py", import.meta.url)).then((r) => {
  if (!r.ok) throw new Error(`GET webinfer_demo.py answered ${r.status} ${r.statusText}`);
  return r.text();
});
// Their failures reach the page through init, which awaits them (not as unhandled rejections before it).
loading.catch(() => {});
demoSource.catch(() => {});

async function init({ webgpu = true }) {
  pyodide = await loading;
  let t = performance.now();
  pyodide.FS.writeFile("/home/pyodide/webinfer_demo.py", await demoSource);
  demo = pyodide.pyimport("webinfer_demo");
  timings.demo = performance.now() - t;
  // webinfer opens its WebGPU device (navigator.gpu, behind the timeout) once, before any session: a
  // session's constructor cannot await the adapter's promise. No adapter: sessions run on the CPU and the
  // page shows why. A page asking for the CPU alone skips it (the adapter may take seconds to answer).
  t = performance.now();
  adapter = webgpu
    ? await callPython(pyodide, demo.api_init_webgpu, { timeout_s: ADAPTER_TIMEOUT_S })
    : { available: false, problem: "not opened: the page started with ?providers=cpu (reload without it for WebGPU)" };
  timings.webgpu = performance.now() - t;
  return { versions: versions(pyodide), adapter, loadMs: performance.now() - t0, timings,
           startedAt: performance.timeOrigin + t0 };
}

const handlers = {
  init,
  load: (m) =>
    callPython(pyodide, demo.api_load, {
      bytes: new Uint8Array(m.bytes),
      name: m.name,
      providers: m.providers,
      adapter_problem: m.providers.includes("webgpu") && !adapter.available ? adapter.problem : null,
      provider_options: m.providerOptions ?? null,
      describe: m.describe ?? true,
    }),
  describe: (m) => callPython(pyodide, demo.api_describe, { id: m.id }),
  run: (m) => callPython(pyodide, demo.api_run, { id: m.id, shapes: m.shapes, npy: m.npy, repeats: m.repeats }),
  detect: (m) => callPython(pyodide, demo.api_detect, { id: m.id, png: new Uint8Array(m.png), repeats: m.repeats }),
  face: async (m) =>
    callPython(pyodide, (await faceModule()).api_face, { id: m.id, png: new Uint8Array(m.png), repeats: m.repeats }),
  release: (m) => callPython(pyodide, demo.api_release, { id: m.id }),
};

function transferables(result) {
  return result?.prob instanceof Float32Array ? [result.prob.buffer] : [];
}

self.onmessage = (event) => {
  const msg = event.data;
  queue = queue.then(async () => {
    const handler = handlers[msg.type];
    try {
      if (!handler) throw new Error(`unknown request ${msg.type}`);
      if (msg.type !== "init" && !demo) throw new Error("webinfer is not loaded yet");
      const result = await handler(msg);
      postMessage({ reqId: msg.reqId, ok: true, result }, transferables(result));
    } catch (err) {
      postMessage({ reqId: msg.reqId, ok: false, error: describeError(err) });
    }
  });
};
