// gather.wgsl: Gather along one axis, data viewed as [outer, axis, inner].
//
// Params: [0] n = output elements, [1] inner, [2] number of indices, [3] axis length.
// Indices are i32 (int64 narrowed at upload); negative ones count from the end.
// Out-of-range indices are clamped (ONNX calls them an error; a GPU read must stay in bounds).
const R: u32 = {{RANK}}u;
@group(0) @binding(1) var<storage, read> data: array<{{W}}>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read_write> y: array<{{W}}>;

@compute @workgroup_size({{WG}})
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(0u)) { return; }
    let inner = pu(1u);
    let nidx = pu(2u);
    let axis = pu(3u);
    let o = i / (nidx * inner);
    let j = (i / inner) % nidx;
    let r = i % inner;
    var ix = indices[j];
    if (ix < 0) { ix += i32(axis); }
    let a = u32(clamp(ix, 0, i32(axis) - 1));
    y[i] = data[(o * axis + a) * inner + r];
}

// gather_elements: y[c] = data[c with c[axis] replaced by indices[c]], over the indices' shape.
// Params: [0] n, [1] axis, [2] axis length in data, [3, 3+R) indices shape, [3+R, 3+2R) data strides.
@compute @workgroup_size({{WG}})
fn gather_elements(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(0u)) { return; }
    let axis = pu(1u);
    let len = pu(2u);
    var ix = indices[i];
    if (ix < 0) { ix += i32(len); }
    let a = u32(clamp(ix, 0, i32(len) - 1));
    var rem = i;
    var s = 0u;
    for (var j = 0u; j < R; j++) {
        let k = R - 1u - j;
        let c = rem % pu(3u + k);
        rem = rem / pu(3u + k);
        s += select(c, a, k == axis) * pu(3u + R + k);
    }
    y[i] = data[s];
}
