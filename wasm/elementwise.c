// f32 elementwise loops for WebAssembly SIMD, in place on the host's memory: exact (erf) GELU.
//
// Same rules as gemm.c: no data, no globals, no stack, no libc (constants are v128.const immediates).
// GELU(x) = x * Phi(x), with Phi(x) = (1 + tanh(x Q(x^2))) / 2 = 1 / (1 + exp(-2 x Q(x^2))) and Q the
// degree-6 fit to atanh(erf(x / sqrt 2)) / x of ops/elementwise.py (erf within 2.8e-7 relative).  The
// sigmoid form has no cancellation, so large negative x keep their relative accuracy; exp is Cephes'
// expf (range reduction by ln 2, degree-6 polynomial, 2^k through the exponent bits).

#include <wasm_simd128.h>

typedef unsigned int u32;

#ifdef __wasm_relaxed_simd__
#define MADD(a, b, c) __builtin_wasm_relaxed_madd_f32x4((a), (b), (c))
#else
#define MADD(a, b, c) wasm_f32x4_add(wasm_f32x4_mul((a), (b)), (c))
#endif

#define SPLAT(c) wasm_f32x4_splat(c)

// exp(x) for x in [-87.3, 88.3] (callers clamp): within 2 ulp.
static inline v128_t exp4(v128_t x) {
    v128_t k = wasm_f32x4_nearest(wasm_f32x4_mul(x, SPLAT(1.44269504088896341f)));
    v128_t r = MADD(k, SPLAT(-0.693359375f), x);
    r = MADD(k, SPLAT(2.12194440e-4f), r);
    v128_t p = SPLAT(1.9875691500e-4f);
    p = MADD(p, r, SPLAT(1.3981999507e-3f));
    p = MADD(p, r, SPLAT(8.3334519073e-3f));
    p = MADD(p, r, SPLAT(4.1665795894e-2f));
    p = MADD(p, r, SPLAT(1.6666665459e-1f));
    p = MADD(p, r, SPLAT(5.0000001201e-1f));
    p = MADD(p, wasm_f32x4_mul(r, r), wasm_f32x4_add(r, SPLAT(1.0f)));
    v128_t two_k = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(k), wasm_i32x4_splat(127)), 23);
    return wasm_f32x4_mul(p, two_k);
}

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
    if (i < n) {
        u32 w = n - i;
        v128_t v = wasm_f32x4_make(x[i], w > 1 ? x[i + 1] : 0.0f, w > 2 ? x[i + 2] : 0.0f, 0.0f);
        v = gelu4(v);
        x[i] = wasm_f32x4_extract_lane(v, 0);
        if (w > 1) x[i + 1] = wasm_f32x4_extract_lane(v, 1);
        if (w > 2) x[i + 2] = wasm_f32x4_extract_lane(v, 2);
    }
}
