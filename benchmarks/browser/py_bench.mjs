// The Python half of webinfer's timing, shared by the page (bench.mjs) and Node.js (bench_node.mjs), so both
// time exactly the same calls. Evaluating it gives `bench(arg)`: arg holds the model bytes, the feeds (raw
// bytes, dtype, shape), runs, warmup and providers; it returns load, first-run and per-run times in ms.

export const PY_BENCH = `
import time
import numpy as np
import webinfer
from webinfer.providers import short_names

async def bench(arg):
    from js import Object
    from pyodide.ffi import to_js
    m = arg.to_py()
    t0 = time.perf_counter()
    if "webgpu" in m["providers"]:
        try:
            await webinfer.init_webgpu(timeout_s=4)
        except webinfer.DeviceError:
            pass  # the session falls back to the cpu; the benchmark reports the providers it got
    device_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    sess = webinfer.InferenceSession(bytes(m["model"]), providers=list(m["providers"]))
    load_ms = (time.perf_counter() - t0) * 1e3
    feed = {f["name"]: np.frombuffer(bytes(f["data"]), dtype=f["dtype"]).reshape(f["shape"]) for f in m["feeds"]}
    t0 = time.perf_counter()
    outs = await sess.run_async(None, feed)
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(int(m["warmup"])):
        await sess.run_async(None, feed)
    times = []
    for _ in range(int(m["runs"])):
        t0 = time.perf_counter()
        await sess.run_async(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    out0 = np.ascontiguousarray(outs[0], dtype=np.float32)
    stats = sess.device_stats()
    result = {"device_ms": device_ms, "load_ms": load_ms, "first_ms": first_ms, "times_ms": times,
              "providers": short_names(sess.get_providers()), "nodes_gpu": stats["nodes_on_gpu"],
              "nodes_total": stats["nodes_total"], "dispatches": stats["dispatches_per_run"],
              "output": to_js(memoryview(out0.ravel()))}
    return to_js(result, dict_converter=Object.fromEntries)
bench
`;
