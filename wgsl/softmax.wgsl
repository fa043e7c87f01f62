// softmax.wgsl: Softmax / LogSoftmax over one axis, the input viewed as [outer, L, inner].
//
// Row r = (o, i) reads elements base + j * inner, base = o * L * inner + i: the
// last axis is inner = 1, any other axis is a strided row (no transpose).
//   serial: one invocation per row (CPU emulations; long rows on few rows are slow here);
//   wg:     one workgroup per row, WG invocations share the row, tree reductions in workgroup memory
//           (wg_reduce, from workgroup_reduce.wgsl).
// Storage T is f32 or f16; the arithmetic is f32.
// Uniforms (named: norm_kernels.py's SOFTMAX): rows, L (the softmax axis), inner (its stride).
{{UNIFORMS}}
const LOG: bool = {{LOG}};
@group(0) @binding(1) var<storage, read> X: array<{{T}}>;
@group(0) @binding(2) var<storage, read_write> Y: array<{{T}}>;

fn x_at(at: u32) -> f32 { return f32(X[at]); }

fn row_base(r: u32) -> u32 {
    let L = pu(sm_length);
    let inner = pu(sm_inner);
    return (r / inner) * L * inner + r % inner;
}

fn write_row(base: u32, j0: u32, step: u32, m: f32, s: f32) {
    let L = pu(sm_length);
    let inner = pu(sm_inner);
    let ls = log(s);
    let inv = 1.0 / s;
    for (var j = j0; j < L; j += step) {
        let at = base + j * inner;
        if (LOG) {
            Y[at] = {{T}}(x_at(at) - m - ls);
        } else {
            Y[at] = {{T}}(exp(x_at(at) - m) * inv);
        }
    }
}

@compute @workgroup_size({{WG}})
fn serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_id(gid, nwg);
    if (r >= pu(sm_rows)) { return; }
    let L = pu(sm_length);
    let inner = pu(sm_inner);
    let base = row_base(r);
    var m = -wi_inf();
    for (var j = 0u; j < L; j++) { m = max(m, x_at(base + j * inner)); }
    var s = 0.0;
    for (var j = 0u; j < L; j++) { s += exp(x_at(base + j * inner) - m); }
    write_row(base, 0u, 1u, m, s);
}

@compute @workgroup_size({{WG}})
fn wg(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
      @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= pu(sm_rows)) { return; }
    let L = pu(sm_length);
    let inner = pu(sm_inner);
    let base = row_base(r);
    var m = -wi_inf();
    for (var j = lid; j < L; j += {{WG}}u) { m = max(m, x_at(base + j * inner)); }
    m = wg_reduce(m, lid, true);
    var s = 0.0;
    for (var j = lid; j < L; j += {{WG}}u) { s += exp(x_at(base + j * inner) - m); }
    s = wg_reduce(s, lid, false);
    write_row(base, lid, {{WG}}u, m, s);
}
