// wasm/conv.c's depthwise2d, two builds ("base", "head") timed interleaved in one engine on MobileNetV3-small's
// depthwise layers (224x224 input), their outputs compared.  An expression evaluating to an async function of
// {bytes: {base: number[], head: number[]}, rounds}; benchmarks/bench_wasm_depthwise.py runs it in Node.js
// and in Chromium.
async ({ bytes, rounds }) => {
  const memory = new WebAssembly.Memory({ initial: 2048 });
  const mods = {};
  for (const k of ["base", "head"]) {
    mods[k] = (await WebAssembly.instantiate(new Uint8Array(bytes[k]), { env: { memory } })).instance.exports;
  }
  const f32 = new Float32Array(memory.buffer);
  let top = 1024;  // float index of the next free block (the modules use no memory of their own)
  const alloc = (n) => { const p = top; top += (n + 15) & ~15; return p; };
  // [channels, h, w, k, stride]
  const shapes = [[16, 112, 112, 3, 2], [72, 56, 56, 3, 2], [88, 28, 28, 3, 1], [96, 28, 28, 5, 2],
    [240, 14, 14, 5, 1], [120, 14, 14, 5, 1], [144, 14, 14, 5, 1], [288, 14, 14, 5, 2], [576, 7, 7, 5, 1]];
  let seed = 1;
  const rnd = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 31 - 1; };
  const median = (a) => a.sort((p, q) => p - q)[a.length >> 1];
  const rows = [];
  for (const [ch, h, wd, k, s] of shapes) {
    const pad = (k - 1) >> 1;
    const oh = Math.floor((h + 2 * pad - k) / s) + 1, ow = Math.floor((wd + 2 * pad - k) / s) + 1;
    const hp = Math.max(pad + h, (oh - 1) * s + k), wp = Math.max(pad + wd, Math.ceil(ow / 4) * 4 * s + k - 1);
    const x = alloc(ch * h * wd), w = alloc(ch * k * k), b = alloc(ch), scratch = alloc(hp * wp);
    const y = { base: alloc(ch * oh * ow), head: alloc(ch * oh * ow) };
    for (let i = 0; i < ch * h * wd; i++) f32[x + i] = rnd();
    for (let i = 0; i < ch * k * k; i++) f32[w + i] = rnd();
    for (let i = 0; i < ch; i++) f32[b + i] = rnd();
    // act 4: HardSwish, as MobileNetV3's
    const call = (m) => mods[m].depthwise2d(4 * x, 4 * y[m], 4 * w, 4 * b, ch, ch, h, wd, oh, ow, k, k, s, s, pad, pad,
                                            4 * scratch, hp, wp, 4, 0, 0);
    for (let i = 0; i < 30; i++) { call("base"); call("head"); }
    let maxDiff = 0;
    for (let i = 0; i < ch * oh * ow; i++) maxDiff = Math.max(maxDiff, Math.abs(f32[y.base + i] - f32[y.head + i]));
    const t = { base: [], head: [] };
    for (let r = 0; r < rounds; r++) {
      for (const m of r % 2 ? ["base", "head"] : ["head", "base"]) {
        const t0 = performance.now();
        for (let i = 0; i < 10; i++) call(m);
        t[m].push((performance.now() - t0) / 10);
      }
    }
    rows.push({ layer: `${ch}x${h}x${wd} k${k} s${s} -> ${oh}x${ow}`, base_ms: median(t.base), head_ms: median(t.head),
                max_diff: maxDiff });
  }
  return rows;
}
