"""Which WGSL kernel serves which op: the GPU's op table.

`KERNELS[(domain, op_type)]` names the WGSL file and entry points that run
the op and the builder that turns a node into a kernel (see common.py for
the builder contract).  `GPU_OPS` is the set of op types with a kernel
(tools/op_table.py prints it in the README's op table).

Layout conventions, shared by all kernels: bindings are 0 = the uniform
parameter block `P` (common.wgsl), then inputs, then outputs; 1-D kernels
use `WG` (common.py) invocations per workgroup on a grid that wraps past
65535 workgroups.  The words of `P` are named (uniforms.py): each builder
declares them, the WGSL reads them by name, and the packing checks them.
"""

from __future__ import annotations

from . import attention_kernels, conv_kernels, elementwise_kernels, layout_kernels, matmul_kernels, norm_kernels
from .device import KernelSpec

KERNELS: dict[tuple[str, str], KernelSpec] = {
    key: KernelSpec(file, entries, build, host_outputs=key in layout_kernels.HOST_OUTPUTS)
    for family in (elementwise_kernels, layout_kernels, matmul_kernels, norm_kernels, conv_kernels, attention_kernels)
    for key, (file, entries, build) in family.SPECS.items()
}

#: Op types with a WGSL kernel (any domain).
GPU_OPS: frozenset[str] = frozenset(op for _, op in KERNELS)
