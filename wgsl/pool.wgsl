// pool.wgsl: MaxPool / AveragePool over NC + R spatial dims (1-D, 2-D, 3-D), one invocation per output.
//
// Windows start at o * stride - pad_begin; taps outside the input are skipped. AveragePool
// divides by the taps inside the counted region: the input, or with count_include_pad the input
// plus its explicit pads (never the ceil-mode extension), as ops/pool.py does. MaxPool can also
// write the flat index of each maximum (the first one on ties), row-major or, with COLUMN, column-major.
// Storage T is f32 or f16; arithmetic in f32.
// A window is walked in passes of at most conv_kernels.py's TAPS_PER_PASS taps (one dispatch each):
// software Vulkan (llvmpipe) silently ends an invocation's loops after 65535 iterations in all, and
// any driver's watchdog bounds an invocation's time. Between passes each output's running state
// (acc, count, best as bits) waits in Part, 3 words per output.
// Uniforms (named: conv_kernels.py's `pool_uniforms`): planes (N*C), cells (output, per plane),
// in_cells (input, per plane), tap_begin and tap_end (this pass's taps of the window), first and
// last (1 when this pass starts or ends the window, else 0), then `dims`: per spatial dim d, 8 words from
// dims + 8d: input size, output size, kernel, stride, dilation, pad begin (i32), counted low (i32),
// counted high (i32).
{{UNIFORMS}}
const R: u32 = {{RANK}}u;
const COLUMN: bool = {{COLUMN}};
{{DECLS}}

fn dim(d: u32, k: u32) -> u32 { return pu(pl_dims + 8u * d + k); }
fn dimi(d: u32, k: u32) -> i32 { return pi(pl_dims + 8u * d + k); }

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_id(gid, nwg);
    let P = pu(pl_cells);
    if (t >= pu(pl_planes) * P) { return; }
    let plane = t / P;
    let base = plane * pu(pl_in_cells);
    var acc = {{INIT}};
    var best = 0u;
    var count = 0.0;
    if (pu(pl_first) == 0u) {
        acc = Part[3u * t];
        count = Part[3u * t + 1u];
        best = bitcast<u32>(Part[3u * t + 2u]);
    }
    for (var tap = pu(pl_tap_begin); tap < pu(pl_tap_end); tap++) {
        var orem = t % P;
        var krem = tap;
        var at = 0u;
        var atc = 0u;
        var inside = true;
        var counted = true;
        for (var j = 0u; j < R; j++) {
            let d = R - 1u - j;
            let o = i32(orem % dim(d, 1u));
            orem = orem / dim(d, 1u);
            let k = i32(krem % dim(d, 2u));
            krem = krem / dim(d, 2u);
            let x = o * dimi(d, 3u) - dimi(d, 5u) + k * dimi(d, 4u);
            counted = counted && x >= dimi(d, 6u) && x < dimi(d, 7u);
            inside = inside && x >= 0 && x < dimi(d, 0u);
            at = at + u32(max(x, 0)) * stride_of(d);
            atc = atc + u32(max(x, 0)) * column_stride_of(d);
        }
        if (counted) { count += 1.0; }
        if (!inside) { continue; }
        let v = f32(X[base + at]);
        {{UPDATE}}
    }
    if (pu(pl_last) == 0u) {
        Part[3u * t] = acc;
        Part[3u * t + 1u] = count;
        Part[3u * t + 2u] = bitcast<f32>(best);
        return;
    }
    Y[t] = {{T}}({{FINAL}});
{{WRITE_INDEX}}
}

// Elements between consecutive positions along spatial dim d, column-major within a plane.
fn column_stride_of(d: u32) -> u32 {
    var s = 1u;
    for (var e = 0u; e < d; e++) { s *= dim(e, 0u); }
    return s;
}

// Elements between consecutive positions along spatial dim d (row-major within a plane).
fn stride_of(d: u32) -> u32 {
    var s = 1u;
    for (var e = d + 1u; e < R; e++) { s *= dim(e, 0u); }
    return s;
}
