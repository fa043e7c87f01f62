// resize.wgsl: Resize / Upsample as a separable gather over at most two resized axes.
//
// The per-axis source indices and weights are the CPU op's own tables (ops/resize.py), computed on
// the host once per size and uploaded: every coordinate mode, rounding mode, cubic coefficient and
// antialias filter behaves exactly as on the CPU. Entry 0 of both tables is a unit tap (index 0,
// weight 1), used for the second axis when only one is resized. Nearest moves raw 32-bit words
// (any dtype); linear and cubic interpolate f32.
// Uniforms (named: layout_kernels.py's `resize_uniforms`): n, axis1, taps1, table1 (offset), axis2
// (R = none), taps2, table2, stride1 and stride2 (input strides of the two axes), out_shape (R),
// in_strides (R), fill (tf_crop_and_resize's extrapolation value: the data's bits, or f32 for float
// words): output positions whose source lies outside the crop have index -1 in their first tap.
{{UNIFORMS}}
const R: u32 = {{RANK}}u;
const NEAREST: bool = {{NEAREST}};
const EXTRAP: bool = {{EXTRAP}};
{{DECLS}}

fn weight(at: u32) -> f32 { return {{WEIGHT_AT}}; }

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(rs_n)) { return; }
    let a1 = pu(rs_axis1);
    let a2 = pu(rs_axis2);
    var rem = i;
    var base = 0u;
    var j1 = 0u;
    var j2 = 0u;
    for (var d = 0u; d < R; d++) {
        let k = R - 1u - d;
        let c = rem % pu(rs_out_shape + k);
        rem = rem / pu(rs_out_shape + k);
        if (k == a1) { j1 = c; } else if (k == a2) { j2 = c; } else { base += c * pu(rs_in_strides + k); }
    }
    let t1 = pu(rs_taps1);
    let t2 = pu(rs_taps2);
    let o1 = pu(rs_table1) + j1 * t1;
    let o2 = pu(rs_table2) + j2 * t2;
    if (EXTRAP && (Idx[o1] < 0 || Idx[o2] < 0)) {
        Y[i] = {{FILL}};
        return;
    }
    if (NEAREST) {
        Y[i] = X[base + u32(Idx[o1]) * pu(rs_stride1) + u32(Idx[o2]) * pu(rs_stride2)];
        return;
    }
    var acc = 0.0;
    for (var u = 0u; u < t1; u++) {
        let r1 = base + u32(Idx[o1 + u]) * pu(rs_stride1);
        let w1 = weight(o1 + u);
        for (var v = 0u; v < t2; v++) {
            acc += w1 * weight(o2 + v) * f32(X[r1 + u32(Idx[o2 + v]) * pu(rs_stride2)]);
        }
    }
    Y[i] = {{STORE}};
}
