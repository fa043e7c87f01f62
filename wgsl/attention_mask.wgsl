// attention_mask.wgsl: which keys a query row sees, and the additive bias on its scores.
// Included by attention.wgsl and attention_scores.wgsl (same parameter words).
//
// Query row i of batch b sits at absolute position i + offset: offset is the past length (KV
// cache), or nonpad_kv_seqlen[b] - Sq with per-batch key lengths (NONPAD). Key j is hidden when
// j >= the batch's key count, when CAUSAL and j > i + offset, or outside the sliding window
// (left/right sizes, -1 = unbounded); otherwise the mask's value is added (boolean masks:
// 0 or -inf). Keys past the mask's last axis are masked (ONNX pads a short mask with -inf).
// Uniforms used (attention.wgsl's): Skv, causal_offset, mask_strides, mask_length and the windows.
const CAUSAL: bool = {{CAUSAL}};
const NONPAD: bool = {{NONPAD}};

fn mask_at(at: u32) -> f32 { return {{MASK_AT}}; }
fn nonpad_at(b: u32) -> i32 { return {{NONPAD_AT}}; }

// Keys of batch b: Skv, or its nonpad length.
fn key_count(b: u32) -> u32 {
    if (NONPAD) { return u32(clamp(nonpad_at(b), 0, i32(pu(at_Skv)))); }
    return pu(at_Skv);
}

// Absolute position of query row i of batch b.
fn query_pos(b: u32, i: u32) -> i32 {
    if (NONPAD) { return i32(i) + nonpad_at(b) - i32(pu(at_Sq)); }
    return i32(i) + pi(at_causal_offset);
}

// The bias added to the score of key j (mask base mb = b, h, i strides applied); -inf hides it.
fn key_bias(b: u32, mb: u32, i: u32, j: u32) -> f32 {
    if (j >= key_count(b)) { return -wi_inf(); }
    let dist = query_pos(b, i) - i32(j);
    if (CAUSAL && dist < 0) { return -wi_inf(); }
    if (pi(at_window_left) >= 0 && dist > pi(at_window_left)) { return -wi_inf(); }
    if (pi(at_window_right) >= 0 && -dist > pi(at_window_right)) { return -wi_inf(); }
    if (j >= pu(at_mask_length)) { return -wi_inf(); }
    return mask_at(mb + j * pu(at_mask_strides + 3u));
}

// One past the last key row i can see (the loop bound; key_bias still decides each key).
fn key_end(b: u32, i: u32) -> u32 {
    var last = key_count(b);
    if (CAUSAL) { last = min(last, u32(clamp(query_pos(b, i) + 1, 0, i32(last)))); }
    return last;
}
