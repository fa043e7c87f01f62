// Shared by the kernel families (included, not a family of its own): the multiply-add of the build's
// variant, Cephes' expf on four lanes, and the fused activations the kernels apply in their stores.
//
// Everything here is static inline and uses v128.const immediates only, so a family that includes it
// still owns no data, globals or stack (build_wasm.py checks the built modules).

#ifndef WEBINFER_SIMD_MATH_H
#define WEBINFER_SIMD_MATH_H

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

// The fused activations, by the codes runtime/wasm_kernels.py's ACTIVATIONS gives them; p0, p1 are the
// ONNX op's parameters (Clip: min, max; HardSigmoid: alpha, beta; LeakyRelu: alpha).  NaN stays NaN
// (f32x4 min/max propagate it, as numpy's maximum and clip do).
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_CLIP 2
#define ACT_HARDSIGMOID 3
#define ACT_HARDSWISH 4
#define ACT_SIGMOID 5
#define ACT_LEAKYRELU 6

static inline v128_t unit_clamp4(v128_t t) {
    return wasm_f32x4_min(wasm_f32x4_max(t, SPLAT(0.0f)), SPLAT(1.0f));
}

// 1 / (1 + exp(-x)), -x clamped to exp's range (the numpy path clamps at 88 too).
static inline v128_t sigmoid4(v128_t x) {
    v128_t t = wasm_f32x4_pmax(wasm_f32x4_pmin(wasm_f32x4_neg(x), SPLAT(88.0f)), SPLAT(-87.0f));
    return wasm_f32x4_div(SPLAT(1.0f), wasm_f32x4_add(SPLAT(1.0f), exp4(t)));
}

static inline v128_t act4(v128_t x, u32 act, v128_t p0, v128_t p1) {
    switch (act) {
        case ACT_RELU: return wasm_f32x4_max(x, SPLAT(0.0f));
        case ACT_CLIP: return wasm_f32x4_min(wasm_f32x4_max(x, p0), p1);
        case ACT_HARDSIGMOID: return unit_clamp4(MADD(x, p0, p1));
        case ACT_HARDSWISH: return wasm_f32x4_mul(x, unit_clamp4(MADD(x, SPLAT(1.0f / 6.0f), SPLAT(0.5f))));
        case ACT_SIGMOID: return sigmoid4(x);
        case ACT_LEAKYRELU: return wasm_v128_bitselect(wasm_f32x4_mul(x, p0), x, wasm_f32x4_lt(x, SPLAT(0.0f)));
        default: return x;
    }
}

// Store the first w (1..3) lanes of v at out.
static inline void store_lanes(float *out, v128_t v, u32 w) {
    out[0] = wasm_f32x4_extract_lane(v, 0);
    if (w > 1) out[1] = wasm_f32x4_extract_lane(v, 1);
    if (w > 2) out[2] = wasm_f32x4_extract_lane(v, 2);
}

// The first w (1..3) floats at p in lanes 0..w-1, `fill` in the others (nothing past p + w is read).
static inline v128_t load_lanes(const float *p, u32 w, float fill) {
    return wasm_f32x4_make(p[0], w > 1 ? p[1] : fill, w > 2 ? p[2] : fill, fill);
}

#endif
