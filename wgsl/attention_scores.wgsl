// attention_scores.wgsl: ONNX Attention's qk_matmul_output, one invocation per (batch, head, query row).
//
// The fused kernel never materialises the score matrix; when a model asks for it, this writes
// [B, Hq, Sq, Skv] at the requested stage (MODE): 0 = Q.K^T * scale, 1 = after softcap,
// 2 = after the mask (attention_mask.wgsl; hidden keys are -inf), 3 = the softmax
// probabilities (zeros for a row with every key hidden). The same named uniforms as attention.wgsl.
// Bindings (DECLS): Q, K, [mask], [nonpad lengths], S.
{{UNIFORMS}}
const D: u32 = {{D}}u;
const MODE: u32 = {{MODE}}u;
const SOFTCAP: bool = {{SOFTCAP}};
{{DECLS}}

fn logit(b: u32, h: u32, i: u32, j: u32) -> f32 {
    let qb = b * pu(at_q_strides) + h * pu(at_q_strides + 1u) + i * pu(at_q_strides + 2u);
    let kb = b * pu(at_k_strides) + (h / pu(at_group)) * pu(at_k_strides + 1u) + j * pu(at_k_strides + 2u);
    var x = 0.0;
    for (var d = 0u; d < D; d++) { x += f32(Q[qb + d]) * f32(K[kb + d]); }
    x *= pf(at_scale);
    if (MODE >= 1u && SOFTCAP) { x = pf(at_softcap) * wi_tanh(x / pf(at_softcap)); }
    if (MODE >= 2u) { x += key_bias(b, b * pu(at_mask_strides) + h * pu(at_mask_strides + 1u) + i * pu(at_mask_strides + 2u), i, j); }
    return x;
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
    let base = t * Skv;
    if (MODE < 3u) {
        for (var j = 0u; j < Skv; j++) { S[base + j] = {{T}}(logit(b, h, i, j)); }
        return;
    }
    var m = -wi_inf();
    for (var j = 0u; j < Skv; j++) { m = max(m, logit(b, h, i, j)); }
    var sum = 0.0;
    if (m != -wi_inf()) {
        for (var j = 0u; j < Skv; j++) { sum += exp(logit(b, h, i, j) - m); }
    }
    let inv = select(0.0, 1.0 / sum, sum > 0.0);
    for (var j = 0u; j < Skv; j++) {
        S[base + j] = {{T}}(select(0.0, exp(logit(b, h, i, j) - m) * inv, m != -wi_inf()));
    }
}
