// conv2d.wgsl: Conv (implicit GEMM, depthwise) and ConvTranspose over NCHW (1-D as H = 1).
//
// Storage T is f32 or f16 (arithmetic in f32). Bias, a residual with the output's layout (Conv + Add shortcut) and the fused
// activation are applied in the write. 1x1 convolutions go to matmul.wgsl instead.
// Weights are read in their ONNX layout: W [M, C/G, KH, KW], ConvTranspose W [C, M/G, KH, KW].
//
// Uniforms (named: conv_kernels.py's CONV2D): N, C (input channels), H, W, M (output channels), OH,
// OW, G (groups), Cg = C/G, Mg = M/G, KH, KW, the strides, dilations and pads (top, left; i32).
{{UNIFORMS}}
{{DECLS}}

fn act(x: f32) -> f32 { return {{ACT}}; }
fn bias_at(m: u32) -> f32 { return {{BIAS_AT}}; }
fn res_at(at: u32) -> f32 { return {{RES_AT}}; }
fn finish(m: u32, at: u32, v: f32) -> f32 { return act(v + bias_at(m) + res_at(at)); }

// direct: implicit GEMM; each invocation computes 4 output channels (of one group) x 4 output
// pixels from scalar loads, the im2col matrix never materialised.
// Grid: x = pixel blocks, y = channel blocks within a group, z = N * G.
@compute @workgroup_size(8, 8, 1)
fn direct(@builtin(global_invocation_id) gid: vec3<u32>) {
    let C = pu(cv_C); let H = pu(cv_H); let W = pu(cv_W); let M = pu(cv_M); let OW = pu(cv_OW);
    let G = pu(cv_G); let Cg = pu(cv_Cg); let Mg = pu(cv_Mg); let KH = pu(cv_KH); let KW = pu(cv_KW);
    let P = pu(cv_OH) * OW;
    let p0 = gid.x * 4u;
    let mg0 = gid.y * 4u;
    let n = gid.z / G;
    let g = gid.z % G;
    if (p0 >= P || mg0 >= Mg) { return; }
    let pv = min(vec4<u32>(p0, p0 + 1u, p0 + 2u, p0 + 3u), vec4<u32>(P - 1u));
    let iy0 = vec4<i32>(pv / OW) * pi(cv_stride_y) - vec4<i32>(pi(cv_pad_top));
    let ix0 = vec4<i32>(pv % OW) * pi(cv_stride_x) - vec4<i32>(pi(cv_pad_left));
    let kk = Cg * KH * KW;
    let w0 = (g * Mg + mg0) * kk;
    let w1 = (g * Mg + min(mg0 + 1u, Mg - 1u)) * kk;
    let w2 = (g * Mg + min(mg0 + 2u, Mg - 1u)) * kk;
    let w3 = (g * Mg + min(mg0 + 3u, Mg - 1u)) * kk;
    let Hi = i32(H);
    let Wi = i32(W);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var c = 0u; c < Cg; c++) {
        let xc = i32((n * C + g * Cg + c) * H * W);
        for (var ky = 0u; ky < KH; ky++) {
            let iy = iy0 + vec4<i32>(i32(ky) * pi(cv_dilation_y));
            let oky = (iy >= vec4<i32>(0)) & (iy < vec4<i32>(Hi));
            for (var kx = 0u; kx < KW; kx++) {
                let ix = ix0 + vec4<i32>(i32(kx) * pi(cv_dilation_x));
                let ok = oky & (ix >= vec4<i32>(0)) & (ix < vec4<i32>(Wi));
                let at = vec4<u32>(max(vec4<i32>(xc) + iy * Wi + ix, vec4<i32>(0)));
                let xv = vec4<f32>(select(0.0, f32(X[at.x]), ok.x), select(0.0, f32(X[at.y]), ok.y),
                                   select(0.0, f32(X[at.z]), ok.z), select(0.0, f32(X[at.w]), ok.w));
                let k = (c * KH + ky) * KW + kx;
                acc0 += f32(Wt[w0 + k]) * xv;
                acc1 += f32(Wt[w1 + k]) * xv;
                acc2 += f32(Wt[w2 + k]) * xv;
                acc3 += f32(Wt[w3 + k]) * xv;
            }
        }
    }
    store4(n, g * Mg + mg0, p0, P, acc0);
    if (mg0 + 1u < Mg) { store4(n, g * Mg + mg0 + 1u, p0, P, acc1); }
    if (mg0 + 2u < Mg) { store4(n, g * Mg + mg0 + 2u, p0, P, acc2); }
    if (mg0 + 3u < Mg) { store4(n, g * Mg + mg0 + 3u, p0, P, acc3); }
}

fn store4(n: u32, m: u32, p0: u32, P: u32, v: vec4<f32>) {
    let at = (n * pu(cv_M) + m) * P + p0;
    Y[at] = {{T}}(finish(m, at, v.x));
    if (p0 + 1u < P) { Y[at + 1u] = {{T}}(finish(m, at + 1u, v.y)); }
    if (p0 + 2u < P) { Y[at + 2u] = {{T}}(finish(m, at + 2u, v.z)); }
    if (p0 + 3u < P) { Y[at + 3u] = {{T}}(finish(m, at + 3u, v.w)); }
}

// depthwise: G == C (M = C * multiplier); each invocation computes 4 adjacent output pixels of one
// (n, m) plane. Grid: 1-D over N * M * ceil(P / 4).
@compute @workgroup_size({{WG}})
fn depthwise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let C = pu(cv_C); let H = pu(cv_H); let W = pu(cv_W); let M = pu(cv_M); let OW = pu(cv_OW);
    let Mg = pu(cv_Mg); let KH = pu(cv_KH); let KW = pu(cv_KW);
    let P = pu(cv_OH) * OW;
    let blocks = (P + 3u) / 4u;
    let t = linear_id(gid, nwg);
    if (t >= pu(cv_N) * M * blocks) { return; }
    let p0 = (t % blocks) * 4u;
    let m = (t / blocks) % M;
    let n = t / (blocks * M);
    let c = m / Mg;
    let pv = min(vec4<u32>(p0, p0 + 1u, p0 + 2u, p0 + 3u), vec4<u32>(P - 1u));
    let iy0 = vec4<i32>(pv / OW) * pi(cv_stride_y) - vec4<i32>(pi(cv_pad_top));
    let ix0 = vec4<i32>(pv % OW) * pi(cv_stride_x) - vec4<i32>(pi(cv_pad_left));
    let xc = i32((n * C + c) * H * W);
    let Hi = i32(H);
    let Wi = i32(W);
    var acc = vec4<f32>(0.0);
    for (var ky = 0u; ky < KH; ky++) {
        let iy = iy0 + vec4<i32>(i32(ky) * pi(cv_dilation_y));
        let oky = (iy >= vec4<i32>(0)) & (iy < vec4<i32>(Hi));
        for (var kx = 0u; kx < KW; kx++) {
            let ix = ix0 + vec4<i32>(i32(kx) * pi(cv_dilation_x));
            let ok = oky & (ix >= vec4<i32>(0)) & (ix < vec4<i32>(Wi));
            let at = vec4<u32>(max(vec4<i32>(xc) + iy * Wi + ix, vec4<i32>(0)));
            let xv = vec4<f32>(select(0.0, f32(X[at.x]), ok.x), select(0.0, f32(X[at.y]), ok.y),
                               select(0.0, f32(X[at.z]), ok.z), select(0.0, f32(X[at.w]), ok.w));
            acc += f32(Wt[(m * KH + ky) * KW + kx]) * xv;
        }
    }
    store4(n, m, p0, P, acc);
}

// transpose: ConvTranspose as a gather, one invocation per output element: the input pixels
// that land on (oy, ox) through kernel tap (ky, kx) are those with iy * stride = oy + pad - ky * dilation.
@compute @workgroup_size({{WG}})
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let C = pu(cv_C); let H = pu(cv_H); let W = pu(cv_W); let M = pu(cv_M); let OH = pu(cv_OH); let OW = pu(cv_OW);
    let Cg = pu(cv_Cg); let Mg = pu(cv_Mg); let KH = pu(cv_KH); let KW = pu(cv_KW);
    let SY = pi(cv_stride_y); let SX = pi(cv_stride_x);
    let t = linear_id(gid, nwg);
    let P = OH * OW;
    if (t >= pu(cv_N) * M * P) { return; }
    let p = t % P;
    let m = (t / P) % M;
    let n = t / (P * M);
    let g = m / Mg;
    let mm = m % Mg;
    let oy = i32(p / OW) + pi(cv_pad_top);
    let ox = i32(p % OW) + pi(cv_pad_left);
    var acc = 0.0;
    for (var c = 0u; c < Cg; c++) {
        let ci = g * Cg + c;
        let xc = (n * C + ci) * H * W;
        let wc = (ci * Mg + mm) * KH * KW;
        for (var ky = 0u; ky < KH; ky++) {
            let ty = oy - i32(ky) * pi(cv_dilation_y);
            if (ty < 0 || ty % SY != 0) { continue; }
            let iy = ty / SY;
            if (iy >= i32(H)) { continue; }
            for (var kx = 0u; kx < KW; kx++) {
                let tx = ox - i32(kx) * pi(cv_dilation_x);
                if (tx < 0 || tx % SX != 0) { continue; }
                let ix = tx / SX;
                if (ix >= i32(W)) { continue; }
                acc += f32(X[xc + u32(iy) * W + u32(ix)]) * f32(Wt[wc + ky * KW + kx]);
            }
        }
    }
    Y[t] = {{T}}(finish(m, t, acc));
}
