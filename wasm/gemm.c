// f32 GEMM for WebAssembly SIMD: C = alpha * A @ B + beta * C, with B packed once into 16-column panels.
//
// Built twice by build_wasm.py: SIMD128 (every engine since 2021) and relaxed SIMD (-mrelaxed-simd: the
// multiply-add may be fused), picked at run time by feature detection.  The module runs on the host's
// own memory (-Wl,--import-memory) and owns nothing in it: no data segment, no globals, no stack, no
// libc, so it can be instantiated on Pyodide's memory and work in place on numpy buffers.  Every local
// is a scalar or a v128 value (none has its address taken), which keeps clang from needing a stack.
//
// Layout: packed B holds ceil(N/16) panels; panel p is K rows of 16 floats, B[k, 16p .. 16p+15], the
// columns past N zero.  A is read one scalar at a time through two element strides (row, column), so
// row-major, column-major (a transpose) and strided views all run in place; C has unit-stride rows.
// The micro-kernel keeps a 2x16 tile of C in 8 vector registers (with the 4 B vectors and 2 A splats,
// 14 of x86-64's 16), which measured best: larger tiles spill.  Loops run k-block, panel, row pair, so
// a panel's slice of KC rows (16 KiB) stays in L1 while the rows of A stream past it.

#include "simd_math.h"

#define NR 16
#define KC 256

// Pack B[K, N] (element strides rsb down, csb across) into panels at dst (ceil(N/16) * 16 * K floats).
__attribute__((export_name("pack_b")))
void pack_b(u32 k, u32 n, const float *b, u32 rsb, u32 csb, float *dst) {
    for (u32 j0 = 0; j0 < n; j0 += NR) {
        u32 w = n - j0 < NR ? n - j0 : NR;
        for (u32 kk = 0; kk < k; kk++) {
            const float *src = b + kk * rsb + j0 * csb;
            if (w == NR && csb == 1) {
                for (u32 q = 0; q < NR; q += 4) wasm_v128_store(dst + q, wasm_v128_load(src + q));
            } else {
                for (u32 j = 0; j < w; j++) dst[j] = src[j * csb];
                for (u32 j = w; j < NR; j++) dst[j] = 0.0f;
            }
            dst += NR;
        }
    }
}

// out = alpha * acc + beta * out (beta 0: out is not read, so NaNs in it do not leak), for `w` lanes (1..4).
static inline void store4(float *out, v128_t acc, v128_t va, float beta, u32 w) {
    v128_t r = wasm_f32x4_mul(acc, va);
    if (w == 4) {
        if (beta != 0.0f) r = MADD(wasm_v128_load(out), wasm_f32x4_splat(beta), r);
        wasm_v128_store(out, r);
        return;
    }
    float l0 = wasm_f32x4_extract_lane(r, 0), l1 = wasm_f32x4_extract_lane(r, 1);
    float l2 = wasm_f32x4_extract_lane(r, 2);
    if (beta != 0.0f) {
        l0 += beta * out[0];
        if (w > 1) l1 += beta * out[1];
        if (w > 2) l2 += beta * out[2];
    }
    out[0] = l0;
    if (w > 1) out[1] = l1;
    if (w > 2) out[2] = l2;
}

// Store one row of a 16-wide tile: the first `w` columns of it.
static inline void store_row(float *out, v128_t c0, v128_t c1, v128_t c2, v128_t c3, v128_t va, float beta,
                             u32 w) {
    if (w >= 4) store4(out, c0, va, beta, 4); else { store4(out, c0, va, beta, w); return; }
    if (w >= 8) store4(out + 4, c1, va, beta, 4); else { if (w > 4) store4(out + 4, c1, va, beta, w - 4); return; }
    if (w >= 12) store4(out + 8, c2, va, beta, 4); else { if (w > 8) store4(out + 8, c2, va, beta, w - 8); return; }
    if (w == 16) store4(out + 12, c3, va, beta, 4); else if (w > 12) store4(out + 12, c3, va, beta, w - 12);
}

// Two rows of A (a0, a1) times one panel slice of kc rows, into C rows c0, c1 (first `w` columns).
static inline void tile2(u32 kc, const float *a0, const float *a1, u32 csa, const float *p, float *c0, float *c1,
                         v128_t va, float beta, u32 w) {
    v128_t x0 = wasm_f32x4_splat(0.0f), x1 = x0, x2 = x0, x3 = x0;
    v128_t y0 = x0, y1 = x0, y2 = x0, y3 = x0;
    for (u32 kk = 0; kk < kc; kk++) {
        v128_t b0 = wasm_v128_load(p), b1 = wasm_v128_load(p + 4);
        v128_t b2 = wasm_v128_load(p + 8), b3 = wasm_v128_load(p + 12);
        v128_t s = wasm_f32x4_splat(*a0), t = wasm_f32x4_splat(*a1);
        x0 = MADD(s, b0, x0); x1 = MADD(s, b1, x1); x2 = MADD(s, b2, x2); x3 = MADD(s, b3, x3);
        y0 = MADD(t, b0, y0); y1 = MADD(t, b1, y1); y2 = MADD(t, b2, y2); y3 = MADD(t, b3, y3);
        p += NR;
        a0 += csa;
        a1 += csa;
    }
    store_row(c0, x0, x1, x2, x3, va, beta, w);
    store_row(c1, y0, y1, y2, y3, va, beta, w);
}

// The last odd row of A times one panel slice.
static inline void tile1(u32 kc, const float *a0, u32 csa, const float *p, float *c0, v128_t va, float beta, u32 w) {
    v128_t x0 = wasm_f32x4_splat(0.0f), x1 = x0, x2 = x0, x3 = x0;
    for (u32 kk = 0; kk < kc; kk++) {
        v128_t s = wasm_f32x4_splat(*a0);
        x0 = MADD(s, wasm_v128_load(p), x0);
        x1 = MADD(s, wasm_v128_load(p + 4), x1);
        x2 = MADD(s, wasm_v128_load(p + 8), x2);
        x3 = MADD(s, wasm_v128_load(p + 12), x3);
        p += NR;
        a0 += csa;
    }
    store_row(c0, x0, x1, x2, x3, va, beta, w);
}

// C[M, N] (row stride ldc) = alpha * A[M, K] (strides rsa, csa) @ B + beta * C, B packed by pack_b.
// K == 0 leaves beta * C, as BLAS does.
__attribute__((export_name("gemm_packed")))
void gemm_packed(u32 m, u32 n, u32 k, float alpha, const float *a, u32 rsa, u32 csa, const float *packed,
                 float beta, float *c, u32 ldc) {
    if (k == 0) {
        for (u32 i = 0; i < m; i++)
            for (u32 j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    v128_t va = wasm_f32x4_splat(alpha);
    for (u32 k0 = 0; k0 < k; k0 += KC) {
        u32 kc = k - k0 < KC ? k - k0 : KC;
        float bk = k0 == 0 ? beta : 1.0f;  // later k-blocks add to what the first one stored
        for (u32 j0 = 0; j0 < n; j0 += NR) {
            u32 w = n - j0 < NR ? n - j0 : NR;
            const float *p = packed + j0 * k + k0 * NR;
            u32 i = 0;
            for (; i + 2 <= m; i += 2) {
                const float *a0 = a + i * rsa + k0 * csa;
                tile2(kc, a0, a0 + rsa, csa, p, c + i * ldc + j0, c + (i + 1) * ldc + j0, va, bk, w);
            }
            if (i < m) tile1(kc, a + i * rsa + k0 * csa, csa, p, c + i * ldc + j0, va, bk, w);
        }
    }
}
