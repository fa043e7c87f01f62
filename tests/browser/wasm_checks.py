"""The wasm kernels against numpy float64, run inside Pyodide (Node.js and Chromium run this same file).

`await check(variants)` initialises the kernels with `webinfer.init_wasm(variants)` and returns a JSON-able
dict: the backend it got, how many products it compared and the failures (empty when all pass).

Tolerance: the worst-case float32 error of the sum, elementwise
|C - C64| <= 2 * (K + 2) * u * (|alpha| |A| |B| + |beta| |C0|) with u = 2^-24
(the classic dot-product bound, doubled for the splat/store roundings);
it cannot flake, and an indexing mistake misses it by orders of magnitude.
GELU: within 1e-6 of |x| plus 1e-7 against math.erf's in float64 (the fit of
Q is good to 2.8e-7 in erf, exp to 2 ulp); +-inf and NaN as numpy's form gives.
Depthwise conv: the same dot-product bound over its k*k taps and the bias,
through each fused activation (slope at most 1.5), plus 8 u (1 + |y|) for the
activation's own roundings; the epilogue: 8 u (1 + |x + bias|), NaN kept.
Softmax: (n/2 + 16) u relative (float32 sums in 4 lanes) plus 1e-7, NaN where
float64's is; LayerNorm: (n + 32) u of the terms' magnitudes (the float32
mean and variance sums).
"""

from __future__ import annotations

from typing import Any, Callable

import dataclasses
import math

import numpy as np

import webinfer
from webinfer import activations, gemm, wasm_kernels, wasm_ops
from webinfer.special import gelu_

U32 = 2.0 ** -24
#: (M, K, N): degenerate, odd, tails of both the 2-row and the 16-column tiles, K over one 256-row block.
SHAPES = [(1, 1, 1), (3, 5, 7), (17, 33, 65), (2, 300, 17), (1, 7, 16), (5, 0, 3), (0, 4, 5), (4, 3, 0),
          (31, 257, 33), (128, 384, 1536)]
#: (alpha, beta)
SCALES = [(1.0, 0.0), (0.5, -1.5), (-2.0, 1.0)]


def _bound(a: np.ndarray, b: np.ndarray, c0: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    k = a.shape[1]
    return 2 * (k + 2) * U32 * (abs(alpha) * (np.abs(a) @ np.abs(b)) + abs(beta) * np.abs(c0)) + 1e-30


def _layouts(rng: np.random.Generator, m: int, k: int) -> dict[str, np.ndarray]:
    """A [M, K] float32 as the kernels meet it: contiguous, a transpose, every other row and column of a
    bigger array, and a broadcast row (stride 0)."""
    base = rng.standard_normal((m, k)).astype(np.float32)
    big = np.zeros((2 * m + 1, 3 * k + 2), np.float32)
    big[1::2, 2::3][:m, :k] = base
    return {"contiguous": base, "transposed": np.ascontiguousarray(base.T).T, "strided": big[1::2, 2::3][:m, :k],
            "broadcast": np.broadcast_to(base[:1], (m, k)) if m else base}


def _check_gemm(kernels: Any, rng: np.random.Generator, fail: Callable[[str], None]) -> int:
    count = 0
    for m, k, n in SHAPES:
        bs = _layouts(rng, n, k)  # B^T's layouts: B = X.T, so a contiguous X gives a column-major B
        b_views = {"row-major": np.ascontiguousarray(bs["contiguous"].T), "column-major": bs["contiguous"].T,
                    "strided": bs["strided"].T}
        for a_name, a in _layouts(rng, m, k).items():
            for b_name, b in b_views.items():
                for alpha, beta in SCALES:
                    c0 = rng.standard_normal((m, n)).astype(np.float32)
                    wide = np.full((m, n + 3), np.nan, np.float32)  # C with padded rows (ldc > N)
                    c = wide[:, :n]
                    c[...] = c0 if beta else np.nan  # beta 0 must not read C
                    packed = kernels.pack(b)
                    kernels.gemm(a, packed if b_name != "strided" else b, c, alpha, beta)
                    a64, b64, c64 = (x.astype(np.float64) for x in (a, b, c0))
                    want = alpha * (a64 @ b64) + (beta * c64 if beta else 0.0)
                    err = np.abs(c - want)
                    count += 1
                    if not np.all(err <= _bound(a64, b64, c64, alpha, beta)) or np.isnan(wide[:, n:]).sum() != 3 * m:
                        fail(f"gemm M={m} K={k} N={n} A {a_name} B {b_name} alpha={alpha} beta={beta}: "
                             f"max error {float(np.nanmax(err, initial=0)):.3g}")
    return count


def _check_matmul(kernels: Any, rng: np.random.Generator, fail: Callable[[str], None]) -> int:
    """np.matmul semantics: batch broadcasting, a transposed batched B (attention's q @ k^T), packed 2-D B."""
    cases = [((2, 3, 5, 7), (2, 3, 7, 4)), ((3, 1, 6, 9), (1, 2, 9, 17)), ((4, 5, 33), (33, 19)),
             ((2, 12, 16, 64), (2, 12, 16, 64))]
    count = 0
    for sa, sb in cases:
        a = rng.standard_normal(sa).astype(np.float32)
        b = rng.standard_normal(sb).astype(np.float32)
        if sa[-1] != sb[-2]:
            b = b.swapaxes(-1, -2)  # [.., S, D] -> [.., D, S], a strided view, as attention passes k^T
        got = kernels.matmul(a, kernels.pack(b) if b.ndim == 2 else b)
        want = np.matmul(a.astype(np.float64), b.astype(np.float64))
        bound = 2 * (a.shape[-1] + 2) * U32 * np.matmul(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64))
        count += 1
        if got.shape != want.shape or got.dtype != np.float32 or not np.all(np.abs(got - want) <= bound):
            fail(f"matmul {list(sa)} @ {list(b.shape)}: got {list(got.shape)} {got.dtype}")
    # A conv's products: constant weights [G, M/G, K] times each image's columns [N, G, K, cells], into a
    # strided block of the output (gemm.matmul with out=, as the conv engines call it).
    w = rng.standard_normal((3, 8, 45)).astype(np.float32)
    cols = rng.standard_normal((2, 3, 45, 70)).astype(np.float32)
    y = np.full((2, 24, 90), np.nan, np.float32)
    out = y[:, :, 10:80].reshape(2, 3, 8, 70)
    ret = gemm.matmul(w, cols, out=out)
    want = np.matmul(w.astype(np.float64), cols.astype(np.float64))
    bound = 2 * 47 * U32 * np.matmul(np.abs(w).astype(np.float64), np.abs(cols).astype(np.float64))
    count += 1
    if ret is not out or not np.all(np.abs(y[:, :, 10:80].reshape(want.shape) - want) <= bound) \
            or not np.isnan(y[:, :, :10]).all() or not np.isnan(y[:, :, 80:]).all():
        fail("matmul with out= (a conv's grouped product into a strided output block)")
    return count


def _check_gelu(rng: np.random.Generator, fail: Callable[[str], None]) -> int:
    """special.gelu_ (the kernel where it runs) on odd sizes, wide ranges and special values."""
    count = 0
    for size in (1, 3, 4, 7, 1000, 4099):
        for scale in (0.1, 3.0, 30.0):
            x = (rng.standard_normal(size) * scale).astype(np.float32)
            x[: min(size, 6)] = np.array([0.0, -0.0, 1e-30, -13.5, -40.0, 9.0], np.float32)[: min(size, 6)]
            y = x.copy()
            gelu_(y)
            want = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64).tolist()])
            count += 1
            if not np.all(np.abs(y - want) <= 1e-6 * np.abs(x) + 1e-7):
                worst = int(np.argmax(np.abs(y - want) - 1e-6 * np.abs(x)))
                fail(f"gelu size={size} scale={scale}: x={x[worst]!r} got {y[worst]!r} want {want[worst]!r}")
    special = np.array([np.inf, -np.inf, np.nan, 3.4e38, -3.4e38], np.float32)
    got = special.copy()
    gelu_(got)
    with np.errstate(invalid="ignore", over="ignore"):
        numpy_form = special * (0.5 * (1 + np.tanh(special)))
    count += 1
    if not np.array_equal(got, numpy_form, equal_nan=True):
        fail(f"gelu of {special.tolist()}: got {got.tolist()}, numpy's form gives {numpy_form.tolist()}")
    return count


#: The fused activations in float64, by name, with the parameters the checks give them.
ACTIVATIONS: dict[str, tuple[float, float, Callable[[np.ndarray], np.ndarray]]] = {
    "Relu": (0.0, 0.0, lambda y: np.maximum(y, 0)),
    "Clip": (-0.5, 1.25, lambda y: np.clip(y, -0.5, 1.25)),
    "HardSigmoid": (0.2, 0.5, lambda y: np.clip(0.2 * y + 0.5, 0, 1)),
    "HardSwish": (0.0, 0.0, lambda y: y * np.clip(y / 6 + 0.5, 0, 1)),
    "Sigmoid": (0.0, 0.0, lambda y: 1 / (1 + np.exp(-y))),
    "LeakyRelu": (0.1, 0.0, lambda y: np.where(y < 0, 0.1 * y, y)),
}


def _act(name: str | None) -> activations.Activation | None:
    """The runtime's activation object with the table's row (activations.py), its numpy function replaced by
    the float64 formula, which runs where a kernel leaves the activation to numpy (outputs too small for
    a kernel call)."""
    if name is None:
        return None
    p0, p1, fn = ACTIVATIONS[name]
    spec = activations.ACTIVATIONS[name]
    reference = dataclasses.replace(
        spec, apply=lambda x, out, *params: np.copyto(out, fn(x.astype(np.float64)), casting="unsafe"))
    return activations.Activation(reference, (p0, p1)[:len(spec.params)])


def _apply(name: str | None, y: np.ndarray) -> np.ndarray:
    return y if name is None else ACTIVATIONS[name][2](y)


def _check_depthwise(rng: np.random.Generator, fail: Callable[[str], None]) -> int:
    """wasm_ops.depthwise2d on odd shapes, kernels 1x1 to 5x5 and 1x7, strides 1 and 2, asymmetric pads,
    a strided input view, with and without bias, through every activation, against float64."""
    count = 0
    cases = [  # (N, C, H, W), (kh, kw), (sh, sw), (pt, pl, pb, pr)
        ((1, 3, 7, 9), (3, 3), (1, 1), (1, 1, 1, 1)), ((2, 5, 17, 23), (3, 3), (2, 2), (1, 1, 1, 1)),
        ((1, 4, 20, 37), (5, 5), (1, 1), (2, 2, 2, 2)), ((1, 3, 19, 33), (5, 5), (2, 2), (2, 2, 2, 2)),
        ((1, 2, 9, 40), (1, 7), (1, 1), (0, 3, 0, 3)), ((1, 2, 6, 5), (3, 3), (1, 2), (0, 1, 2, 0)),
        ((2, 3, 8, 8), (2, 2), (2, 1), (0, 0, 1, 1)), ((1, 6, 5, 3), (1, 1), (1, 1), (0, 0, 0, 0)),
        ((1, 16, 40, 40), (3, 3), (1, 1), (1, 1, 1, 1)), ((1, 3, 4, 4), (5, 5), (1, 1), (2, 2, 2, 2)),
    ]
    names: list[str | None] = [None, *ACTIVATIONS]
    for i, ((n, c, h, wd), (kh, kw), (sh, sw), (pt, pl, pb, pr)) in enumerate(cases):
        base = rng.standard_normal((n, c, h, 2 * wd)).astype(np.float32)
        x = base[:, :, :, ::2] if i % 2 else np.ascontiguousarray(base[:, :, :, :wd])  # odd cases: a strided view
        w = rng.standard_normal((c, kh * kw)).astype(np.float32)
        bias = rng.standard_normal(c).astype(np.float32) if i % 3 else None
        oh, ow = (h + pt + pb - kh) // sh + 1, (wd + pl + pr - kw) // sw + 1
        xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        acc = np.zeros((n, c, oh, ow))
        mag = np.zeros((n, c, oh, ow))
        for a in range(kh):
            for b in range(kw):
                win = xp[:, :, a:a + sh * (oh - 1) + 1:sh, b:b + sw * (ow - 1) + 1:sw]
                acc += win * w[:, a * kw + b, None, None]
                mag += np.abs(win * w[:, a * kw + b, None, None])
        if bias is not None:
            acc += bias[:, None, None]
            mag += np.abs(bias)[:, None, None]
        # the sum's bound, through an activation of slope <= 1.5 (HardSwish), plus its own roundings
        bound = 3 * (kh * kw + 2) * U32 * mag + 8 * U32 * (1 + np.abs(acc))
        for name in names:
            got = wasm_ops.depthwise2d(x, w, bias, (kh, kw), (sh, sw), (pt, pl), (oh, ow), _act(name))
            count += 1
            want = _apply(name, acc)
            if got is None or got.shape != want.shape or not np.all(np.abs(got - want) <= bound):
                err = None if got is None or got.shape != want.shape else float(np.max(np.abs(got - want) - bound))
                fail(f"depthwise {list(x.shape)} k={kh}x{kw} s={sh},{sw} pads={pt},{pl},{pb},{pr} act={name}: "
                     f"{'not run' if got is None else f'excess error {err}'}")
    return count


def _check_im2col_conv(rng: np.random.Generator, fail: Callable[[str], None]) -> int:
    """Dense 2-D convs through ops.conv.conv_compute, which in Pyodide routes them to the wasm im2col
    (columns gathered straight into GEMM panels) and GEMM: kernels 1x1 (padded, and plain: the
    pointwise engine) to 5x5 and 1x7, strides 1 and 2 (row stride 3 too), asymmetric pads, a bias
    folded into the weights, a residual and an activation, chunks of output rows or cells (a 1 MiB
    panel budget), against float64."""
    from webinfer.ops import conv as conv_ops
    count = 0
    cases = [  # (N, C, H, W), M, (kh, kw), (sh, sw), (pt, pl, pb, pr), bias, residual, act
        ((1, 3, 31, 45), 16, (3, 3), (2, 2), (1, 1, 1, 1), True, False, "HardSwish"),
        ((2, 5, 17, 23), 7, (3, 3), (1, 1), (1, 1, 1, 1), False, True, "Relu"),
        ((1, 4, 20, 37), 9, (5, 5), (1, 2), (2, 2, 1, 2), True, True, None),
        ((1, 6, 13, 40), 5, (1, 7), (1, 1), (0, 3, 0, 3), True, False, "Sigmoid"),
        ((1, 3, 11, 9), 4, (1, 1), (1, 1), (1, 0, 0, 1), True, False, None),
        ((1, 2, 19, 21), 3, (2, 3), (3, 2), (0, 1, 2, 0), False, False, "LeakyRelu"),
        ((1, 64, 40, 40), 24, (3, 3), (2, 1), (1, 1, 1, 1), True, False, None),
        ((2, 16, 9, 41), 32, (1, 1), (1, 1), (0, 0, 0, 0), True, True, "HardSwish"),  # 1x1: _wasm_pointwise_conv
        ((1, 64, 70, 70), 10, (1, 1), (1, 1), (0, 0, 0, 0), True, False, "Relu"),  # ... in two chunks
        ((1, 40, 1, 1), 10, (1, 1), (1, 1), (0, 0, 0, 0), True, False, "HardSigmoid"),  # squeeze-excitation
    ]
    for (n, c, h, wd), m, (kh, kw), (sh, sw), (pt, pl, pb, pr), with_bias, with_res, name in cases:
        x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
        w = rng.standard_normal((m, c, kh, kw)).astype(np.float32)
        bias = rng.standard_normal(m).astype(np.float32) if with_bias else None
        oh, ow = (h + pt + pb - kh) // sh + 1, (wd + pl + pr - kw) // sw + 1
        res = rng.standard_normal((n, m, oh, ow)).astype(np.float32) if with_res else None
        g = conv_ops.Geometry((kh, kw), (sh, sw), (1, 1), (pt, pl), (pb, pr), (pb, pr), (oh, ow))
        packed = conv_ops.pack_weights(w, 1, np.float32, bias)
        ran = conv_ops.takes_wasm_im2col(x, packed, g)
        got = conv_ops.conv_compute(x, packed, g, _act(name), None, None if res is None else res.copy())
        xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        acc = np.zeros((n, m, oh, ow))
        mag = np.zeros((n, m, oh, ow))
        for a in range(kh):
            for b in range(kw):
                win = xp[:, :, a:a + sh * (oh - 1) + 1:sh, b:b + sw * (ow - 1) + 1:sw]
                acc += np.einsum("nchw,mc->nmhw", win, w[:, :, a, b].astype(np.float64))
                mag += np.einsum("nchw,mc->nmhw", np.abs(win), np.abs(w[:, :, a, b]).astype(np.float64))
        for extra in (bias[:, None, None] if bias is not None else None, res):
            if extra is not None:
                acc = acc + extra
                mag = mag + np.abs(extra)
        want = _apply(name, acc)
        bound = 3 * (c * kh * kw + 3) * U32 * mag + 8 * U32 * (1 + np.abs(acc))
        count += 1
        if not ran or got.shape != want.shape or not np.all(np.abs(got - want) <= bound):
            fail(f"im2col conv {list(x.shape)} M={m} k={kh}x{kw} s={sh},{sw} pads={pt},{pl},{pb},{pr} "
                 f"bias={with_bias} residual={with_res} act={name}: ran={ran}")
    return count


def _check_bias_act(rng: np.random.Generator, fail: Callable[[str], None]) -> int:
    """wasm_ops.bias_act: bias per channel (NCHW, a strided block of channels and cells) and per column
    (a product), every activation, NaN passed through; a layout it cannot read is left to numpy."""
    count = 0
    for name in [None, *ACTIVATIONS]:
        for shape, axis, view in [((2, 5, 13, 31), 1, False), ((3, 7, 700), 1, True), ((37, 97), 1, False),
                                  ((4, 9, 131), 2, False), ((2, 16, 40, 40), 1, False)]:
            full = (rng.standard_normal(shape) * 4).astype(np.float32)
            y = full[:, :, 50:650] if view else full
            y.flat[5] = np.nan
            y0 = y.astype(np.float64)
            bias = rng.standard_normal(y.shape[axis]).astype(np.float32)
            ran = wasm_ops.bias_act(y, bias, axis, _act(name))
            want = _apply(name, y0 + bias.reshape((-1,) + (1,) * (y.ndim - axis - 1)))
            count += 1
            z = np.abs(y0 + bias.reshape((-1,) + (1,) * (y.ndim - axis - 1)))
            tol = 8 * U32 * (1 + z)  # the add's rounding and the activation's few
            with np.errstate(invalid="ignore"):
                ok = ran and np.isnan(y.flat[5]) and np.all(np.abs(y - want)[~np.isnan(want)] <= tol[~np.isnan(want)])
            if not ok:
                fail(f"bias_act {list(y.shape)} axis={axis} view={view} act={name}: ran={ran}")
    y = np.ones((64, 64), np.float32)[:, ::2]
    count += 1
    if wasm_ops.bias_act(y, np.ones(32, np.float32), 1, None) or not np.all(y == 1):
        fail("bias_act on a view without unit-stride rows should leave it to numpy")
    return count


def _check_binary(rng: np.random.Generator, fail: Callable[[str], None]) -> int:
    """wasm_ops.binary (Add, Sub, Mul) on the broadcasts it takes, operands swapped for Add and Mul, and
    the ones it leaves to numpy, against float64 (one rounding: exact to 1 ulp)."""
    count = 0
    shape = (2, 5, 13, 33)
    for other in [shape, (1, 5, 1, 1), (5, 1, 1), (33,), (), (13, 33), (2, 5, 1, 1)]:
        for op, fn in (("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply)):
            for swap in (False, True):
                a = rng.standard_normal(shape).astype(np.float32)
                b = rng.standard_normal(other).astype(np.float32)
                a.flat[7] = np.nan
                x, y = (b, a) if swap else (a, b)
                got = wasm_ops.binary(op, x, y)
                want = fn(x.astype(np.float64), y.astype(np.float64))
                count += 1
                expect_run = not (swap and op == "Sub" and other != shape)
                if (got is None) == expect_run or (got is not None and (
                        got.shape != want.shape or not np.array_equal(np.isnan(got), np.isnan(want))
                        or not np.all(np.abs(got - want)[~np.isnan(want)] <= U32 * np.abs(want)[~np.isnan(want)]))):
                    fail(f"binary {op} {list(x.shape)} {list(y.shape)}: {'not run' if got is None else 'wrong'}")
    count += 1
    if wasm_ops.binary("Add", np.ones((64, 1), np.float32), np.ones((1, 64), np.float32)) is not None:
        fail("binary of two broadcast operands should be left to numpy")
    return count


def _check_rows(rng: np.random.Generator, fail: Callable[[str], None]) -> int:
    """Softmax (the op's and attention's masked rows) and LayerNorm over odd row lengths."""
    count = 0
    for rows, n in [(1, 2049), (7, 333), (65, 35), (12 * 128, 128), (3, 1000)]:
        x = (rng.standard_normal((rows, n)) * 5).astype(np.float32)
        x[0, : n // 2] = -np.inf
        if rows > 2:
            x[1] = -np.inf  # a fully masked row
            x[2, 3] = np.nan
        x64 = x.astype(np.float64)
        with np.errstate(invalid="ignore"):
            e = np.exp(x64 - x64.max(axis=1, keepdims=True))
            want = e / e.sum(axis=1, keepdims=True)
        for masked_zero in (False, True):
            got = wasm_ops.softmax(x, None, masked_zero)
            exp = want.copy()
            if masked_zero and rows > 2:
                exp[1] = 0
            count += 1
            with np.errstate(invalid="ignore"):
                ok = got is not None and np.array_equal(np.isnan(got), np.isnan(exp)) \
                    and np.all((np.abs(got - exp) - (n / 2 + 16) * U32 * exp)[~np.isnan(exp)] <= 1e-7)
            if not ok:
                fail(f"softmax {rows}x{n} masked_zero={masked_zero}")
        x = (rng.standard_normal((rows, n)) * 3 + 7).astype(np.float32)
        scale = rng.standard_normal(n).astype(np.float32)
        for bias in (None, rng.standard_normal(n).astype(np.float32)):
            got = wasm_ops.layernorm(x, n, scale, bias, 1e-5)
            x64 = x.astype(np.float64)
            d = x64 - x64.mean(axis=1, keepdims=True)
            want = d / np.sqrt((d * d).mean(axis=1, keepdims=True) + 1e-5) * scale + (0 if bias is None else bias)
            count += 1
            inv = 1 / np.sqrt((d * d).mean(axis=1, keepdims=True) + 1e-5)
            tol = (n + 32) * U32 * (np.abs(scale) * (np.abs(d) + np.abs(x64)) * inv
                                    + (0 if bias is None else np.abs(bias))) + 1e-7
            if got is None or not np.all(np.abs(got - want) <= tol):
                fail(f"layernorm {rows}x{n} bias={bias is not None}")
    return count


def _check_qgemm(rng: np.random.Generator, fail: Callable[[str], None]) -> int:
    """gemm.gemm_int8 on wasm/qgemm.c: identical to int64 sums wrapped to int32, for int8/uint8 operands,
    scalar and per-column zero points, odd shapes (tails of the 2x4 tile and of K's 8-lane steps), strided,
    transposed and reversed views, and sums past 2^31."""
    count = 0
    for m, k, n in [(1, 1, 1), (3, 5, 7), (17, 33, 65), (2, 300, 17), (128, 384, 96), (0, 4, 5), (4, 0, 3)]:
        for a_type, b_type in ((np.uint8, np.int8), (np.int8, np.int8), (np.uint8, np.uint8)):
            ia, ib = np.iinfo(a_type), np.iinfo(b_type)
            base_a = rng.integers(ia.min, ia.max + 1, (2 * m + 1, 3 * k + 1)).astype(a_type)
            base_b = rng.integers(ib.min, ib.max + 1, (k, n)).astype(b_type)
            views = {"contiguous": (np.ascontiguousarray(base_a[:m, :k]), base_b),
                     "strided/transposed": (base_a[1::2, ::3][:m, :k], np.ascontiguousarray(base_b.T).T),
                     "reversed": (base_a[:m, :k][::-1], base_b[::-1])}
            for name, (a, b) in views.items():
                za = int(rng.integers(ia.min, ia.max + 1))
                for zb in (0, rng.integers(ib.min, ib.max + 1, n).astype(b_type)):
                    got = gemm.gemm_int8(a, b, za, zb)
                    want = ((a.astype(np.int64) - za) @ (b.astype(np.int64) - np.asarray(zb, np.int64))
                            ).astype(np.int32)
                    count += 1
                    if got.dtype != np.int32 or not np.array_equal(got, want):
                        fail(f"gemm_int8 M={m} K={k} N={n} {np.dtype(a_type)}x{np.dtype(b_type)} {name} "
                             f"per-column={np.ndim(zb) == 1}")
    b = rng.integers(-128, 128, (37, 19)).astype(np.int8)
    zb = rng.integers(-128, 128, 19).astype(np.int8)
    packed = gemm.pack_int8(b, zb)
    for m in (1, 6, 33):
        a = rng.integers(0, 256, (m, 37)).astype(np.uint8)
        count += 1
        if packed.columns is None or not np.array_equal(
                gemm.gemm_int8(a, packed, 7), ((a.astype(np.int64) - 7) @ (b.astype(np.int64) - zb)).astype(np.int32)):
            fail(f"gemm_int8 with B packed once (pack_int8), M={m}")
    a, b = np.full((3, 40000), 255, np.uint8), np.full((40000, 5), 255, np.uint8)
    count += 1
    if not np.array_equal(gemm.gemm_int8(a, b), np.full((3, 5), (255 * 255 * 40000 + 2**31) % 2**32 - 2**31)):
        fail("gemm_int8 sums past 2^31 do not wrap as int32")
    return count


async def check(variants: list[str]) -> dict[str, Any]:
    """Initialise the kernels with `variants` (best first) and compare every case; see the module doc."""
    backend = await webinfer.init_wasm(tuple(variants))
    failures: list[str] = []
    kernels = gemm.wasm()
    if kernels is None:
        return {"backend": backend, "count": 0, "failures": [f"no kernels: {gemm.describe()}"]}
    rng = np.random.default_rng(20261206)
    count = _check_gemm(kernels, rng, failures.append) + _check_matmul(kernels, rng, failures.append)
    if wasm_kernels.exports("elementwise") is None:
        failures.append("the elementwise kernels are not loaded")
    count += _check_gelu(rng, failures.append)
    for family in ("conv", "qgemm", "rows"):
        if wasm_kernels.exports(family) is None:
            failures.append(f"the {family} kernels are not loaded")
    count += _check_depthwise(rng, failures.append) + _check_bias_act(rng, failures.append)
    count += _check_im2col_conv(rng, failures.append) + _check_binary(rng, failures.append)
    count += _check_rows(rng, failures.append) + _check_qgemm(rng, failures.append)
    return {"backend": backend, "count": count, "failures": failures[:20], "n_failures": len(failures)}


async def sync_load() -> str:
    """Load the kernels the way the first product does when no one awaited init_wasm (a synchronous
    compile), then report `gemm.describe()`; init_wasm afterwards restores the usual state."""
    wasm_kernels._STATE.tried = False
    gemm.wasm()
    got = gemm.describe()
    await webinfer.init_wasm()
    return got
