"""The demo page's Python side: model loading, runs, text-box post-processing, graph layout.

It runs inside Pyodide (the worker imports it) and natively (the browser
tests import it to compute the reference results), so everything here is
plain numpy + webinfer; the Pyodide-only glue (`js`, `to_js`) sits in the
`api_*` functions at the bottom, which the worker calls through
`runPythonAsync` (so awaiting WebGPU's promises works, and JSPI where the
runtime has it).
"""

from __future__ import annotations

import io
import math
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

import webinfer
from webinfer.bench import random_feed
from webinfer.info import model_info
from webinfer.loader import load_model
from webinfer.ops.image import decode_image
from webinfer.providers import short_names
from webinfer.session import NodeArg

#: The notice the page shows when a session asked for WebGPU runs on the CPU instead.
CPU_FALLBACK_NOTICE = "no WebGPU adapter: running on CPU"
#: Above this many nodes the graph view shows the op histogram only (an SVG that big is unreadable).
MAX_GRAPH_NODES = 2500

# PP-OCR detection pre-processing (PaddleOCR's NormalizeImage, applied to BGR images).
PPOCR_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
PPOCR_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PPOCR_STRIDE = 32


# ------------------------------------------------------------------- PNG
def read_png(data: bytes) -> np.ndarray:
    """Decode a PNG to HxWx3 RGB uint8 (grey expanded, alpha dropped) with webinfer's ImageDecoder.

    Decoding in Python (not through a canvas) keeps the pixels identical in
    the browser and in the native reference the tests compute.
    """
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("not a PNG file")
    return decode_image(data)


# ----------------------------------------------------------- PP-OCR det
def ppocr_preprocess(img: np.ndarray) -> np.ndarray:
    """HxWx3 RGB uint8 -> [1, 3, H', W'] float32, padded to the detector's stride of 32."""
    h, w = img.shape[:2]
    ph, pw = -h % PPOCR_STRIDE, -w % PPOCR_STRIDE
    bgr = img[..., ::-1].astype(np.float32) / 255.0
    x = (bgr - PPOCR_MEAN) / PPOCR_STD
    x = np.pad(x, ((0, ph), (0, pw), (0, 0)))
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True in a 2-D mask: (row, start, end-exclusive)."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    rs, cs = np.nonzero(d == 1)
    _, ce = np.nonzero(d == -1)
    return rs, cs, ce


def connected_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int, list[int]]]:
    """8-connected components of a mask as (x0, y0, x1, y1, run indices), via runs + union-find.

    Working on runs instead of pixels keeps the Python loop short (a text
    line is a few hundred runs), which matters in Pyodide.
    """
    rs, cs, ce = _runs(mask)
    n = len(rs)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_start = np.searchsorted(rs, np.arange(mask.shape[0] + 1))
    for r in range(1, mask.shape[0]):
        a0, a1 = row_start[r - 1], row_start[r]
        b0, b1 = row_start[r], row_start[r + 1]
        i, j = a0, b0
        while i < a1 and j < b1:
            # 8-connectivity: runs touch when they overlap after widening by one pixel.
            if cs[i] <= ce[j] and cs[j] <= ce[i]:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[ri] = rj
            if ce[i] < ce[j]:
                i += 1
            else:
                j += 1
    groups: dict[int, list[int]] = {}
    for k in range(n):
        groups.setdefault(find(k), []).append(k)
    boxes = []
    for members in groups.values():
        m = np.array(members)
        boxes.append((int(cs[m].min()), int(rs[m].min()), int(ce[m].max()), int(rs[m].max()) + 1, members))
    return boxes


def detect_boxes(prob: np.ndarray, image_hw: tuple[int, int], thresh: float = 0.3, box_thresh: float = 0.6,
                 unclip_ratio: float = 1.5, min_size: int = 3) -> list[dict[str, float]]:
    """Text boxes from a DB probability map [H, W] (PaddleOCR's DBPostProcess, axis-aligned).

    Threshold the map, take connected components, keep those whose mean
    probability reaches `box_thresh`, then grow each box by
    area * unclip_ratio / perimeter on every side: DB predicts shrunk text
    regions, this restores the text's extent.  Boxes are clipped to the
    original image (the map covers its stride padding too).
    """
    prob = np.asarray(prob, dtype=np.float32)
    mask = prob > thresh
    h, w = image_hw
    rs, cs, ce = _runs(mask)
    out = []
    for x0, y0, x1, y1, members in connected_boxes(mask):
        bw, bh = x1 - x0, y1 - y0
        if min(bw, bh) < min_size:
            continue
        total = sum(float(prob[rs[k], cs[k]:ce[k]].sum()) for k in members)
        count = sum(int(ce[k] - cs[k]) for k in members)
        score = total / count
        if score < box_thresh:
            continue
        d = bw * bh * unclip_ratio / (2 * (bw + bh))
        out.append({"x0": max(0.0, x0 - d), "y0": max(0.0, y0 - d), "x1": min(float(w), x1 + d),
                    "y1": min(float(h), y1 + d), "score": score})
    out.sort(key=lambda b: (round(b["y0"] / 8), b["x0"]))
    return out


# ------------------------------------------------------------ sessions
@dataclass
class Loaded:
    """A session the page holds, with what the page shows about it."""

    session: webinfer.InferenceSession
    name: str
    summary: dict[str, Any]
    #: The file, for `describe` (its node count, opsets and FLOPs are the file's, before optimization).
    model_bytes: bytes


SESSIONS: dict[int, Loaded] = {}


def _default_dim(rank: int, axis: int) -> int:
    """A size for a symbolic dim in generated inputs: batch 1, image sides 224, sequences 16."""
    if axis == 0:
        return 1
    if rank == 4 and axis >= 2:
        return 224
    return 16


def _arg(a: NodeArg) -> dict[str, Any]:
    shape = None if a.shape is None else [d if isinstance(d, int) else (d or "?") for d in a.shape]
    default = None if a.shape is None else [d if isinstance(d, int) and d >= 0 else _default_dim(len(a.shape), i)
                                            for i, d in enumerate(a.shape)]
    return {"name": a.name, "type": a.type, "shape": shape, "default_shape": default}


def layout_graph(session: webinfer.InferenceSession) -> dict[str, Any] | None:
    """A layered layout of the optimized graph (what actually runs), for the page's SVG view.

    Layers are longest paths from the inputs, except that nodes computing
    constants (weights made by ConstantOfShape, say, and what is computed
    from them) sit just above their first consumer instead of crowding the
    top rows.  Within a layer, nodes
    are ordered by the mean position of their producers (of their consumers
    for such sources), two sweeps, which keeps chains straight and crossings
    few on typical networks.
    """
    graph = session.graph
    nodes = graph.topological_nodes()
    if len(nodes) > MAX_GRAPH_NODES:
        return None
    placement = session.get_placement()
    types = session.plan.types.types
    producer = {o: i for i, n in enumerate(nodes) for o in n.outputs if o}
    preds = [sorted({producer[x] for x in n.inputs if x in producer}) for n in nodes]
    succs: list[list[int]] = [[] for _ in nodes]
    for i, ps in enumerate(preds):
        for p in ps:
            succs[p].append(i)
    graph_inputs = {v.name for v in graph.inputs if v.name not in graph.initializers}
    reads_input = [any(x in graph_inputs for x in n.inputs) for n in nodes]
    layer = [0] * len(nodes)
    const_only = [False] * len(nodes)
    for i, ps in enumerate(preds):
        layer[i] = max((layer[p] + 1 for p in ps), default=0)
        const_only[i] = not reads_input[i] and all(const_only[p] for p in ps)
    for i in reversed(range(len(nodes))):
        if const_only[i] and succs[i]:
            layer[i] = max(0, min(layer[s] for s in succs[i]) - 1)
    by_layer: dict[int, list[int]] = {}
    for i, l in enumerate(layer):
        by_layer.setdefault(l, []).append(i)
    pos = [0.0] * len(nodes)
    for members in by_layer.values():
        for k, i in enumerate(members):
            pos[i] = float(k)

    def key(i: int) -> tuple[float, int]:
        near = preds[i] or succs[i]
        return (statistics.fmean(pos[j] for j in near) if near else pos[i], i)

    for _ in range(2):
        for l in sorted(by_layer):
            members = by_layer[l]
            members.sort(key=key)
            for k, i in enumerate(members):
                pos[i] = k - (len(members) - 1) / 2
    out_nodes = []
    for i, n in enumerate(nodes):
        name = n.name or n.outputs[0]
        shapes = []
        for o in n.outputs:
            t = types.get(o)
            shapes.append(t.describe() if t is not None and hasattr(t, "describe") else "?")
        out_nodes.append({"op": n.op_type, "name": name, "layer": layer[i], "pos": pos[i],
                          "device": placement.get(name, "cpu"), "outputs": shapes,
                          "reads_input": reads_input[i]})
    edges = [[p, i] for i, ps in enumerate(preds) for p in ps]
    inputs = [v.name for v in graph.inputs if v.name in graph_inputs]
    return {"nodes": out_nodes, "edges": edges, "layers": max(layer, default=-1) + 1, "inputs": inputs}


async def init_webgpu(timeout_s: float) -> dict[str, Any]:
    """Open webinfer's WebGPU device before any session needs it (in the browser that takes promises,
    which a session's constructor cannot await), and describe the adapter for the page.

    {"available": True, vendor, architecture, description, fallback} or {"available": False, "problem"}.
    The problem (no `navigator.gpu`, `requestAdapter()` timed out, ...) is what the page's
    fallback notice says.
    """
    try:
        backend = await webinfer.init_webgpu(timeout_s=timeout_s)
    except webinfer.DeviceError as e:
        return {"available": False, "problem": str(e)}
    info = getattr(backend, "info", None) or {"vendor": "", "architecture": "", "description": backend.description,
                                              "fallback": backend.software}
    return {"available": True, "vendor": info["vendor"], "architecture": info["architecture"],
            "description": info["description"], "fallback": bool(info["fallback"])}


def load(model_bytes: bytes, name: str, providers: list[str], adapter_problem: str | None = None,
         provider_options: dict[str, dict[str, Any]] | None = None, describe: bool = True) -> dict[str, Any]:
    """Create a session and describe it for the page: interface, providers, placement, graph.

    `describe=False` leaves out what `describe` adds (the file's info and the graph's layout): the
    page's first model then shows its first result without waiting for them (parsing the file again
    for its info took a quarter of the model load in Pyodide), and asks for them afterwards.

    `adapter_problem` is the page's reason for not asking for WebGPU (no
    `navigator.gpu`, `requestAdapter()` timed out, ...); the session is then
    created on the CPU and the page shows the fallback notice with it.
    `provider_options` go to the session as onnxruntime's `provider_options`
    (by provider name), e.g. {"webgpu": {"integer_ops": "always"}}.
    """
    requested = list(providers)
    if adapter_problem and "webgpu" in providers:
        providers = [p for p in providers if p != "webgpu"] or ["cpu"]
    options = webinfer.SessionOptions(provider_options={k: dict(v) for k, v in (provider_options or {}).items()})
    t0 = time.perf_counter()
    problem = adapter_problem
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = webinfer.InferenceSession(model_bytes, options, providers=providers)
    load_ms = (time.perf_counter() - t0) * 1e3
    for w in caught:
        if issubclass(w.category, RuntimeWarning) and "webgpu" in str(w.message):
            problem = str(w.message)
    used = short_names(session.get_providers())
    notice = None
    if "webgpu" in requested and "webgpu" not in used:
        notice = CPU_FALLBACK_NOTICE + (f" ({problem})" if problem else "")
    placement = session.get_placement()
    summary = {
        "name": name, "bytes": len(model_bytes), "load_ms": load_ms,
        "inputs": [_arg(a) for a in session.get_inputs()], "outputs": [_arg(a) for a in session.get_outputs()],
        "requested_providers": requested, "providers": used, "notice": notice,
        "nodes_total": len(placement), "nodes_gpu": sum(1 for d in placement.values() if d == "webgpu"),
        "fallback_reasons": session.device_stats()["fallback_reasons"],
    }
    sid = max(SESSIONS, default=0) + 1
    SESSIONS[sid] = Loaded(session, name, summary, model_bytes)
    summary["id"] = sid
    if describe:
        summary.update(describe_session(sid))
    return summary


def describe_session(sid: int) -> dict[str, Any]:
    """The rest of a loaded model's summary (also merged into it): the file's info (producer, opsets,
    node count, op histogram, parameters, FLOPs) and the optimized graph's layout for the graph view."""
    loaded = SESSIONS[sid]
    info = model_info(load_model(loaded.model_bytes))
    extra = {
        "info": {k: info[k] for k in ("producer", "ir_version", "opsets", "nodes", "op_histogram", "parameters",
                                      "parameter_bytes", "flops", "flops_known_part")},
        "graph": layout_graph(loaded.session),
    }
    loaded.summary.update(extra)
    return extra


def make_feed(session: webinfer.InferenceSession, shapes: dict[str, list[int]], npy: dict[str, bytes],
              seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for a run: uploaded .npy files where given, random data of `shapes` for the rest."""
    feed: dict[str, np.ndarray] = {}
    missing = []
    for a in session.get_inputs():
        if a.name in npy:
            feed[a.name] = np.load(io.BytesIO(npy[a.name]), allow_pickle=False)
        else:
            shape = shapes.get(a.name) or _arg(a)["default_shape"] or []
            missing.append(NodeArg(a.name, a.type, [int(d) for d in shape]))
    feed.update(random_feed(missing, seed=seed))
    return feed


def _stats(values: list[float]) -> dict[str, float]:
    xs = sorted(values)
    pick = lambda q: xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]  # noqa: E731 - nearest rank
    return {"p50": statistics.median(xs), "p90": pick(0.9), "min": xs[0], "max": xs[-1], "mean": statistics.fmean(xs)}


def summarize(name: str, value: Any) -> dict[str, Any]:
    """What the page shows of an output: dtype, shape, range and the first values."""
    if not isinstance(value, np.ndarray):
        return {"name": name, "dtype": type(value).__name__, "shape": None, "text": repr(value)[:200]}
    out: dict[str, Any] = {"name": name, "dtype": str(value.dtype), "shape": list(value.shape),
                           "head": [v.item() if hasattr(v, "item") else v for v in value.ravel()[:8].tolist()]}
    if value.size and value.dtype.kind in "fiub":
        v = value.astype(np.float64)
        finite = np.isfinite(v)
        out.update(min=float(v[finite].min()) if finite.any() else math.nan,
                   max=float(v[finite].max()) if finite.any() else math.nan,
                   mean=float(v[finite].mean()) if finite.any() else math.nan,
                   nonfinite=int((~finite).sum()))
    return out


async def timed_runs(session: webinfer.InferenceSession, feed: dict[str, np.ndarray],
                     repeats: int) -> tuple[list[Any], list[float]]:
    """Run `repeats` times (at least once); return the first run's outputs and every run's latency."""
    times, outputs = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        res = await session.run_async(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
        if outputs is None:
            outputs = res
    return outputs, times


def npy_bytes(value: Any) -> bytes | None:
    """An output as .npy file bytes (what the page offers for download); None for non-tensors."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biufc?":
        return None
    buf = io.BytesIO()
    np.save(buf, value, allow_pickle=False)
    return buf.getvalue()


def gpu_work(session: webinfer.InferenceSession) -> dict[str, Any] | None:
    """What the last run asked of the GPU (dispatches, submits, readbacks) and on which adapter; None on cpu."""
    stats = session.device_stats()
    if stats["dispatches_per_run"] is None:
        return None
    return {"dispatches": stats["dispatches_per_run"], "submits": stats["submits_per_run"],
            "readbacks": stats["readbacks_per_run"], "adapter": stats["adapter"]}


async def run(sid: int, shapes: dict[str, list[int]], npy: dict[str, bytes], repeats: int) -> dict[str, Any]:
    """Run a loaded model on generated or uploaded inputs: output summaries and .npy files, latency."""
    loaded = SESSIONS[sid]
    feed = make_feed(loaded.session, shapes, npy)
    outputs, times = await timed_runs(loaded.session, feed, repeats)
    names = [o.name for o in loaded.session.get_outputs()]
    files = {n: b for n, b in ((n, npy_bytes(v)) for n, v in zip(names, outputs)) if b is not None}
    return {"id": sid, "inputs": [summarize(k, v) for k, v in feed.items()],
            "outputs": [summarize(n, v) for n, v in zip(names, outputs)], "npy": files, "times_ms": times,
            "latency": _stats(times), "providers": short_names(loaded.session.get_providers()), "gpu": gpu_work(loaded.session)}


async def detect(sid: int, png: bytes, repeats: int) -> tuple[dict[str, Any], np.ndarray]:
    """Text detection on a PNG: boxes, latency and the probability map (cropped to the image)."""
    loaded = SESSIONS[sid]
    img = read_png(png)
    x = ppocr_preprocess(img)
    name = loaded.session.get_inputs()[0].name
    outputs, times = await timed_runs(loaded.session, {name: x}, repeats)
    h, w = img.shape[:2]
    prob = np.ascontiguousarray(np.asarray(outputs[0], dtype=np.float32)[0, 0, :h, :w])
    boxes = detect_boxes(prob, (h, w))
    return {"id": sid, "width": w, "height": h, "boxes": boxes, "times_ms": times, "latency": _stats(times),
            "input_shape": list(x.shape), "providers": short_names(loaded.session.get_providers()),
            "gpu": gpu_work(loaded.session)}, prob


def release(sid: int) -> None:
    SESSIONS.pop(sid, None)


# ------------------------------------------------- Pyodide (worker) glue
def _to_js(obj: Any) -> Any:
    from js import Object  # type: ignore[import-not-found]
    from pyodide.ffi import to_js  # type: ignore[import-not-found]
    return to_js(obj, dict_converter=Object.fromEntries)


def _clean(obj: Any) -> Any:
    """JSON-like data with NaN/inf as None (JS would get them fine, but the page prints them as '-')."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


async def api_init_webgpu(msg: Any) -> Any:
    return _to_js(await init_webgpu(float(msg.to_py()["timeout_s"])))


async def api_load(msg: Any) -> Any:
    m = msg.to_py()
    return _to_js(_clean(load(bytes(m["bytes"]), m["name"], list(m["providers"]), m.get("adapter_problem"),
                              m.get("provider_options"), bool(m.get("describe", True)))))


async def api_describe(msg: Any) -> Any:
    return _to_js(_clean(describe_session(int(msg.to_py()["id"]))))


async def api_run(msg: Any) -> Any:
    m = msg.to_py()
    npy = {k: bytes(v) for k, v in (m.get("npy") or {}).items()}
    shapes = {k: [int(d) for d in v] for k, v in (m.get("shapes") or {}).items()}
    result = await run(int(m["id"]), shapes, npy, int(m.get("repeats", 1)))
    files = {k: memoryview(v) for k, v in result.pop("npy").items()}  # -> Uint8Arrays
    out = _to_js(_clean(result))
    out.npy = _to_js(files)
    return out


async def api_detect(msg: Any) -> Any:
    from pyodide.ffi import to_js  # type: ignore[import-not-found]
    m = msg.to_py()
    result, prob = await detect(int(m["id"]), bytes(m["png"]), int(m.get("repeats", 1)))
    out = _to_js(_clean(result))
    out.prob = to_js(memoryview(prob.ravel()))  # a Float32Array, moved to the page without a JSON detour
    return out


async def api_release(msg: Any) -> Any:
    release(int(msg.to_py()["id"]))
    return None
