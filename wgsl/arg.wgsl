// arg.wgsl: ArgMax/ArgMin along one axis, X viewed as [outer, L, inner], one invocation per output.
// The first extreme wins (the last one with select_last_index: BETTER uses >= / <=).
// Params: [0] n outputs, [1] L, [2] inner.
@group(0) @binding(1) var<storage, read> X: array<{{T}}>;
@group(0) @binding(2) var<storage, read_write> Y: array<i32>;

@compute @workgroup_size({{WG}})
fn arg(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = linear_id(gid, nwg);
    if (o >= pu(0u)) { return; }
    let L = pu(1u);
    let inner = pu(2u);
    let base = (o / inner) * L * inner + o % inner;
    var best = f32(X[base]);
    var at = 0u;
    for (var j = 1u; j < L; j++) {
        let v = f32(X[base + j * inner]);
        if ({{BETTER}}) { best = v; at = j; }
    }
    Y[o] = i32(at);
}
