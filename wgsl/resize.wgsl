// resize.wgsl: Resize / Upsample as a separable gather over at most two resized axes.
//
// The per-axis source indices and weights are the CPU op's own tables (ops/resize.py), computed on
// the host once per size and uploaded: every coordinate mode, rounding mode, cubic coefficient and
// antialias filter behaves exactly as on the CPU. Entry 0 of both tables is a unit tap (index 0,
// weight 1), used for the second axis when only one is resized. Nearest moves raw 32-bit words
// (any dtype); linear and cubic interpolate f32.
// Params: [0] n, [1] axis 1, [2] taps 1, [3] table offset 1, [4] axis 2 (R = none), [5] taps 2,
// [6] table offset 2, [7] input stride of axis 1, [8] input stride of axis 2,
// [9, 9+R) output shape, [9+R, 9+2R) input strides, [9+2R] tf_crop_and_resize's extrapolation value
// (the data's bits, or f32 for float words): output positions whose source lies outside the crop
// have index -1 in their first tap.
const R: u32 = {{RANK}}u;
const NEAREST: bool = {{NEAREST}};
const EXTRAP: bool = {{EXTRAP}};
{{DECLS}}

fn weight(at: u32) -> f32 { return {{WEIGHT_AT}}; }

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(0u)) { return; }
    let a1 = pu(1u);
    let a2 = pu(4u);
    var rem = i;
    var base = 0u;
    var j1 = 0u;
    var j2 = 0u;
    for (var d = 0u; d < R; d++) {
        let k = R - 1u - d;
        let c = rem % pu(9u + k);
        rem = rem / pu(9u + k);
        if (k == a1) { j1 = c; } else if (k == a2) { j2 = c; } else { base += c * pu(9u + R + k); }
    }
    let t1 = pu(2u);
    let t2 = pu(5u);
    let o1 = pu(3u) + j1 * t1;
    let o2 = pu(6u) + j2 * t2;
    if (EXTRAP && (Idx[o1] < 0 || Idx[o2] < 0)) {
        Y[i] = {{FILL}};
        return;
    }
    if (NEAREST) {
        Y[i] = X[base + u32(Idx[o1]) * pu(7u) + u32(Idx[o2]) * pu(8u)];
        return;
    }
    var acc = 0.0;
    for (var u = 0u; u < t1; u++) {
        let r1 = base + u32(Idx[o1 + u]) * pu(7u);
        let w1 = weight(o1 + u);
        for (var v = 0u; v < t2; v++) {
            acc += w1 * weight(o2 + v) * f32(X[r1 + u32(Idx[o2 + v]) * pu(8u)]);
        }
    }
    Y[i] = {{STORE}};
}
