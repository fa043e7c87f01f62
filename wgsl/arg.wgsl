// arg.wgsl: ArgMax/ArgMin along one axis, X viewed as [outer, L, inner], one invocation per output.
// The first extreme wins (the last one with select_last_index: BETTER uses >= / <=).
// Uniforms (named: norm_kernels.py's ARG): n outputs, length (L), inner.
{{UNIFORMS}}
@group(0) @binding(1) var<storage, read> X: array<{{T}}>;
@group(0) @binding(2) var<storage, read_write> Y: array<i32>;

@compute @workgroup_size({{WG}})
fn arg(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = linear_id(gid, nwg);
    if (o >= pu(ag_n)) { return; }
    let L = pu(ag_length);
    let inner = pu(ag_inner);
    let base = (o / inner) * L * inner + o % inner;
    var best = f32(X[base]);
    var at = 0u;
    for (var j = 1u; j < L; j++) {
        let v = f32(X[base + j * inner]);
        if ({{BETTER}}) { best = v; at = j; }
    }
    Y[o] = i32(at);
}
