// Direct 2-D depthwise convolution (one k x k filter per channel, NCHW) for WebAssembly SIMD, with the
// bias and the fused activation applied in its store.
//
// Same rules as gemm.c: no data, no globals, no stack, no libc.  A depthwise filter does k*k
// multiply-adds per output, too few for a GEMM to pay, and numpy in Pyodide (no BLAS) runs the band and
// einsum formulations of ops/conv.py at well under 1 GFLOP/s.  Here each channel's plane is copied into a
// zero-bordered scratch plane (the caller's buffer, `sw_` floats a row), so the taps need no bounds
// checks; then every output row is computed 16 columns at a time, the rest (stride 1) two rows by two
// vectors at a time, the taps' weights splatted and the inputs loaded straight (stride 1) or deinterleaved from two
// loads (stride 2).

#include "simd_math.h"

// Four inputs x[0], x[s], x[2s], x[3s] for column stride s (1 or 2; a constant once inlined).
static inline v128_t load_s(const float *p, u32 s) {
    if (s == 1) return wasm_v128_load(p);
    return wasm_i32x4_shuffle(wasm_v128_load(p), wasm_v128_load(p + 4), 0, 2, 4, 6);
}

// Columns c .. c + 4 * nv - 1 (the last ones may lie past ow and are not stored) of output rows r and, with
// nr == 2, r + 1 (xr: row r's first padded input row, rstep floats to row r + 1's): nr * nv independent
// accumulators in one pass over the taps (nv, nr: 1 or 2, constants once inlined).
static inline __attribute__((always_inline)) void tail_pass(const float *xr, u32 rstep, u32 wp, float *yr, u32 ow,
                                                            u32 c, u32 nv, u32 nr, const float *w, u32 kh, u32 kw,
                                                            u32 sw, float b, u32 act, v128_t p0, v128_t p1) {
    v128_t a0 = SPLAT(b), a1 = a0, b0 = a0, b1 = a0;
    for (u32 i = 0; i < kh; i++) {
        const float *xi = xr + i * wp + c * sw, *xi2 = xi + rstep;
        for (u32 j = 0; j < kw; j++) {
            v128_t t = SPLAT(w[i * kw + j]);
            a0 = MADD(load_s(xi + j, sw), t, a0);
            if (nv == 2) a1 = MADD(load_s(xi + j + 4 * sw, sw), t, a1);
            if (nr == 2) b0 = MADD(load_s(xi2 + j, sw), t, b0);
            if (nr == 2 && nv == 2) b1 = MADD(load_s(xi2 + j + 4 * sw, sw), t, b1);
        }
    }
    for (u32 k = 0; k < nr; k++) {
        float *o = yr + k * ow + c;
        v128_t v0 = act4(k ? b0 : a0, act, p0, p1);
        if (c + 4 <= ow) wasm_v128_store(o, v0); else store_lanes(o, v0, ow - c);
        if (nv == 2) {
            v128_t v1 = act4(k ? b1 : a1, act, p0, p1);
            if (c + 8 <= ow) wasm_v128_store(o + 4, v1); else store_lanes(o + 4, v1, ow - c - 4);
        }
    }
}

// The columns from c0 (past the last 16-wide block) to ow, of every output row: two rows and two vectors
// at a time.  One vector at a time was one chain of dependent multiply-adds, latency-bound, and a 7- or
// 14-wide layer (all of MobileNet's 5x5 ones) is nothing but this tail.  Column stride 1 only (see `plane`).
// Not inlined into every activation's `plane`: the activation is applied per store, so one copy per kernel
// size serves them all.
static inline __attribute__((always_inline)) void tail_body(const float *xp, u32 wp, float *y, u32 oh, u32 ow,
                                                            u32 c0, const float *w, u32 kh, u32 kw, u32 sh,
                                                            u32 sw, float b, u32 act, v128_t p0, v128_t p1) {
    for (u32 r = 0; r < oh; r += 2) {
        const float *xr = xp + r * sh * wp;
        float *yr = y + r * ow;
        u32 two_rows = r + 1 < oh;
        for (u32 c = c0; c < ow; c += 8) {
            u32 two_vectors = c + 4 < ow;
            if (two_rows && two_vectors) tail_pass(xr, sh * wp, wp, yr, ow, c, 2, 2, w, kh, kw, sw, b, act, p0, p1);
            else if (two_rows) tail_pass(xr, sh * wp, wp, yr, ow, c, 1, 2, w, kh, kw, sw, b, act, p0, p1);
            else if (two_vectors) tail_pass(xr, sh * wp, wp, yr, ow, c, 2, 1, w, kh, kw, sw, b, act, p0, p1);
            else tail_pass(xr, sh * wp, wp, yr, ow, c, 1, 1, w, kh, kw, sw, b, act, p0, p1);
        }
    }
}

#define TAIL_FN(NAME, KH, KW)                                                                                 \
    static __attribute__((noinline)) void NAME(const float *xp, u32 wp, float *y, u32 oh, u32 ow, u32 c0,      \
                                               const float *w, u32 kh, u32 kw, u32 sh, float b, u32 act,       \
                                               v128_t p0, v128_t p1) {                                          \
        tail_body(xp, wp, y, oh, ow, c0, w, KH ? KH : kh, KW ? KW : kw, sh, 1, b, act, p0, p1);               \
    }
TAIL_FN(tail_3x3, 3, 3)
TAIL_FN(tail_5x5, 5, 5)
TAIL_FN(tail_any, 0, 0)

// One channel: y[oh, ow] = act(b + sum_ij w[i, j] * xp[r * sh + i, c * sw + j]) over the padded plane xp
// (row stride wp): 16 columns at a time with four accumulators, then the rest (`tail_body` for stride 1).  The scratch
// row is wide enough for every 4-column vector, the last partial one too.
static inline __attribute__((always_inline)) void plane(const float *xp, u32 wp, float *__restrict y, u32 oh,
                                                        u32 ow, const float *__restrict w, u32 kh, u32 kw, u32 sh,
                                                        u32 sw, float b,
                                                        u32 act, v128_t p0, v128_t p1) {
    u32 c0 = ow / 16 * 16;
    for (u32 r = 0; r < oh; r++) {
        const float *xr = xp + r * sh * wp;
        float *yr = y + r * ow;
        for (u32 c = 0; c < c0; c += 16) {
            v128_t a0 = SPLAT(b), a1 = a0, a2 = a0, a3 = a0;
            for (u32 i = 0; i < kh; i++) {
                const float *xi = xr + i * wp + c * sw;
                for (u32 j = 0; j < kw; j++) {
                    v128_t t = SPLAT(w[i * kw + j]);
                    a0 = MADD(load_s(xi + j, sw), t, a0);
                    a1 = MADD(load_s(xi + j + 4 * sw, sw), t, a1);
                    a2 = MADD(load_s(xi + j + 8 * sw, sw), t, a2);
                    a3 = MADD(load_s(xi + j + 12 * sw, sw), t, a3);
                }
            }
            wasm_v128_store(yr + c, act4(a0, act, p0, p1));
            wasm_v128_store(yr + c + 4, act4(a1, act, p0, p1));
            wasm_v128_store(yr + c + 8, act4(a2, act, p0, p1));
            wasm_v128_store(yr + c + 12, act4(a3, act, p0, p1));
        }
    }
    if (c0 == ow) return;
    if (sw == 1) {
        if (kh == 3 && kw == 3) tail_3x3(xp, wp, y, oh, ow, c0, w, kh, kw, sh, b, act, p0, p1);
        else if (kh == 5 && kw == 5) tail_5x5(xp, wp, y, oh, ow, c0, w, kh, kw, sh, b, act, p0, p1);
        else tail_any(xp, wp, y, oh, ow, c0, w, kh, kw, sh, b, act, p0, p1);
        return;
    }
    // Column stride 2: two loads and a shuffle per vector keep one chain busy enough (the two-row tail
    // measured slower there).
    for (u32 r = 0; r < oh; r++) {
        const float *xr = xp + r * sh * wp;
        float *yr = y + r * ow;
        for (u32 c = c0; c < ow; c += 4) {
            v128_t a = SPLAT(b);
            for (u32 i = 0; i < kh; i++) {
                const float *xi = xr + i * wp + c * sw;
                for (u32 j = 0; j < kw; j++) a = MADD(load_s(xi + j, sw), SPLAT(w[i * kw + j]), a);
            }
            a = act4(a, act, p0, p1);
            if (c + 4 <= ow) wasm_v128_store(yr + c, a); else store_lanes(yr + c, a, ow - c);
        }
    }
}

// `plane` for one activation and column stride (constants once inlined).
static inline __attribute__((always_inline)) void planes(const float *x, float *y, const float *w,
                                                         const float *bias, u32 count, u32 ch, u32 h, u32 wd,
                                                         u32 oh, u32 ow, u32 kh, u32 kw, u32 sh, u32 sw, u32 pt,
                                                         u32 pl, float *scratch, u32 hp, u32 wp, u32 act,
                                                         v128_t p0, v128_t p1) {
    for (u32 q = 0; q < hp * wp; q++) scratch[q] = 0.0f;
    for (u32 n = 0; n < count; n++) {
        const float *src = x + n * h * wd;
        for (u32 r = 0; r < h; r++) {
            float *dst = scratch + (pt + r) * wp + pl;
            u32 c = 0;
            for (; c + 4 <= wd; c += 4) wasm_v128_store(dst + c, wasm_v128_load(src + r * wd + c));
            for (; c < wd; c++) dst[c] = src[r * wd + c];
        }
        u32 k = n % ch;
        float *yn = y + n * oh * ow;
        const float *wk = w + k * kh * kw;
        float b = bias ? bias[k] : 0.0f;
        // 3x3 and 5x5 with constant sizes: the taps unroll and their weights stay in registers.
        if (kh == 3 && kw == 3) plane(scratch, wp, yn, oh, ow, wk, 3, 3, sh, sw, b, act, p0, p1);
        else if (kh == 5 && kw == 5) plane(scratch, wp, yn, oh, ow, wk, 5, 5, sh, sw, b, act, p0, p1);
        else plane(scratch, wp, yn, oh, ow, wk, kh, kw, sh, sw, b, act, p0, p1);
    }
}

#define PLANES(ACT, SW) planes(x, y, w, bias, count, ch, h, wd, oh, ow, kh, kw, sh, SW, pt, pl, scratch, hp, wp, \
                               ACT, v0, v1)
#define BY_STRIDE(ACT) do { if (sw == 1) PLANES(ACT, 1); else PLANES(ACT, 2); } while (0)

// y [count planes, oh, ow] = act(depthwise conv of x [count planes, h, wd] + bias), plane n using filter
// w[n % ch] ([ch, kh, kw]) and bias[n % ch] (bias 0: none).  Strides sh (any) and sw (1 or 2), pads pt
// (top) and pl (left), dilation 1.  scratch holds hp * wp floats, with hp >= max(pt + h, (oh-1)*sh + kh)
// and wp >= max(pl + wd, ceil(ow / 4) * 4 * sw + kw - 1): the padded plane, wide enough for the last
// vector's reads (runtime/ops/conv.py sizes it).
__attribute__((export_name("depthwise2d")))
void depthwise2d(const float *x, float *y, const float *w, const float *bias, u32 count, u32 ch, u32 h, u32 wd,
                 u32 oh, u32 ow, u32 kh, u32 kw, u32 sh, u32 sw, u32 pt, u32 pl, float *scratch, u32 hp, u32 wp,
                 u32 act, float p0, float p1) {
    v128_t v0 = SPLAT(p0), v1 = SPLAT(p1);
    switch (act) {
        case ACT_RELU: BY_STRIDE(ACT_RELU); break;
        case ACT_CLIP: BY_STRIDE(ACT_CLIP); break;
        case ACT_HARDSIGMOID: BY_STRIDE(ACT_HARDSIGMOID); break;
        case ACT_HARDSWISH: BY_STRIDE(ACT_HARDSWISH); break;
        case ACT_SIGMOID: BY_STRIDE(ACT_SIGMOID); break;
        case ACT_LEAKYRELU: BY_STRIDE(ACT_LEAKYRELU); break;
        default: BY_STRIDE(ACT_NONE); break;
    }
}

// One panel row (16 cells) of im2col for tap (i, j) of one input channel xc [h, w]: cells q0 .. q0 + 15
// of the output rows starting at output row r, column col; lanes past `wq` cells are 0.  Rows wholly
// inside the input are vector copies (column stride 1 or 2); the rest, at borders, go lane by lane.
static inline void panel_row(float *o, const float *xc, u32 h, u32 w, u32 r, u32 col, u32 wq, u32 ow, u32 i,
                             u32 j, u32 sh, u32 sw, u32 pt, u32 pl) {
    int iy = (int)(r * sh + i) - (int)pt;
    int ix = (int)(col * sw + j) - (int)pl;
    if (wq == 16 && col + 16 <= ow && iy >= 0 && (u32)iy < h && ix >= 0 && (u32)ix + 16 * sw <= w) {
        const float *src = xc + (u32)iy * w + (u32)ix;
        if (sw == 1) {
            for (u32 q = 0; q < 16; q += 4) wasm_v128_store(o + q, wasm_v128_load(src + q));
        } else {
            for (u32 q = 0; q < 16; q += 4) wasm_v128_store(o + q, load_s(src + 2 * q, 2));
        }
        return;
    }
    u32 rr = r, cc = col;
    for (u32 l = 0; l < 16; l++) {
        float v = 0.0f;
        if (l < wq) {
            int y = (int)(rr * sh + i) - (int)pt, x = (int)(cc * sw + j) - (int)pl;
            if (y >= 0 && (u32)y < h && x >= 0 && (u32)x < w) v = xc[(u32)y * w + (u32)x];
            if (++cc == ow) { cc = 0; rr++; }
        }
        o[l] = v;
    }
}

// The im2col columns of output rows [r0, r0 + nr) of one image x [c, h, w] (dilation 1), written straight
// into gemm.c's panel layout, so a conv's product needs no pack_b copy of them: ceil(nr * ow / 16) panels
// of k rows of 16 cells, k = c * kh * kw taps (channel, tap row, tap column: the weight matrix's order)
// plus, with `ones`, a row of ones that multiplies a bias folded into the weights.  Column stride 1 or 2
// gets the vector path (runtime/ops/conv.py routes only those).
__attribute__((export_name("im2col_panels")))
void im2col_panels(const float *x, u32 c, u32 h, u32 w, u32 kh, u32 kw, u32 sh, u32 sw, u32 pt, u32 pl, u32 r0,
                   u32 nr, u32 ow, u32 ones, float *dst) {
    u32 cells = nr * ow, k = c * kh * kw + ones;
    for (u32 q0 = 0; q0 < cells; q0 += 16) {
        u32 wq = cells - q0 < 16 ? cells - q0 : 16;
        u32 r = r0 + q0 / ow, col = q0 % ow;
        float *o = dst + (q0 / 16) * k * 16;
        for (u32 ch = 0; ch < c; ch++) {
            const float *xc = x + ch * h * w;
            for (u32 i = 0; i < kh; i++) {
                for (u32 j = 0; j < kw; j++) {
                    if (sw == 1) panel_row(o, xc, h, w, r, col, wq, ow, i, j, sh, 1, pt, pl);
                    else panel_row(o, xc, h, w, r, col, wq, ow, i, j, sh, 2, pt, pl);
                    o += 16;
                }
            }
        }
        if (ones) for (u32 q = 0; q < 16; q += 4) wasm_v128_store(o + q, SPLAT(1.0f));
    }
}
