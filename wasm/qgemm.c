// int8/uint8 matrix product for WebAssembly SIMD: C (int32) = (A - a_zero) @ (B - b_zero), summed exactly.
//
// For the quantised models' MatMulInteger / QLinearMatMul / ConvInteger (runtime/gemm.py `gemm_int8`).
// Operands are widened once to int16 with their zero points subtracted (values in [-255, 255]), then
// i32x4.dot_i16x8_s multiplies eight pairs and adds neighbours into four int32 lanes: 8 multiply-adds per
// instruction, no rounding, int32 sums that wrap past 2^31 exactly as numpy's int32 arithmetic does.
// Like the other families it owns nothing in memory (no data, globals or stack): Python hands it
// numpy buffers.
//
// Layout: pack_i8 writes rows of K int16 values padded with zeros to KP (a multiple of 8): A's rows as
// they are, B's columns (B read with its strides swapped), so both operands of a dot product are
// contiguous.  The micro-kernel keeps 2 rows x 4 columns of C in 8 accumulators (with 2 A and 4 B
// vectors: 14 registers), and sums each accumulator's four lanes at the end.

#include "simd_math.h"

typedef int i32;

// dst[r, c] = src[r * rs + c * cs] - zeros[r * zs] (int8, or uint8 when is_unsigned) as int16, for c < cols,
// then zeros up to kp.  zs is 0 for one zero point, 1 for one per row (B's per-column zero points).
__attribute__((export_name("pack_i8")))
void pack_i8(u32 rows, u32 cols, const unsigned char *src, u32 rs, u32 cs, u32 is_unsigned, const i32 *zeros,
             u32 zs, short *dst, u32 kp) {
    for (u32 r = 0; r < rows; r++) {
        const unsigned char *s = src + r * rs;
        i32 z = zeros[r * zs];
        short *d = dst + r * kp;
        u32 c = 0;
        if (cs == 1) {
            v128_t vz = wasm_i16x8_splat((short)z);
            for (; c + 8 <= cols; c += 8) {
                v128_t v = wasm_v128_load64_zero(s + c);
                v128_t w = is_unsigned ? wasm_u16x8_extend_low_u8x16(v) : wasm_i16x8_extend_low_i8x16(v);
                wasm_v128_store(d + c, wasm_i16x8_sub(w, vz));
            }
        }
        for (; c < cols; c++) {
            i32 v = is_unsigned ? (i32)s[c * cs] : (i32)(signed char)s[c * cs];
            d[c] = (short)(v - z);
        }
        for (; c < kp; c++) d[c] = 0;
    }
}

// The lane sums of four accumulators, as one vector [sum(a0), sum(a1), sum(a2), sum(a3)].
static inline v128_t reduce4(v128_t a0, v128_t a1, v128_t a2, v128_t a3) {
    v128_t t0 = wasm_i32x4_add(wasm_i32x4_shuffle(a0, a1, 0, 4, 1, 5), wasm_i32x4_shuffle(a0, a1, 2, 6, 3, 7));
    v128_t t1 = wasm_i32x4_add(wasm_i32x4_shuffle(a2, a3, 0, 4, 1, 5), wasm_i32x4_shuffle(a2, a3, 2, 6, 3, 7));
    return wasm_i32x4_add(wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5), wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7));
}

static inline i32 lanes_sum(v128_t a) {
    return wasm_i32x4_extract_lane(a, 0) + wasm_i32x4_extract_lane(a, 1) + wasm_i32x4_extract_lane(a, 2) +
           wasm_i32x4_extract_lane(a, 3);
}

#define DOT(acc, x, y) acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8((x), (y)))

// One row of A against columns j .. n-1 of B (the last row of an odd M).
static inline void row1(u32 n, u32 kp, const short *a0, const short *b, i32 *c0) {
    u32 j = 0;
    for (; j + 4 <= n; j += 4) {
        const short *b0 = b + j * kp, *b1 = b0 + kp, *b2 = b1 + kp, *b3 = b2 + kp;
        v128_t s0 = wasm_i32x4_splat(0), s1 = s0, s2 = s0, s3 = s0;
        for (u32 k = 0; k < kp; k += 8) {
            v128_t x = wasm_v128_load(a0 + k);
            DOT(s0, x, wasm_v128_load(b0 + k));
            DOT(s1, x, wasm_v128_load(b1 + k));
            DOT(s2, x, wasm_v128_load(b2 + k));
            DOT(s3, x, wasm_v128_load(b3 + k));
        }
        wasm_v128_store(c0 + j, reduce4(s0, s1, s2, s3));
    }
    for (; j < n; j++) {
        const short *b0 = b + j * kp;
        v128_t s0 = wasm_i32x4_splat(0);
        for (u32 k = 0; k < kp; k += 8) DOT(s0, wasm_v128_load(a0 + k), wasm_v128_load(b0 + k));
        c0[j] = lanes_sum(s0);
    }
}

// C[i, j] = sum_k a[i, k] * b[j, k] over packed rows of kp int16 (pack_i8); C int32 with rows ldc apart.
__attribute__((export_name("qgemm")))
void qgemm(u32 m, u32 n, u32 kp, const short *a, const short *b, i32 *c, u32 ldc) {
    u32 i = 0;
    for (; i + 2 <= m; i += 2) {
        const short *a0 = a + i * kp, *a1 = a0 + kp;
        i32 *c0 = c + i * ldc, *c1 = c0 + ldc;
        u32 j = 0;
        for (; j + 4 <= n; j += 4) {
            const short *b0 = b + j * kp, *b1 = b0 + kp, *b2 = b1 + kp, *b3 = b2 + kp;
            v128_t s00 = wasm_i32x4_splat(0), s01 = s00, s02 = s00, s03 = s00;
            v128_t s10 = s00, s11 = s00, s12 = s00, s13 = s00;
            for (u32 k = 0; k < kp; k += 8) {
                v128_t x0 = wasm_v128_load(a0 + k), x1 = wasm_v128_load(a1 + k);
                v128_t y = wasm_v128_load(b0 + k);
                DOT(s00, x0, y);
                DOT(s10, x1, y);
                y = wasm_v128_load(b1 + k);
                DOT(s01, x0, y);
                DOT(s11, x1, y);
                y = wasm_v128_load(b2 + k);
                DOT(s02, x0, y);
                DOT(s12, x1, y);
                y = wasm_v128_load(b3 + k);
                DOT(s03, x0, y);
                DOT(s13, x1, y);
            }
            wasm_v128_store(c0 + j, reduce4(s00, s01, s02, s03));
            wasm_v128_store(c1 + j, reduce4(s10, s11, s12, s13));
        }
        for (; j < n; j++) {
            const short *b0 = b + j * kp;
            v128_t s0 = wasm_i32x4_splat(0), s1 = s0;
            for (u32 k = 0; k < kp; k += 8) {
                v128_t y = wasm_v128_load(b0 + k);
                DOT(s0, wasm_v128_load(a0 + k), y);
                DOT(s1, wasm_v128_load(a1 + k), y);
            }
            c0[j] = lanes_sum(s0);
            c1[j] = lanes_sum(s1);
        }
    }
    if (i < m) row1(n, kp, a + i * kp, b, c + i * ldc);
}
