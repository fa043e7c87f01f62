// matmul.wgsl: C[z, m, n] = act(alpha * sum_k A[z, m, k] * B[z, k, n] + beta * bias[m, n])
//
// Serves MatMul, Gemm, webinfer.FusedMatMul and 1x1 Conv (bias per row, optional residual). Operands are read
// through strides (transposed operands and broadcast batches cost nothing),
// the output is contiguous [batch, M, N]. Two schedules:
//   regblock: each invocation computes a 4x4 block from vec4 loads, no shared
//             memory (on CPU emulations barriers and shared arrays are slow);
//   tiled:    64x64 tiles staged through workgroup memory, 4x4 per invocation;
//   tiled8:   128x128 tiles, 8x8 per invocation (large products on discrete GPUs).
// The memory-access forms come from matmul_kernels.py: vec4 loads where an
// operand is contiguous along the loaded axis and 4-aligned, scalar otherwise.
//
// Uniforms (named: matmul_kernels.py's MATMUL declares them): M, N, K, batch, A's row (m) and k
// strides, B's k and column (n) strides, the bias's m and n strides, alpha and beta (f32), then
// BR output batch dims, A batch strides and B batch strides.
{{UNIFORMS}}
const BR: u32 = {{BR}}u;
{{DECLS}}

fn act(x: f32) -> f32 { return {{ACT}}; }

fn batch_offsets(z: u32) -> vec2<u32> {
    var rem = z;
    var oa = 0u;
    var ob = 0u;
    for (var j = 0u; j < BR; j++) {
        let k = BR - 1u - j;
        let dim = pu(mm_out_dims + k);
        let c = rem % dim;
        rem = rem / dim;
        oa += c * pu(mm_a_batch + k);
        ob += c * pu(mm_b_batch + k);
    }
    return vec2<u32>(oa, ob);
}

// A[base + k .. k+3 along K]; base = batch offset + m * A row stride
fn load_a4(base: u32, k: u32) -> vec4<f32> { return {{LOAD_A4}}; }
fn load_a1(base: u32, k: u32) -> f32 { return {{LOAD_A1}}; }
// B[base + n .. n+3 along N]; base = batch offset + k * B k stride (columns past N are clamped)
fn load_b4(base: u32, n: u32) -> vec4<f32> { return {{LOAD_B4}}; }
fn load_b1(base: u32, n: u32) -> f32 { return {{LOAD_B1}}; }
fn bias_at(m: u32, n: u32) -> f32 { return {{BIAS_AT}}; }
// a residual with the output's layout, added before the activation (Conv's fused shortcut)
fn res_at(at: u32) -> f32 { return {{RES_AT}}; }

fn finish(m: u32, n: u32, at: u32, v: f32) -> f32 {
    let N = pu(mm_N);
    let nc = min(n, N - 1u);
    return act(v * pf(mm_alpha) + pf(mm_beta) * bias_at(m, nc) + res_at(at - n + nc));
}

fn store_row(z: u32, m: u32, n0: u32, v: vec4<f32>) {
    let N = pu(mm_N);
    let at = (z * pu(mm_M) + m) * N + n0;
    let r = vec4<f32>(finish(m, n0, at, v.x), finish(m, n0 + 1u, at + 1u, v.y), finish(m, n0 + 2u, at + 2u, v.z),
                      finish(m, n0 + 3u, at + 3u, v.w));
{{STORE}}
}

@compute @workgroup_size(8, 8, 1)
fn regblock(@builtin(global_invocation_id) gid: vec3<u32>) {
    let M = pu(mm_M);
    let N = pu(mm_N);
    let K = pu(mm_K);
    let n0 = gid.x * 4u;
    let m0 = gid.y * 4u;
    let z = gid.z;
    if (n0 >= N || m0 >= M) { return; }
    let offs = batch_offsets(z);
    let sam = pu(mm_a_row);
    let sbk = pu(mm_b_k);
    let r0 = offs.x + m0 * sam;
    let r1 = offs.x + min(m0 + 1u, M - 1u) * sam;
    let r2 = offs.x + min(m0 + 2u, M - 1u) * sam;
    let r3 = offs.x + min(m0 + 3u, M - 1u) * sam;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let K4 = K & ~3u;
    for (var k = 0u; k < K4; k += 4u) {
        let kb = offs.y + k * sbk;
        let b0 = load_b4(kb, n0);
        let b1 = load_b4(kb + sbk, n0);
        let b2 = load_b4(kb + 2u * sbk, n0);
        let b3 = load_b4(kb + 3u * sbk, n0);
        let a0 = load_a4(r0, k);
        let a1 = load_a4(r1, k);
        let a2 = load_a4(r2, k);
        let a3 = load_a4(r3, k);
        acc0 += a0.x * b0 + a0.y * b1 + a0.z * b2 + a0.w * b3;
        acc1 += a1.x * b0 + a1.y * b1 + a1.z * b2 + a1.w * b3;
        acc2 += a2.x * b0 + a2.y * b1 + a2.z * b2 + a2.w * b3;
        acc3 += a3.x * b0 + a3.y * b1 + a3.z * b2 + a3.w * b3;
    }
    for (var k = K4; k < K; k++) {
        let b = load_b4(offs.y + k * sbk, n0);
        acc0 += load_a1(r0, k) * b;
        acc1 += load_a1(r1, k) * b;
        acc2 += load_a1(r2, k) * b;
        acc3 += load_a1(r3, k) * b;
    }
    store_row(z, m0, n0, acc0);
    if (m0 + 1u < M) { store_row(z, m0 + 1u, n0, acc1); }
    if (m0 + 2u < M) { store_row(z, m0 + 2u, n0, acc2); }
    if (m0 + 3u < M) { store_row(z, m0 + 3u, n0, acc3); }
}

// A[m, k] and B[k, n] of the matrices at offs (batch offsets), 0 outside them: what the tiled schedules
// stage in workgroup memory
fn tile_a(offs: vec2<u32>, m: u32, k: u32) -> f32 {
    let M = pu(mm_M);
    let K = pu(mm_K);
    return select(0.0, load_a1(offs.x + min(m, M - 1u) * pu(mm_a_row), min(k, K - 1u)), m < M && k < K);
}
fn tile_b(offs: vec2<u32>, k: u32, n: u32) -> f32 {
    let N = pu(mm_N);
    let K = pu(mm_K);
    return select(0.0, load_b1(offs.y + min(k, K - 1u) * pu(mm_b_k), min(n, N - 1u)), k < K && n < N);
}

var<workgroup> As: array<f32, 1024>;  // [16 k][64 m]
var<workgroup> Bs: array<f32, 1024>;  // [16 k][64 n]

@compute @workgroup_size(16, 16, 1)
fn tiled(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let M = pu(mm_M);
    let N = pu(mm_N);
    let K = pu(mm_K);
    let z = wid.z;
    let offs = batch_offsets(z);
    let tm = wid.y * 64u;
    let tn = wid.x * 64u;
    let tid = lid.y * 16u + lid.x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < K; k0 += 16u) {
        for (var e = 0u; e < 4u; e++) {
            let idx = tid + e * 256u;
            let kk = idx % 16u;
            let mm = idx / 16u;
            As[kk * 64u + mm] = tile_a(offs, tm + mm, k0 + kk);
            let nn = idx % 64u;
            let kr = idx / 64u;
            Bs[kr * 64u + nn] = tile_b(offs, k0 + kr, tn + nn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let ab = kk * 64u + lid.y * 4u;
            let bb = kk * 64u + lid.x * 4u;
            let a = vec4<f32>(As[ab], As[ab + 1u], As[ab + 2u], As[ab + 3u]);
            let b = vec4<f32>(Bs[bb], Bs[bb + 1u], Bs[bb + 2u], Bs[bb + 3u]);
            acc0 += a.x * b;
            acc1 += a.y * b;
            acc2 += a.z * b;
            acc3 += a.w * b;
        }
        workgroupBarrier();
    }
    let m0 = tm + lid.y * 4u;
    let n0 = tn + lid.x * 4u;
    if (n0 < N) {
        if (m0 < M) { store_row(z, m0, n0, acc0); }
        if (m0 + 1u < M) { store_row(z, m0 + 1u, n0, acc1); }
        if (m0 + 2u < M) { store_row(z, m0 + 2u, n0, acc2); }
        if (m0 + 3u < M) { store_row(z, m0 + 3u, n0, acc3); }
    }
}

var<workgroup> As8: array<f32, 2048>;  // [16 k][128 m]
var<workgroup> Bs8: array<f32, 2048>;  // [16 k][128 n]

// tiled8: 128x128 tiles through workgroup memory (16 KiB, WebGPU's default limit), 8x8 outputs per
// invocation: twice the arithmetic per shared-memory load of `tiled`, for large products on GPUs.
@compute @workgroup_size(16, 16, 1)
fn tiled8(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let M = pu(mm_M);
    let N = pu(mm_N);
    let K = pu(mm_K);
    let z = wid.z;
    let offs = batch_offsets(z);
    let tm = wid.y * 128u;
    let tn = wid.x * 128u;
    let tid = lid.y * 16u + lid.x;
    var acc: array<vec4<f32>, 16>;
    for (var r = 0u; r < 16u; r++) { acc[r] = vec4<f32>(0.0); }
    for (var k0 = 0u; k0 < K; k0 += 16u) {
        for (var e = 0u; e < 8u; e++) {
            let idx = tid + e * 256u;
            let kk = idx % 16u;
            let mm = idx / 16u;
            As8[kk * 128u + mm] = tile_a(offs, tm + mm, k0 + kk);
            let nn = idx % 128u;
            let kr = idx / 128u;
            Bs8[kr * 128u + nn] = tile_b(offs, k0 + kr, tn + nn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let ab = kk * 128u + lid.y * 8u;
            let bb = kk * 128u + lid.x * 8u;
            let b0 = vec4<f32>(Bs8[bb], Bs8[bb + 1u], Bs8[bb + 2u], Bs8[bb + 3u]);
            let b1 = vec4<f32>(Bs8[bb + 4u], Bs8[bb + 5u], Bs8[bb + 6u], Bs8[bb + 7u]);
            for (var r = 0u; r < 8u; r++) {
                let a = As8[ab + r];
                acc[2u * r] += a * b0;
                acc[2u * r + 1u] += a * b1;
            }
        }
        workgroupBarrier();
    }
    let m0 = tm + lid.y * 8u;
    let n0 = tn + lid.x * 8u;
    for (var r = 0u; r < 8u; r++) {
        if (m0 + r < M) {
            if (n0 < N) { store_row(z, m0 + r, n0, acc[2u * r]); }
            if (n0 + 4u < N) { store_row(z, m0 + r, n0 + 4u, acc[2u * r + 1u]); }
        }
    }
}
