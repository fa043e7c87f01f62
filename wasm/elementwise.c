// f32 elementwise loops for WebAssembly SIMD, in place on the host's memory: exact (erf) GELU, and the
// bias + activation epilogue of products and convs.
//
// Same rules as gemm.c: no data, no globals, no stack, no libc (constants are v128.const immediates).
// GELU(x) = x * Phi(x), with Phi(x) = (1 + tanh(x Q(x^2))) / 2 = 1 / (1 + exp(-2 x Q(x^2))) and Q the
// degree-6 fit to atanh(erf(x / sqrt 2)) / x of ops/elementwise.py (erf within 2.8e-7 relative).  The
// sigmoid form has no cancellation, so large negative x keep their relative accuracy; exp is Cephes'
// expf (simd_math.h).

#include "simd_math.h"

static inline v128_t gelu4(v128_t x) {
    v128_t x2 = wasm_f32x4_mul(x, x);
    v128_t q = SPLAT(1.5677569168955756e-09f);
    q = MADD(q, x2, SPLAT(-1.2527203059233346e-07f));
    q = MADD(q, x2, SPLAT(3.873218311875667e-06f));
    q = MADD(q, x2, SPLAT(-5.4782430107014306e-05f));
    q = MADD(q, x2, SPLAT(-3.3910018096431274e-05f));
    q = MADD(q, x2, SPLAT(0.036334347455289226f));
    q = MADD(q, x2, SPLAT(0.7978846366648688f));
    // t = -2 x Q(x^2), clamped to exp's range (NaN stays NaN through pmin/pmax, which return their first
    // operand when the comparison fails).  Below it Phi is 1 in float32; above it (x < -13) Phi underflows
    // and the result is x * 0, as numpy's tanh form gives (-0, and NaN for -inf).
    v128_t t = wasm_f32x4_mul(wasm_f32x4_mul(x, q), SPLAT(-2.0f));
    v128_t zero = wasm_f32x4_gt(t, SPLAT(88.0f));
    t = wasm_f32x4_pmax(wasm_f32x4_pmin(t, SPLAT(88.0f)), SPLAT(-87.0f));
    v128_t y = wasm_f32x4_div(x, wasm_f32x4_add(SPLAT(1.0f), exp4(t)));
    return wasm_v128_bitselect(wasm_f32x4_mul(x, SPLAT(0.0f)), y, zero);
}

// x[0 .. n) = GELU(x), in place.
__attribute__((export_name("gelu")))
void gelu(float *x, u32 n) {
    u32 i = 0;
    for (; i + 4 <= n; i += 4) wasm_v128_store(x + i, gelu4(wasm_v128_load(x + i)));
    if (i < n) store_lanes(x + i, gelu4(load_lanes(x + i, n - i, 0.0f)), n - i);
}

// The rows of bias_act for one activation (a constant once inlined, so each case gets its own loop).
static inline __attribute__((always_inline)) void bias_act_rows(float *y, u32 rows, u32 cols, u32 ld,
                                                                const float *bias, u32 bias_mode, u32 nb,
                                                                u32 act, v128_t v0, v128_t v1) {
    for (u32 r = 0; r < rows; r++) {
        float *row = y + r * ld;
        v128_t b = SPLAT(bias_mode == 1 ? bias[r % nb] : 0.0f);
        u32 c = 0;
        for (; c + 4 <= cols; c += 4) {
            v128_t x = wasm_v128_load(row + c);
            if (bias_mode == 2) b = wasm_v128_load(bias + c);
            wasm_v128_store(row + c, act4(wasm_f32x4_add(x, b), act, v0, v1));
        }
        if (c < cols) {
            u32 w = cols - c;
            if (bias_mode == 2) b = load_lanes(bias + c, w, 0.0f);
            store_lanes(row + c, act4(wasm_f32x4_add(load_lanes(row + c, w, 0.0f), b), act, v0, v1), w);
        }
    }
}

// The epilogue of a product or conv, in place: y[r, c] = act(y[r, c] + bias), for `rows` rows of `cols`
// floats, `ld` floats apart.  bias_mode 0: no bias; 1: bias[r % nb] per row (a conv's channels, NCHW
// blocks of several images); 2: bias[c] per column (MatMul + Add).  One pass while the block is in cache,
// instead of numpy's one per step (its activations take 2-4 passes each).
__attribute__((export_name("bias_act")))
void bias_act(float *y, u32 rows, u32 cols, u32 ld, const float *bias, u32 bias_mode, u32 nb, u32 act, float p0,
              float p1) {
    v128_t v0 = SPLAT(p0), v1 = SPLAT(p1);
    switch (act) {
        case ACT_RELU: bias_act_rows(y, rows, cols, ld, bias, bias_mode, nb, ACT_RELU, v0, v1); break;
        case ACT_CLIP: bias_act_rows(y, rows, cols, ld, bias, bias_mode, nb, ACT_CLIP, v0, v1); break;
        case ACT_HARDSIGMOID: bias_act_rows(y, rows, cols, ld, bias, bias_mode, nb, ACT_HARDSIGMOID, v0, v1); break;
        case ACT_HARDSWISH: bias_act_rows(y, rows, cols, ld, bias, bias_mode, nb, ACT_HARDSWISH, v0, v1); break;
        case ACT_SIGMOID: bias_act_rows(y, rows, cols, ld, bias, bias_mode, nb, ACT_SIGMOID, v0, v1); break;
        case ACT_LEAKYRELU: bias_act_rows(y, rows, cols, ld, bias, bias_mode, nb, ACT_LEAKYRELU, v0, v1); break;
        default: bias_act_rows(y, rows, cols, ld, bias, bias_mode, nb, ACT_NONE, v0, v1); break;
    }
}

static inline v128_t binop4(v128_t a, v128_t b, u32 op) {
    return op == 0 ? wasm_f32x4_add(a, b) : op == 1 ? wasm_f32x4_sub(a, b) : wasm_f32x4_mul(a, b);
}

// The rows of `binary` for one operator (a constant once inlined).
static inline __attribute__((always_inline)) void binary_rows(const float *a, const float *b, float *y, u32 rows,
                                                              u32 cols, u32 b_mode, u32 nb, u32 op) {
    for (u32 r = 0; r < rows; r++) {
        const float *ar = a + r * cols;
        const float *br = b_mode == 0 ? b + r * cols : b;
        float *yr = y + r * cols;
        v128_t bs = SPLAT(b_mode == 1 ? b[r % nb] : 0.0f);
        u32 c = 0;
        for (; c + 4 <= cols; c += 4) {
            v128_t bv = b_mode == 1 ? bs : wasm_v128_load(br + c);
            wasm_v128_store(yr + c, binop4(wasm_v128_load(ar + c), bv, op));
        }
        if (c < cols) {
            u32 w = cols - c;
            v128_t bv = b_mode == 1 ? bs : load_lanes(br + c, w, 0.0f);
            store_lanes(yr + c, binop4(load_lanes(ar + c, w, 0.0f), bv, op), w);
        }
    }
}

// y = a op b (op 0: +, 1: -, 2: *) over `rows` contiguous rows of `cols` floats, b broadcast as numpy does
// for the shapes NCHW models meet: b_mode 0, b has a's shape; 1, b[r % nb] per row (a per-channel
// [C, 1, 1] or a scalar); 2, b[c] per column (a trailing row vector).  y may be a or b (in place).
__attribute__((export_name("binary")))
void binary(const float *a, const float *b, float *y, u32 rows, u32 cols, u32 b_mode, u32 nb, u32 op) {
    if (op == 0) binary_rows(a, b, y, rows, cols, b_mode, nb, 0);
    else if (op == 1) binary_rows(a, b, y, rows, cols, b_mode, nb, 1);
    else binary_rows(a, b, y, rows, cols, b_mode, nb, 2);
}
