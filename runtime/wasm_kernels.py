"""The WebAssembly SIMD kernels inside Pyodide: one build of every kernel family, on Pyodide's own memory.

build_wasm.py compiles each `wasm/{family}.c` twice into the wheel:
`{family}-relaxed.wasm` (relaxed SIMD: fused multiply-add) and
`{family}-simd128.wasm`.  The relaxed build runs where the engine validates
every family of it (Chromium); elsewhere (Safari, Firefox, Node.js 20) the
SIMD128 one.  Every module imports Pyodide's own `WebAssembly.Memory` and owns
nothing in it (no data, no stack; build_wasm.py checks), so its exports take
numpy arrays' addresses (`__array_interface__`, offsets into that memory) and
work in place: no copies between Python and the kernels.  Holding the Memory
object, not a typed-array view of it, keeps them valid when memory grows.

Loading: `await init(...)` (through `webinfer.init_wasm()`, which
web/src/webinfer.mjs awaits at load) compiles asynchronously, which never
blocks a page and has no size limit (engines have capped synchronous compiles
on the main thread: Chromium's cap was once 4 KB; 156 compiles these modules),
and warms the kernels up: their first calls run 5-30x slower until the engine
optimises them.  Without that call the first kernel asked for triggers a
synchronous compile (tested in Node.js and on Chromium's main thread); where
that is refused numpy runs, and `reason()` says why.  Natively nothing here
loads: numpy's OpenBLAS runs the products.
"""

from __future__ import annotations

import importlib.resources
import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The builds, best first (`{family}-{variant}.wasm`).
VARIANTS = ("relaxed", "simd128")
#: The kernel families (wasm/*.c) a build must have all of.
FAMILIES = ("conv", "elementwise", "gemm", "qgemm", "rows")


@dataclass
class _State:
    variant: str | None = None
    exports: dict[str, Any] = field(default_factory=dict)
    tried: bool = False
    reason: str = ""
    #: Bumped by every (re)load, so wrappers built on old exports know to rebuild.
    generation: int = 0


_STATE = _State()


def _module_bytes(family: str, variant: str) -> bytes | None:
    try:
        return (importlib.resources.files("webinfer.wasm") / f"{family}-{variant}.wasm").read_bytes()
    except (FileNotFoundError, ModuleNotFoundError):
        return None


def _imports() -> Any:
    """{env: {memory: Pyodide's WebAssembly.Memory}} as a JS object.

    `resolveGlobalSymbol` is Pyodide-internal (pinned to 0.27.7 by build_wasm.py; the browser tests cover it).
    """
    import js
    import pyodide_js
    from pyodide.ffi import to_js

    memory = pyodide_js._module.resolveGlobalSymbol("memory").sym
    return to_js({"env": {"memory": memory}}, dict_converter=js.Object.fromEntries)


def _candidates(variants: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    """(variant, {family: JS bytes}) of the builds this wheel has whole and the engine validates, best first."""
    import js
    from pyodide.ffi import to_js

    found = []
    for variant in variants:
        modules = {family: _module_bytes(family, variant) for family in FAMILIES}
        if any(data is None for data in modules.values()):
            continue
        bufs = {family: to_js(data) for family, data in modules.items()}
        if all(js.WebAssembly.validate(buf) for buf in bufs.values()):
            found.append((variant, bufs))
    return found


def _no_kernels_reason(variants: tuple[str, ...]) -> str:
    if not variants:
        return "wasm kernels switched off"
    if all(_module_bytes(family, v) is None for v in variants for family in FAMILIES):
        return "this webinfer build has no wasm kernels (build the wheel with build_wasm.py)"
    return "the engine validates no complete build of the wasm kernels"


def _address(x: np.ndarray) -> int:
    return x.__array_interface__["data"][0]


def _irregular(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Deterministic float32 values in [-2, 2] with no pattern a kernel's tiling could hide behind.

    Not numpy.random: importing it (nine extension modules) cost about 0.1 s of the page's start in
    Pyodide, and nothing else on the way to a first result needs it."""
    n = np.arange(1, math.prod(shape) + 1, dtype=np.float64)
    return (2 * np.sin(n * (0.7548776662466927 + seed) + seed * n * n * 1e-4)).reshape(shape).astype(np.float32)


def _warm_up(exports: dict[str, Any], variant: str) -> None:
    """Run each family until the engine has optimised it, checking its results against numpy."""
    a = _irregular((33, 96), 0)
    b = _irregular((96, 80), 1)
    panels = np.empty(96 * 80, np.float32)
    c = np.empty((33, 80), np.float32)
    exports["gemm"].pack_b(96, 80, _address(b), 80, 1, _address(panels))
    for _ in range(24):
        exports["gemm"].gemm_packed(33, 80, 96, 1.0, _address(a), 96, 1, _address(panels), 0.0, _address(c), 80)
    x = np.linspace(-6, 6, 4099, dtype=np.float32)
    y = x.copy()
    for _ in range(8):
        np.copyto(y, x)
        exports["elementwise"].gelu(_address(y), y.size)
    want = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.tolist()]
    ok = np.allclose(c, a @ b, rtol=1e-4, atol=1e-4) and np.allclose(y, want, rtol=1e-5, atol=1e-6)
    # The depthwise conv (3x3, stride 2, pad 1, bias, ReLU), im2col into panels, the epilogue (bias per
    # row, HardSwish), a per-row Mul, softmax and LayerNorm, on shapes with vector tails.
    img = _irregular((2, 3, 19, 37), 2)
    taps = _irregular((3, 9), 3)
    bias = _irregular((3,), 4)
    conv = np.empty((2, 3, 10, 19), np.float32)
    scratch = np.empty(21 * 82, np.float32)
    rows = a[:, :35].copy()
    out = np.empty_like(rows)
    for _ in range(8):
        exports["conv"].depthwise2d(_address(img), _address(conv), _address(taps), _address(bias), 6, 3, 19, 37,
                                    10, 19, 3, 3, 2, 2, 1, 1, _address(scratch), 21, 82, 1, 0.0, 0.0)
        exports["rows"].softmax(_address(rows), _address(out), 33, 35, 0)
    cols = np.empty(16 * 28, np.float32)  # im2col of the first image's output cells 0..15, a ones row
    for _ in range(8):
        exports["conv"].im2col_panels(_address(img), 3, 19, 37, 3, 3, 2, 2, 1, 1, 0, 1, 16, 1, _address(cols))
    padded = np.pad(img.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    tap_rows = [padded[0, ch, i, j:j + 31:2] for ch in range(3) for i in range(3) for j in range(3)]
    ok = ok and np.array_equal(cols.reshape(28, 16), np.stack(tap_rows + [np.ones(16)]))
    want_conv = sum(padded[:, :, i:i + 19:2, j:j + 37:2] * taps[:, 3 * i + j, None, None]
                    for i in range(3) for j in range(3)) + bias[:, None, None]
    e = np.exp(rows - rows.max(axis=1, keepdims=True))
    ok = ok and np.allclose(conv, np.maximum(want_conv, 0), rtol=1e-4, atol=1e-5) \
        and np.allclose(out, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    for _ in range(8):
        exports["rows"].layernorm(_address(rows), _address(out), 33, 35, _address(rows[0]), 0, 1e-5)
    d = rows - rows.mean(axis=1, keepdims=True)
    ok = ok and np.allclose(out, d / np.sqrt((d * d).mean(axis=1, keepdims=True) + 1e-5) * rows[0],
                            rtol=1e-4, atol=1e-5)
    first = rows[:, 0].copy()
    for _ in range(8):
        np.copyto(out, rows)
        exports["elementwise"].bias_act(_address(out), 33, 35, 35, _address(first), 1, 33, 4, 0.0, 0.0)
    z = rows + first[:, None]
    prod = np.empty_like(rows)
    for _ in range(8):
        exports["elementwise"].binary(_address(rows), _address(first), _address(prod), 33, 35, 1, 33, 2)
    ok = ok and np.array_equal(prod, rows * first[:, None])
    ok = ok and np.allclose(out, z * np.clip(z / 6 + 0.5, 0, 1), rtol=1e-5, atol=1e-6)
    # The int8 product: uint8 A (zero point 3) and int8 B, 5x8 and 8x6 (both tails of the 2x4 tile).
    qa = (_irregular((5, 8), 5) * 63.75 + 127.5).astype(np.uint8)
    qb = (_irregular((8, 6), 6) * 63.75).astype(np.int8)
    za, zb = np.array([3], np.int32), np.zeros(1, np.int32)
    a16, b16, qc = np.empty((5, 8), np.int16), np.empty((6, 8), np.int16), np.empty((5, 6), np.int32)
    for _ in range(8):
        exports["qgemm"].pack_i8(5, 8, _address(qa), 8, 1, 1, _address(za), 0, _address(a16), 8)
        exports["qgemm"].pack_i8(6, 8, _address(qb), 1, 6, 0, _address(zb), 0, _address(b16), 8)
        exports["qgemm"].qgemm(5, 6, 8, _address(a16), _address(b16), _address(qc), 6)
    ok = ok and np.array_equal(qc, (qa.astype(np.int64) - 3) @ qb.astype(np.int64))
    if not ok:
        raise RuntimeError(f"the {variant} wasm kernels' results differ from numpy's")


async def init(variants: tuple[str, ...] = VARIANTS) -> str | None:
    """Compile, instantiate and warm up the best of `variants` the engine validates (async: allowed on a
    page's main thread); returns the variant, None where numpy runs (natively: always).  `variants=()`
    switches the kernels off, e.g. to compare; calling again re-initialises."""
    if sys.platform != "emscripten":
        return None
    import js

    _reset(_no_kernels_reason(variants))
    for variant, bufs in _candidates(variants):
        exports = {}
        for family, buf in bufs.items():
            exports[family] = (await js.WebAssembly.instantiate(buf, _imports())).instance.exports
        _warm_up(exports, variant)
        _STATE.variant, _STATE.exports, _STATE.reason = variant, exports, ""
        break
    return _STATE.variant


def _reset(reason: str) -> None:
    _STATE.variant, _STATE.exports, _STATE.tried, _STATE.reason = None, {}, True, reason
    _STATE.generation += 1


def _load_sync() -> None:
    """The first kernel's load when no one awaited `init`: synchronous compile, else numpy."""
    import js
    from pyodide.ffi import JsException

    _reset(_no_kernels_reason(VARIANTS))
    for variant, bufs in _candidates(VARIANTS):
        try:
            exports = {family: js.WebAssembly.Instance.new(js.WebAssembly.Module.new(buf), _imports()).exports
                       for family, buf in bufs.items()}
        except JsException as e:  # an engine capping synchronous compiles on the main thread
            _STATE.reason = f"synchronous compile refused ({e}); await webinfer.init_wasm() first"
            return
        _warm_up(exports, variant)
        _STATE.variant, _STATE.exports, _STATE.reason = variant, exports, ""
        return


def exports(family: str) -> Any | None:
    """The loaded family's exports (a JS object), None where the kernels do not run (natively, or numpy)."""
    if sys.platform != "emscripten":
        return None
    if not _STATE.tried:
        _load_sync()
    return _STATE.exports.get(family)


def variant() -> str | None:
    """'relaxed' or 'simd128' once loaded, else None."""
    return _STATE.variant if exports(FAMILIES[0]) is not None else None


def reason() -> str:
    """Why the kernels do not run here ('' when they do, or before anything asked for them)."""
    return _STATE.reason


def generation() -> int:
    """Changes whenever the kernels are (re)loaded or switched off."""
    return _STATE.generation
