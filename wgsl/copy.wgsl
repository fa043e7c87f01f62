// copy.wgsl: data movement on raw words W: u32 for every 32-bit storage (f32, i32, bool-as-u32), f16.
//
// One strided copy serves Transpose (permuted source strides), Expand (zero
// strides), Slice (start offset, strides times steps, negative allowed),
// Concat and Split (a region of the destination per input / output). Gather,
// Tile and Pad have their own entry points. R is the (merged) rank.
// The words of all three entry points are named (layout_kernels.py's `copy_uniforms`).
{{UNIFORMS}}
const R: u32 = {{RANK}}u;
@group(0) @binding(1) var<storage, read> src: array<{{W}}>;
@group(0) @binding(2) var<storage, read_write> dst: array<{{W}}>;

// strided: words (cs_) n, src_offset (i32), dst_offset, shape, src_strides (i32), dst_strides.
@compute @workgroup_size({{WG}})
fn strided(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(cs_n)) { return; }
    var rem = i;
    var s = pi(cs_src_offset);
    var d = pu(cs_dst_offset);
    for (var j = 0u; j < R; j++) {
        let k = R - 1u - j;
        let dim = pu(cs_shape + k);
        let c = rem % dim;
        rem = rem / dim;
        s += i32(c) * pi(cs_src_strides + k);
        d += c * pu(cs_dst_strides + k);
    }
    dst[d] = src[u32(s)];
}

// tile: words (ct_) n, out_shape, in_shape, in_strides.
@compute @workgroup_size({{WG}})
fn tile(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(ct_n)) { return; }
    var rem = i;
    var s = 0u;
    for (var j = 0u; j < R; j++) {
        let k = R - 1u - j;
        let c = rem % pu(ct_out_shape + k);
        rem = rem / pu(ct_out_shape + k);
        s += (c % pu(ct_in_shape + k)) * pu(ct_in_strides + k);
    }
    dst[i] = src[s];
}

// pad: words (cp_) n, mode (0 constant, 1 reflect, 2 edge, 3 wrap), value (the constant's bits),
// out_shape, in_shape, begin (pads, i32).
@compute @workgroup_size({{WG}})
fn pad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(cp_n)) { return; }
    let mode = pu(cp_mode);
    var rem = i;
    var s = 0u;
    var stride = 1u;
    var outside = false;
    for (var j = 0u; j < R; j++) {
        let k = R - 1u - j;
        let c = i32(rem % pu(cp_out_shape + k));
        rem = rem / pu(cp_out_shape + k);
        let n = i32(pu(cp_in_shape + k));
        var p = c - pi(cp_begin + k);
        if (p < 0 || p >= n) {
            if (mode == 0u) {
                outside = true;
            } else if (mode == 1u) {
                let period = max(2 * (n - 1), 1);
                var q = p % period;
                if (q < 0) { q += period; }
                p = select(q, period - q, q >= n);
            } else if (mode == 2u) {
                p = clamp(p, 0, n - 1);
            } else {
                p = p % n;
                if (p < 0) { p += n; }
            }
        }
        s += u32(p) * stride;
        stride *= u32(n);
    }
    dst[i] = select(src[s], {{PAD_VALUE}}, outside);
}
