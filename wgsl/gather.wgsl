// gather.wgsl: Gather along one axis, data viewed as [outer, axis, inner].
//
// Words (gt_): n = output elements, inner, count (of indices), axis (length); gather_elements' (ge_)
// below; both named by layout_kernels.py's `gather_uniforms`.
// Indices are i32 (int64 narrowed at upload); negative ones count from the end.
// Out-of-range indices are clamped (ONNX calls them an error; a GPU read must stay in bounds).
{{UNIFORMS}}
const R: u32 = {{RANK}}u;
@group(0) @binding(1) var<storage, read> data: array<{{W}}>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read_write> y: array<{{W}}>;

@compute @workgroup_size({{WG}})
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(gt_n)) { return; }
    let inner = pu(gt_inner);
    let nidx = pu(gt_count);
    let axis = pu(gt_axis);
    let o = i / (nidx * inner);
    let j = (i / inner) % nidx;
    let r = i % inner;
    var ix = indices[j];
    if (ix < 0) { ix += i32(axis); }
    let a = u32(clamp(ix, 0, i32(axis) - 1));
    y[i] = data[(o * axis + a) * inner + r];
}

// gather_elements: y[c] = data[c with c[axis] replaced by indices[c]], over the indices' shape.
// Words (ge_): n, axis, axis_length (in data), indices_shape, data_strides.
@compute @workgroup_size({{WG}})
fn gather_elements(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(ge_n)) { return; }
    let axis = pu(ge_axis);
    let len = pu(ge_axis_length);
    var ix = indices[i];
    if (ix < 0) { ix += i32(len); }
    let a = u32(clamp(ix, 0, i32(len) - 1));
    var rem = i;
    var s = 0u;
    for (var j = 0u; j < R; j++) {
        let k = R - 1u - j;
        let c = rem % pu(ge_indices_shape + k);
        rem = rem / pu(ge_indices_shape + k);
        s += select(c, a, k == axis) * pu(ge_data_strides + k);
    }
    y[i] = data[s];
}
