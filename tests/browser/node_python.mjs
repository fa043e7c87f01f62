#!/usr/bin/env node
// Runs Python inside Pyodide under Node.js with the bundle's webinfer (tests/browser/test_wasm_kernels.py):
//
//   node tests/browser/node_python.mjs DIST FILE.py EXPRESSION
//
// FILE.py is written into Pyodide's file system and imported as a module; EXPRESSION (awaited, with that
// module as `m`) must give something json.dumps takes, which is printed as the last line of stdout.

import { readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [dist, file, expression] = process.argv.slice(2);
const { loadWebinfer } = await import(pathToFileURL(join(resolve(dist), "webinfer.mjs")).href);
const pyodide = await loadWebinfer({ stdout: (l) => console.error(l), stderr: (l) => console.error(l) });
const name = basename(file, ".py");
pyodide.FS.mkdirTree("/work/py");
pyodide.FS.writeFile(`/work/py/${name}.py`, readFileSync(file));
const ns = pyodide.toPy({ module_name: name, expression });
try {
  const result = await pyodide.runPythonAsync(
    `
import importlib, json, sys
sys.path.insert(0, "/work/py")
m = importlib.import_module(module_name)
json.dumps(await eval(expression, {"m": m}))
`,
    { globals: ns },
  );
  console.log(result);
} finally {
  ns.destroy();
}
