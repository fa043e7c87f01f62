{{ENABLE}}
// common.wgsl: prepended to every kernel (devices/gpu/device.py `render`).
//
// P is the per-dispatch parameter block: 128 32-bit words (shapes, strides,
// scalars) at binding 0. A builder (devices/gpu/*_kernels.py) declares its
// words by name (devices/gpu/uniforms.py), rendered at the file's UNIFORMS
// placeholder as constants holding their indices, so a kernel reads
// pu(mm_K), never a bare index. Shapes live here, not in the source: only
// the values GpuDevice.program keys `by_shape` recompile.
struct Params { v: array<vec4<u32>, 32>, }
@group(0) @binding(0) var<uniform> P: Params;

fn pu(i: u32) -> u32 { return P.v[i >> 2u][i & 3u]; }
fn pi(i: u32) -> i32 { return bitcast<i32>(pu(i)); }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }

// The linear index of an invocation in a 1-D kernel dispatched on a 2-D grid
// (the grid wraps past 65535 workgroups per dimension).
fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * {{WG}}u; }

// ---- math that WGSL lacks or leaves undefined where ONNX defines it

// Infinity and NaN from bit patterns held in a `let`: WGSL forbids a *constant* expression that evaluates
// to either (Tint, the browsers' compiler, rejects `bitcast<f32>(0x7f800000u)`; naga lets it pass).
fn wi_inf() -> f32 { let bits = 0x7f800000u; return bitcast<f32>(bits); }
fn wi_nan() -> f32 { let bits = 0x7fc00000u; return bitcast<f32>(bits); }

// log with ONNX's (IEEE) edge values: -inf at 0, NaN below; WGSL leaves those undefined and
// SwiftShader returns -88 and 0.
fn wi_log(x: f32) -> f32 { return select(select(log(x), -wi_inf(), x == 0.0), wi_nan(), x < 0.0); }

// erf: the float32 rational approximation the CPU kernels use (ops/elementwise.py), a few ulp.
fn wi_erf(x0: f32) -> f32 {
    let x = clamp(x0, -4.0, 4.0);
    let x2 = x * x;
    var p = -2.72614225801306e-10 * x2 + 2.77068142495902e-08;
    p = p * x2 - 2.10102402082508e-06;
    p = p * x2 - 5.69250639462346e-05;
    p = p * x2 - 7.34990630326855e-04;
    p = p * x2 - 2.95459980854025e-03;
    p = p * x2 - 1.60960333262415e-02;
    p = p * x;
    var q = -1.45660718464996e-05 * x2 - 2.13374055278905e-04;
    q = q * x2 - 1.68282697438203e-03;
    q = q * x2 - 7.37332916720468e-03;
    q = q * x2 - 1.42647390514189e-02;
    return p / q;
}

// tanh without the inf/inf of exp-based formulas at large |x|, and accurate near 0.
fn wi_tanh(x: f32) -> f32 {
    let a = abs(x);
    if (a < 0.0625) {
        let x2 = x * x;
        return x * (1.0 + x2 * (-0.333333333 + x2 * (0.133333333 - x2 * 0.053968254)));
    }
    let e = exp(-2.0 * a);
    let t = (1.0 - e) / (1.0 + e);
    return select(-t, t, x >= 0.0);
}

// pow with numpy's answers for negative bases and integral exponents.
fn wi_pow(a: f32, b: f32) -> f32 {
    if (b == 0.0) { return 1.0; }
    if (a < 0.0 && b == floor(b)) {
        let r = pow(-a, b);
        return select(r, -r, abs(b) % 2.0 == 1.0);
    }
    return pow(a, b);
}

fn wi_sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}

fn wi_isnan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn wi_isinf(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u; }

// C fmod (the dividend's sign), with fmod(x, +-inf) = x for finite x.
fn wi_fmod(a: f32, b: f32) -> f32 {
    if (wi_isinf(b) && !wi_isinf(a) && !wi_isnan(a)) { return a; }
    return a - b * trunc(a / b);
}

// numpy.mod: the result takes the divisor's sign.
fn wi_mod(a: f32, b: f32) -> f32 {
    let r = wi_fmod(a, b);
    return select(r, r + b, r != 0.0 && ((r < 0.0) != (b < 0.0)));
}

// integer power by squaring (numpy's integer **; negative exponents give 0 except for bases +-1)
fn wi_ipow(a: i32, b: i32) -> i32 {
    if (b < 0) { return select(select(0, 1, a == 1), select(1, -1, (b & 1) != 0), a == -1); }
    var r = 1;
    var base = a;
    var e = b;
    loop {
        if (e == 0) { break; }
        if ((e & 1) != 0) { r = r * base; }
        base = base * base;
        e = e >> 1;
    }
    return r;
}
