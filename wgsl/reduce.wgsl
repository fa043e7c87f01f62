// reduce.wgsl: Reduce* over any set of axes, one invocation per output element.
//
// reduce: the output element's base offset comes from the kept dims, the loop walks the reduced
// dims (both merged where contiguous). The accumulation is the template's INIT/UPDATE/FINAL:
// sum, mean, max, min, prod, L1, L2, sum of squares, log-sum, log-sum-exp (a max pass first).
// Storage T is f32 or f16; accumulation is f32.
// The reduced elements are walked in passes of at most norm_kernels.py's ELEMENTS_PER_PASS (one dispatch
// each; log-sum-exp's max passes come first): software Vulkan (llvmpipe) silently ends an invocation's
// loops after 65535 iterations in all, and any driver's watchdog bounds an invocation's time. Between
// passes each output's running state (m, acc) waits in Part, 2 words per output.
// Uniforms (named: norm_kernels.py's `reduce_uniforms`): n outputs, count (reduced), this pass's
// max_begin/max_end (log-sum-exp's max) and sum_begin/sum_end (the accumulation) over the reduced
// elements, first and last (1 when this pass starts or ends the reduction, else 0), kept_dims and
// kept_strides (in X, K each), red_dims and red_strides (R each).
{{UNIFORMS}}
const K: u32 = {{KEPT}}u;
const R: u32 = {{RED}}u;
const LSE: bool = {{LSE}};
@group(0) @binding(1) var<storage, read> X: array<{{T}}>;
@group(0) @binding(2) var<storage, read_write> Y: array<{{T}}>;
@group(0) @binding(3) var<storage, read_write> Part: array<f32>;

fn reduced_offset(t: u32) -> u32 {
    var rem = t;
    var off = 0u;
    for (var j = 0u; j < R; j++) {
        let k = R - 1u - j;
        let dim = pu(rd_red_dims + k);
        off += (rem % dim) * pu(rd_red_strides + k);
        rem = rem / dim;
    }
    return off;
}

fn kept_offset(o: u32) -> u32 {
    var rem = o;
    var off = 0u;
    for (var j = 0u; j < K; j++) {
        let k = K - 1u - j;
        let dim = pu(rd_kept_dims + k);
        off += (rem % dim) * pu(rd_kept_strides + k);
        rem = rem / dim;
    }
    return off;
}

@compute @workgroup_size({{WG}})
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = linear_id(gid, nwg);
    if (o >= pu(rd_n)) { return; }
    let count = pu(rd_count);
    let base = kept_offset(o);
    var m = 0.0;
    var acc: f32 = {{INIT}};
    if (pu(rd_first) == 0u) {
        m = Part[2u * o];
        acc = Part[2u * o + 1u];
    } else if (LSE) {
        m = -wi_inf();
    }
    if (LSE) {
        for (var t = pu(rd_max_begin); t < pu(rd_max_end); t++) { m = max(m, f32(X[base + reduced_offset(t)])); }
        if (pu(rd_sum_begin) == 0u && wi_isinf(m)) { m = 0.0; }
    }
    for (var t = pu(rd_sum_begin); t < pu(rd_sum_end); t++) {
        let v = f32(X[base + reduced_offset(t)]) - m;
        acc = {{UPDATE}};
    }
    if (pu(rd_last) == 0u) {
        Part[2u * o] = m;
        Part[2u * o + 1u] = acc;
        return;
    }
    Y[o] = {{T}}({{FINAL}});
}
