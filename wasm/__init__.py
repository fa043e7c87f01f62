"""WebAssembly SIMD kernels: C sources here; build_wasm.py compiles them into the wheel as `.wasm` package data,
which runtime/gemm.py instantiates on Pyodide's memory (a checkout or a wheel built without clang has none)."""
