// attention.wgsl: fused scaled-dot-product attention, softmax(Q.K^T * scale + mask) . V.
//
// One invocation per (batch, query head, query row). The query row and the
// output accumulator live in registers (D and DV padded to vec4s); keys are
// visited in tiles of TILE with an online softmax: one rescale of the
// accumulator per tile, so the [Sq, Skv] score matrix never exists in memory.
// Heads are addressed through strides, so [B, S, H*D] (exporters' layout,
// webinfer.MultiHeadAttention, 3-D ONNX Attention) and [B, H, S, D] (4-D)
// need no transposes; grouped-query attention maps query head h to key/value
// head h / GROUP. Which keys a row sees (mask, causal, windows, per-batch key
// lengths) is attention_mask.wgsl's. A row with every key masked outputs zeros.
// Storage T is f32 or f16; the arithmetic is f32. Bindings (DECLS): Q, K, V,
// [mask], [nonpad lengths], Y.
//
// Uniforms (named: attention_kernels.py's ATTENTION): B, Hq, Sq, Skv, group (query heads per kv
// head), scale (f32), softcap (f32, 0 = off), causal_offset (i32: query i sees keys j <= i + offset),
// the Q, K, V and Y strides (batch, head, row), the mask strides (batch, head, row, key), the mask
// length along keys, the left and right windows (i32, -1 = none).
{{UNIFORMS}}
const D: u32 = {{D}}u;
const DV: u32 = {{DV}}u;
const D4: u32 = (D + 3u) / 4u;
const DV4: u32 = (DV + 3u) / 4u;
const TILE: u32 = 16u;
const SOFTCAP: bool = {{SOFTCAP}};
{{DECLS}}

fn load_q(base: u32, c: u32) -> vec4<f32> {
    let d = 4u * c;
    return vec4<f32>(f32(Q[base + d]), select(0.0, f32(Q[base + min(d + 1u, D - 1u)]), d + 1u < D),
                     select(0.0, f32(Q[base + min(d + 2u, D - 1u)]), d + 2u < D),
                     select(0.0, f32(Q[base + min(d + 3u, D - 1u)]), d + 3u < D));
}

fn load_k(base: u32, c: u32) -> vec4<f32> {
    let d = 4u * c;
    return vec4<f32>(f32(K[base + d]), select(0.0, f32(K[base + min(d + 1u, D - 1u)]), d + 1u < D),
                     select(0.0, f32(K[base + min(d + 2u, D - 1u)]), d + 2u < D),
                     select(0.0, f32(K[base + min(d + 3u, D - 1u)]), d + 3u < D));
}

fn load_v(base: u32, c: u32) -> vec4<f32> {
    let d = 4u * c;
    return vec4<f32>(f32(V[base + d]), select(0.0, f32(V[base + min(d + 1u, DV - 1u)]), d + 1u < DV),
                     select(0.0, f32(V[base + min(d + 2u, DV - 1u)]), d + 2u < DV),
                     select(0.0, f32(V[base + min(d + 3u, DV - 1u)]), d + 3u < DV));
}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_id(gid, nwg);
    let Hq = pu(at_Hq);
    let Sq = pu(at_Sq);
    let Skv = pu(at_Skv);
    if (t >= pu(at_B) * Hq * Sq) { return; }
    let i = t % Sq;
    let h = (t / Sq) % Hq;
    let b = t / (Sq * Hq);
    let hk = h / pu(at_group);
    let scale = pf(at_scale);
    let cap = pf(at_softcap);
    let qb = b * pu(at_q_strides) + h * pu(at_q_strides + 1u) + i * pu(at_q_strides + 2u);
    let kb = b * pu(at_k_strides) + hk * pu(at_k_strides + 1u);
    let vb = b * pu(at_v_strides) + hk * pu(at_v_strides + 1u);
    let mb = b * pu(at_mask_strides) + h * pu(at_mask_strides + 1u) + i * pu(at_mask_strides + 2u);
    let last = key_end(b, i);

    var q: array<vec4<f32>, D4>;
    for (var c = 0u; c < D4; c++) { q[c] = load_q(qb, c) * scale; }
    var acc: array<vec4<f32>, DV4>;
    for (var c = 0u; c < DV4; c++) { acc[c] = vec4<f32>(0.0); }
    var m = -wi_inf();
    var l = 0.0;
    var s: array<f32, TILE>;

    for (var j0 = 0u; j0 < last; j0 += TILE) {
        let n = min(TILE, last - j0);
        var tmax = -wi_inf();
        for (var u = 0u; u < n; u++) {
            let j = j0 + u;
            let kr = kb + j * pu(at_k_strides + 2u);
            var dot4 = vec4<f32>(0.0);
            for (var c = 0u; c < D4; c++) { dot4 += q[c] * load_k(kr, c); }
            var x = dot4.x + dot4.y + dot4.z + dot4.w;
            if (SOFTCAP) { x = cap * wi_tanh(x / cap); }
            x += key_bias(b, mb, i, j);
            s[u] = x;
            tmax = max(tmax, x);
        }
        let mnew = max(m, tmax);
        if (mnew == -wi_inf()) { continue; }
        let corr = exp(m - mnew);
        l *= corr;
        for (var c = 0u; c < DV4; c++) { acc[c] *= corr; }
        for (var u = 0u; u < n; u++) {
            let p = exp(s[u] - mnew);
            l += p;
            let vr = vb + (j0 + u) * pu(at_v_strides + 2u);
            for (var c = 0u; c < DV4; c++) { acc[c] += p * load_v(vr, c); }
        }
        m = mnew;
    }
    let inv = select(0.0, 1.0 / l, l > 0.0);
    let yb = b * pu(at_y_strides) + h * pu(at_y_strides + 1u) + i * pu(at_y_strides + 2u);
    for (var c = 0u; c < DV4; c++) {
        let r = acc[c] * inv;
        let d = 4u * c;
        Y[yb + d] = {{T}}(r.x);
        if (d + 1u < DV) { Y[yb + d + 1u] = {{T}}(r.y); }
        if (d + 2u < DV) { Y[yb + d + 2u] = {{T}}(r.z); }
        if (d + 3u < DV) { Y[yb + d + 3u] = {{T}}(r.w); }
    }
}
