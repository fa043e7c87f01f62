#!/usr/bin/env node
// Bytecode compiled ahead for Pyodide (build_wasm.py `with_bytecode`): Pyodide 0.27.7 ships its standard
// library and packages as .py only, so every page load compiled them again. This runs Pyodide's own Python
// (the exact interpreter that will load the files) under Node.js and writes a copy of each zip with
// unchecked-hash .pyc files added: beside each module in a zip on sys.path (the stdlib), in __pycache__ in a
// wheel (unpacked into site-packages). Unchecked-hash .pyc files are used whatever the sources' mtimes.
//
//   node tools/pyodide_bytecode.mjs PYODIDE_DIR JOBS.json
//
// JOBS.json: [{"src": path, "dst": path, "prefix": "/lib/python312.zip/", "layout": "zip" | "wheel"}, ...]

import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";

const [indexDir, jobsFile] = process.argv.slice(2);
const { loadPyodide } = await import(resolve(indexDir, "pyodide.mjs"));
const pyodide = await loadPyodide({ indexURL: resolve(indexDir) + "/" });
const addBytecode = pyodide.runPython(`
import base64, hashlib, importlib._bootstrap_external as bootstrap, importlib.util, sys, zipfile

def add_bytecode(src, dst, prefix, layout):
    """Copy zip src to dst with a .pyc for every .py that compiles; a wheel's RECORD lists the new files."""
    added, record = [], None
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if layout == "wheel" and info.filename.endswith(".dist-info/RECORD"):
                record = (info, data)
                continue
            zout.writestr(info, data)
            if not info.filename.endswith(".py"):
                continue
            try:
                code = compile(data, prefix + info.filename, "exec", dont_inherit=True)
            except SyntaxError:
                continue  # e.g. the stdlib's lib2to3 test data: never imported
            pyc = bytes(bootstrap._code_to_hash_pyc(code, importlib.util.source_hash(data), checked=False))
            folder, _, stem = info.filename[:-3].rpartition("/")
            if layout == "zip":
                name = info.filename[:-3] + ".pyc"
            else:
                name = (folder + "/" if folder else "") + f"__pycache__/{stem}.{sys.implementation.cache_tag}.pyc"
            out = zipfile.ZipInfo(name, info.date_time)
            out.compress_type = zipfile.ZIP_DEFLATED
            out.external_attr = info.external_attr
            zout.writestr(out, pyc)
            added.append((name, pyc))
        if record is not None:
            lines = [record[1].decode().rstrip("\\n")]
            for name, pyc in added:
                digest = base64.urlsafe_b64encode(hashlib.sha256(pyc).digest()).rstrip(b"=").decode()
                lines.append(f"{name},sha256={digest},{len(pyc)}")
            zout.writestr(record[0], "\\n".join(lines) + "\\n")
    return len(added)

add_bytecode
`);
for (const job of JSON.parse(readFileSync(jobsFile, "utf8"))) {
  pyodide.FS.writeFile("/tmp/in.zip", readFileSync(job.src));
  const n = addBytecode("/tmp/in.zip", "/tmp/out.zip", job.prefix, job.layout);
  writeFileSync(job.dst, pyodide.FS.readFile("/tmp/out.zip"));
  console.log(`${job.dst}: ${n} .pyc`);
}
addBytecode.destroy();
