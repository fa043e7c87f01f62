// Row-wise reductions for WebAssembly SIMD: softmax and LayerNorm over the last axis.
//
// Same rules as gemm.c: no data, no globals, no stack, no libc.  numpy in Pyodide makes each of these
// 4-6 passes with a temporary per step (max, subtract, exp, sum, reciprocal, scale); here a row takes
// three passes in cache.  Sums accumulate in four lanes, then across them: float32 sums in another order
// than numpy's pairwise one, well inside the callers' tolerance for the row lengths of transformers.

#include "simd_math.h"

static inline float hsum(v128_t v) {
    return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
           wasm_f32x4_extract_lane(v, 3);
}

static inline float hmax(v128_t v) {
    v = wasm_f32x4_max(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_f32x4_max(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(v, 0);
}

// exp(x - m), 0 where x - m < -87 (below exp's float32 range: the exact value, under 1.7e-38, is far
// under the resolution of a sum that includes exp(0) = 1).  NaN stays NaN (the comparison fails for it).
static inline v128_t shifted_exp4(v128_t x, v128_t m) {
    v128_t d = wasm_f32x4_sub(x, m);
    v128_t e = exp4(wasm_f32x4_pmax(d, SPLAT(-87.0f)));
    return wasm_v128_andnot(e, wasm_f32x4_lt(d, SPLAT(-87.0f)));
}

// y[r, :] = softmax(x[r, :]) for `rows` rows of n floats (x and y: contiguous rows, n apart; y may be x).
// A row holding NaN gives NaN.  A row of -inf (attention's fully masked row) gives zeros with
// `masked_zero`, else NaN, as exp(x - max) / sum does in numpy (the Softmax op).
__attribute__((export_name("softmax")))
void softmax(const float *x, float *y, u32 rows, u32 n, u32 masked_zero) {
    for (u32 r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        u32 tail = n % 4, body = n - tail;
        v128_t mv = SPLAT(-__builtin_inff());
        for (u32 c = 0; c < body; c += 4) mv = wasm_f32x4_max(mv, wasm_v128_load(xr + c));
        if (tail) mv = wasm_f32x4_max(mv, load_lanes(xr + body, tail, -__builtin_inff()));
        float mx = hmax(mv);
        if (masked_zero && mx == -__builtin_inff()) {
            for (u32 c = 0; c < n; c++) yr[c] = 0.0f;
            continue;
        }
        v128_t m = SPLAT(mx);
        v128_t sv = SPLAT(0.0f);
        for (u32 c = 0; c < body; c += 4) {
            v128_t e = shifted_exp4(wasm_v128_load(xr + c), m);
            wasm_v128_store(yr + c, e);
            sv = wasm_f32x4_add(sv, e);
        }
        float s = hsum(sv);
        for (u32 c = body; c < n; c++) {
            float e = wasm_f32x4_extract_lane(shifted_exp4(SPLAT(xr[c]), m), 0);
            yr[c] = e;
            s += e;
        }
        v128_t inv = SPLAT(1.0f / s);
        for (u32 c = 0; c < body; c += 4) wasm_v128_store(yr + c, wasm_f32x4_mul(wasm_v128_load(yr + c), inv));
        for (u32 c = body; c < n; c++) yr[c] *= 1.0f / s;
    }
}

// y[r, :] = (x[r, :] - mean) / sqrt(var + eps) * scale + bias (bias 0: none), for `rows` rows of n floats;
// the variance is the mean of squared deviations (two passes, no cancellation).
__attribute__((export_name("layernorm")))
void layernorm(const float *x, float *y, u32 rows, u32 n, const float *scale, const float *bias, float eps) {
    u32 tail = n % 4, body = n - tail;
    for (u32 r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        v128_t sv = SPLAT(0.0f);
        for (u32 c = 0; c < body; c += 4) sv = wasm_f32x4_add(sv, wasm_v128_load(xr + c));
        float s = hsum(sv);
        for (u32 c = body; c < n; c++) s += xr[c];
        float mean = s / (float)n;
        v128_t mv = SPLAT(mean), qv = SPLAT(0.0f);
        for (u32 c = 0; c < body; c += 4) {
            v128_t d = wasm_f32x4_sub(wasm_v128_load(xr + c), mv);
            qv = MADD(d, d, qv);
        }
        float q = hsum(qv);
        for (u32 c = body; c < n; c++) q += (xr[c] - mean) * (xr[c] - mean);
        v128_t inv = wasm_f32x4_div(SPLAT(1.0f), wasm_f32x4_sqrt(SPLAT(q / (float)n + eps)));
        for (u32 c = 0; c < body; c += 4) {
            v128_t v = wasm_f32x4_mul(wasm_f32x4_mul(wasm_f32x4_sub(wasm_v128_load(xr + c), mv), inv),
                                      wasm_v128_load(scale + c));
            wasm_v128_store(yr + c, bias ? wasm_f32x4_add(v, wasm_v128_load(bias + c)) : v);
        }
        float invs = wasm_f32x4_extract_lane(inv, 0);
        for (u32 c = body; c < n; c++) yr[c] = (xr[c] - mean) * invs * scale[c] + (bias ? bias[c] : 0.0f);
    }
}
