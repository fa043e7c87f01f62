"""Runs one case in this (fresh) process with `onnxruntime` bound to one backend, and writes the
result as JSON.

    python tests/compat/runner.py CASE onnxruntime|webinfer OUT.json

With `webinfer`, the binding is exactly `import webinfer; sys.modules["onnxruntime"] = webinfer`,
plus an import alias so that `import onnxruntime.X.Y` resolves `webinfer.X.Y`: whatever webinfer
itself provides, nothing filled in here.  A package that imports a submodule webinfer lacks gets
the ModuleNotFoundError it would get after swapping the import by hand.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import inspect
import json
import os
import sys
import tempfile
import traceback


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`onnxruntime.X` -> the module `webinfer.X` (the same object, as a swapped import would see)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("onnxruntime."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module("webinfer" + spec.name[len("onnxruntime"):])

    def exec_module(self, module):
        pass


def bind(backend):
    if backend == "webinfer":
        import webinfer
        sys.modules["onnxruntime"] = webinfer
        sys.meta_path.insert(0, _Alias())
    elif backend != "onnxruntime":
        raise SystemExit(f"unknown backend {backend!r}")


def main(argv):
    case, backend, out = argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    bind(backend)
    import cases

    fn = cases.CASES[case]
    with tempfile.TemporaryDirectory(prefix=f"compat-{case}-") as tmp:
        os.chdir(tmp)                      # packages that write caches or logs write them here
        try:
            kwargs = {"tmpdir": tmp} if "tmpdir" in inspect.signature(fn).parameters else {}
            result = {"ok": True, "result": fn(**kwargs)}
        except BaseException as e:         # noqa: BLE001 - reported, compared by the test
            result = {"ok": False, "error": f"{type(e).__module__}.{type(e).__qualname__}: {e}",
                      "traceback": traceback.format_exc()}
    ort = sys.modules.get("onnxruntime")
    result["onnxruntime_module"] = getattr(ort, "__name__", None)
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
