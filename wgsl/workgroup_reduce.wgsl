// workgroup_reduce.wgsl: a tree reduction over the {{WG}} invocations (a power of two) of a workgroup,
// for the one-workgroup-per-row schedules. Included by softmax.wgsl and layernorm.wgsl (norm_kernels.py).
var<workgroup> red: array<f32, {{WG}}>;

// The sum of `v` over the workgroup (with is_max, its maximum), returned to every invocation. Every
// invocation must call it: it synchronises the workgroup.
fn wg_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = {{WG}}u / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), is_max);
        }
        workgroupBarrier();
    }
    let out = red[0];
    workgroupBarrier();
    return out;
}
