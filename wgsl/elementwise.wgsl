// elementwise.wgsl: y[i] = EXPR(inputs), numpy broadcasting, one invocation per output element.
//
// Generated around this file (devices/gpu/elementwise_kernels.py): the input
// bindings (INPUTS: input k at binding k+1), one load per input (LOADS: at i
// when the input has the output's shape, at 0 for a single element, else at
// bcast_offset), and the stored expression (STORE, from the `wgsl` column of
// ops/elementwise.py's tables).
//
// Uniforms (named: elementwise_kernels.py's `uniforms_of`): n = output
// elements, the output shape (R words, adjacent dims merged where every input
// allows), then R strides per broadcast input (0 along broadcast dims), the
// load naming where its own start.
{{UNIFORMS}}
const R: u32 = {{RANK}}u;
{{INPUTS}}
@group(0) @binding({{OUT}}) var<storage, read_write> y: array<{{OUT_T}}>;

fn bcast_offset(i: u32, base: u32) -> u32 {
    var rem = i;
    var off = 0u;
    for (var d = 0u; d < R; d++) {
        let k = R - 1u - d;
        let dim = pu(ew_shape + k);
        off += (rem % dim) * pu(base + k);
        rem = rem / dim;
    }
    return off;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= pu(ew_n)) { return; }
{{LOADS}}
    y[i] = {{STORE}};
}
