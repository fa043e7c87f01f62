// copy.wgsl: data movement on raw words W: u32 for every 32-bit storage (f32, i32, bool-as-u32), f16.
//
// One strided copy serves Transpose (permuted source strides), Expand (zero
// strides), Slice (start offset, strides times steps, negative allowed),
// Concat and Split (a region of the destination per input / output). Gather,
// Tile and Pad have their own entry points. R is the (merged) rank.
const R: u32 = {{RANK}}u;
@group(0) @binding(1) var<storage, read> src: array<{{W}}>;
@group(0) @binding(2) var<storage, read_write> dst: array<{{W}}>;

// strided: params [0] n, [1] src offset (i32), [2] dst offset, [3, 3+R) shape,
// [3+R, 3+2R) source strides (i32), [3+2R, 3+3R) destination strides.
@compute @workgroup_size({{WG}})
fn strided(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(0u)) { return; }
    var rem = i;
    var s = pi(1u);
    var d = pu(2u);
    for (var j = 0u; j < R; j++) {
        let k = R - 1u - j;
        let dim = pu(3u + k);
        let c = rem % dim;
        rem = rem / dim;
        s += i32(c) * pi(3u + R + k);
        d += c * pu(3u + 2u * R + k);
    }
    dst[d] = src[u32(s)];
}

// tile: params [0] n, [1, 1+R) output shape, [1+R, 1+2R) input shape, [1+2R, 1+3R) input strides.
@compute @workgroup_size({{WG}})
fn tile(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(0u)) { return; }
    var rem = i;
    var s = 0u;
    for (var j = 0u; j < R; j++) {
        let k = R - 1u - j;
        let c = rem % pu(1u + k);
        rem = rem / pu(1u + k);
        s += (c % pu(1u + R + k)) * pu(1u + 2u * R + k);
    }
    dst[i] = src[s];
}

// pad: params [0] n, [1] mode (0 constant, 1 reflect, 2 edge, 3 wrap), [2] constant value bits,
// [3, 3+R) output shape, [3+R, 3+2R) input shape, [3+2R, 3+3R) begin pads (i32).
@compute @workgroup_size({{WG}})
fn pad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(0u)) { return; }
    let mode = pu(1u);
    var rem = i;
    var s = 0u;
    var stride = 1u;
    var outside = false;
    for (var j = 0u; j < R; j++) {
        let k = R - 1u - j;
        let c = i32(rem % pu(3u + k));
        rem = rem / pu(3u + k);
        let n = i32(pu(3u + R + k));
        var p = c - pi(3u + 2u * R + k);
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
