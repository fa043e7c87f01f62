// webinfer in the browser (page or Web Worker) and in Node.js: Pyodide + numpy + the webinfer wheel.
//
//   import { loadWebinfer } from "./webinfer.mjs";
//   const pyodide = await loadWebinfer({ onProgress: (p) => console.log(p.stage, p.message) });
//   pyodide.runPython("import numpy, webinfer");
//
// Everything is loaded from the bundle built by build_wasm.py (./pyodide/ next to this file): no CDN,
// no network beyond the page's own origin. Pyodide checks each wheel against the sha256 in
// pyodide/pyodide-lock.json, which build_wasm.py fills in for the webinfer wheel.

import { loadPyodide } from "./pyodide/pyodide.mjs";

/** Pyodide's version in the bundle (build_wasm.py pins it). */
export const PYODIDE_VERSION = "0.27.7";

/** The stages `onProgress` reports, in order, with the share of the total load time each usually takes. */
export const STAGES = [
  { stage: "pyodide", weight: 0.85, message: "Loading the Python runtime (Pyodide), numpy and webinfer" },
  { stage: "webinfer", weight: 0.1, message: "Importing webinfer" },
  { stage: "kernels", weight: 0.05, message: "Compiling the WebAssembly kernels" },
];

const isNode = typeof process !== "undefined" && !!process.versions?.node && typeof window === "undefined";

async function defaultIndexURL() {
  const url = new URL("./pyodide/", import.meta.url);
  if (isNode && url.protocol === "file:") {
    // Node's Pyodide reads its files from a path, not a file:// URL.
    const { fileURLToPath } = await import("node:url");
    return fileURLToPath(url);
  }
  return url.href;
}

/**
 * Load Pyodide with numpy and webinfer installed and imported.
 *
 * @param {object} [options]
 * @param {string} [options.indexURL] where pyodide.mjs, the wheels and the lock file are (default: ./pyodide/)
 * @param {(p: {stage: string, message: string, fraction: number, elapsedMs: number, timings?: object}) => void}
 *   [options.onProgress] the last event (stage "ready") carries `timings`: milliseconds per stage
 * @param {(line: string) => void} [options.stdout] Python's stdout (default: console.log)
 * @param {(line: string) => void} [options.stderr] Python's stderr (default: console.warn)
 * @param {string[]} [options.packages] more packages from the lock file to load after webinfer
 * @returns {Promise<object>} the Pyodide instance; `import numpy, webinfer` works in it
 */
export async function loadWebinfer(options = {}) {
  const t0 = performance.now();
  const onProgress = options.onProgress ?? (() => {});
  // Milliseconds each stage took, reported with the final "ready" progress event (the cold-start breakdown).
  const timings = {};
  let done = 0;
  let stageStart = t0;
  const report = (i) => {
    const now = performance.now();
    if (i > 0) timings[STAGES[i - 1].stage] = now - stageStart;
    stageStart = now;
    const s = STAGES[i];
    onProgress({ stage: s.stage, message: s.message, fraction: done, elapsedMs: now - t0 });
    done += s.weight;
  };
  const indexURL = options.indexURL ?? (await defaultIndexURL());
  report(0);
  // The wheels are named here rather than loaded afterwards: Pyodide then fetches them as soon as its lock
  // file is in, while its own wasm compiles and its interpreter starts, and installs them once it is up
  // (numpy first, as webinfer depends on it). A loadPackage after loadPyodide fetched them only then.
  const pyodide = await loadPyodide({
    indexURL,
    packages: ["numpy", "webinfer", ...(options.packages ?? [])],
    stdout: options.stdout ?? ((line) => console.log(line)),
    stderr: options.stderr ?? ((line) => console.warn(line)),
  });
  report(1);
  await pyodide.runPythonAsync("import numpy, webinfer");
  report(2);
  // The WebAssembly kernels (GEMM, GELU), compiled asynchronously (never blocking the page, whatever an
  // engine's cap on synchronous compiles) on Pyodide's own memory and warmed up; numpy where they cannot run.
  await pyodide.runPythonAsync("await webinfer.init_wasm()");
  timings.kernels = performance.now() - stageStart;
  const elapsedMs = performance.now() - t0;
  onProgress({ stage: "ready", message: "Ready", fraction: 1, elapsedMs, timings });
  return pyodide;
}

/**
 * Versions inside a loaded instance, for display: {python, pyodide, numpy, webinfer, gemm (the CPU's GEMM backend)}.
 * @param {object} pyodide an instance from loadWebinfer
 */
export function versions(pyodide) {
  const v = pyodide.runPython(
    "import sys, numpy, webinfer; from webinfer import gemm; {'python': sys.version.split()[0], " +
      "'numpy': numpy.__version__, 'webinfer': webinfer.__version__, 'gemm': gemm.describe()}",
  );
  const out = Object.fromEntries(v.toJs());
  v.destroy();
  return { pyodide: pyodide.version, ...out };
}

/**
 * Call an async Python function with one argument, entering Python through runPythonAsync.
 *
 * Entering this way (rather than calling the proxy) lets Python code block on JS promises with
 * pyodide.ffi.run_sync where the runtime supports JSPI (a WebGPU device does that to request its
 * adapter), and still works where it does not (Node.js 20).
 *
 * @param {object} pyodide an instance from loadWebinfer
 * @param {object} fn a PyProxy of an `async def f(arg)`
 * @param {any} arg passed to Python as a JsProxy (call .to_py() there)
 */
export async function callPython(pyodide, fn, arg) {
  const ns = pyodide.globals.get("dict")();
  try {
    ns.set("_fn", fn);
    ns.set("_arg", arg);
    return await pyodide.runPythonAsync("await _fn(_arg)", { globals: ns });
  } finally {
    ns.destroy();
  }
}

/**
 * The last line of a Python traceback ("ModelLoadError: ...") and the whole of it.
 * @param {Error} err an error thrown by Pyodide (PythonError) or JS
 * @returns {{message: string, detail: string}}
 */
export function describeError(err) {
  const text = String(err?.message ?? err);
  const lines = text.trim().split("\n").filter((l) => l.trim());
  const last = lines.length ? lines[lines.length - 1] : text;
  const message = last.replace(/^(?:[\w.]+\.)?(\w+(?:Error|Exception|Warning)):/, "$1:");
  return { message, detail: text };
}
