"""Devices that run kernels: `cpu` (numpy) and `gpu/` (WGSL through wgpu or the browser's WebGPU)."""
