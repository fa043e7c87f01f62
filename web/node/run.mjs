#!/usr/bin/env node
// The edge run: the same webinfer wheel as the browser, in Pyodide under Node.js (CPU path).
//
//   node web/node/run.mjs MODEL.onnx --input NAME=FILE.npy [--input ...] [--output-dir DIR]
//                         [--provider cpu | --provider webgpu,cpu] [--dist web/dist]
//
// Node.js has no WebGPU: `--provider webgpu,cpu` runs on the cpu and prints a notice saying why.
//
// Prints each output as `webinfer run` does (name: dtype[shape] and a summary of the values);
// with --output-dir, also saves them as NAME.npy. The .npy inputs are parsed by numpy inside
// Pyodide, so what runs here is exactly what runs in the browser's worker.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const HERE = dirname(fileURLToPath(import.meta.url));
const USAGE =
  "usage: node web/node/run.mjs MODEL.onnx --input NAME=FILE.npy [--input ...] [--output-dir DIR] " +
  "[--provider cpu|webgpu,cpu] [--dist DIR]";

function fail(message) {
  console.error(`run.mjs: error: ${message}`);
  process.exit(2);
}

const { values, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        input: { type: "string", multiple: true, default: [] },
        "output-dir": { type: "string" },
        provider: { type: "string", default: "cpu" },
        dist: { type: "string", default: join(HERE, "..", "dist") },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    return fail(`${err.message}\n${USAGE}`);
  }
})();

if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (positionals.length !== 1) fail(`give exactly one model file\n${USAGE}`);
const modelPath = resolve(positionals[0]);
if (!existsSync(modelPath)) fail(`model file '${modelPath}' not found`);
const inputs = values.input.map((item) => {
  const eq = item.indexOf("=");
  if (eq <= 0) fail(`--input expects NAME=FILE.npy, got '${item}'`);
  const path = resolve(item.slice(eq + 1));
  if (!existsSync(path)) fail(`--input ${item.slice(0, eq)}: file '${path}' not found`);
  return { name: item.slice(0, eq), path };
});

const loader = join(resolve(values.dist), "webinfer.mjs");
if (!existsSync(loader)) fail(`${loader} not found: build the bundle first with \`python build_wasm.py\``);
const { loadWebinfer, describeError } = await import(pathToFileURL(loader).href);

const t0 = performance.now();
const pyodide = await loadWebinfer({ stdout: (l) => console.log(l), stderr: (l) => console.error(l) });
const loadMs = performance.now() - t0;

pyodide.FS.mkdirTree("/work/in");
pyodide.FS.mkdirTree("/work/out");
pyodide.FS.writeFile("/work/model.onnx", readFileSync(modelPath));
const feedFiles = inputs.map((inp, i) => {
  const target = `/work/in/${i}.npy`;
  pyodide.FS.writeFile(target, readFileSync(inp.path));
  return [inp.name, target];
});

const ns = pyodide.toPy({
  feed_files: feedFiles,
  providers: values.provider.split(",").map((p) => p.trim()).filter(Boolean),
  save: Boolean(values["output-dir"]),
});
let saved = [];
try {
  const result = await pyodide.runPythonAsync(
    `
import time
import numpy as np
import webinfer
from webinfer import gemm
from webinfer.providers import short_names

notice = None
if "webgpu" in providers:
    # The WebGPU device opens asynchronously (and Node.js has none: then the session runs on the cpu).
    try:
        await webinfer.init_webgpu()
    except webinfer.DeviceError as e:
        if "cpu" not in providers:
            raise
        notice = f"webgpu unavailable, running on cpu: {e}"
        providers = [p for p in providers if p != "webgpu"]
sess = webinfer.InferenceSession("/work/model.onnx", providers=list(providers))
feed = {name: np.load(path, allow_pickle=False) for name, path in feed_files}
t0 = time.perf_counter()
outputs = await sess.run_async(None, feed)
run_ms = (time.perf_counter() - t0) * 1e3
saved = []
for out, value in zip(sess.get_outputs(), outputs):
    arr = np.asarray(value)
    print(f"{out.name}: {arr.dtype}{list(arr.shape)}")
    with np.printoptions(threshold=20, edgeitems=3, precision=5):
        print(f"  {arr}")
    if save:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in out.name)
        np.save(f"/work/out/{safe}.npy", arr)
        saved.append(f"{safe}.npy")
(saved, run_ms, short_names(sess.get_providers()), notice, gemm.describe())
`,
    { globals: ns },
  );
  const [files, runMs, providers, notice, gemmBackend] = result.toJs();
  result.destroy();
  saved = files;
  if (notice) console.error(`run.mjs: notice: ${notice}`);
  console.log(`providers: ${providers.join(", ")}; GEMM: ${gemmBackend}; ` +
    `Pyodide + webinfer loaded in ${(loadMs / 1000).toFixed(1)} s; ` +
    `run ${runMs.toFixed(1)} ms`);
} catch (err) {
  const { message } = describeError(err);
  console.error(`run.mjs: error: ${message}`);
  process.exit(1);
} finally {
  ns.destroy();
}

if (values["output-dir"]) {
  const outDir = resolve(values["output-dir"]);
  mkdirSync(outDir, { recursive: true });
  for (const name of saved) writeFileSync(join(outDir, name), pyodide.FS.readFile(`/work/out/${name}`));
  console.log(`saved ${saved.length} output(s) to ${outDir}`);
}
