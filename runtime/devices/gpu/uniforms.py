"""Named uniform blocks: each kernel declares its parameter words by name, the WGSL reads them by name.

Every kernel gets its shapes, strides and scalars in the 128-word uniform
block `P` (common.wgsl), read with `pu`/`pi`/`pf(index)`.  A `Uniforms`
declares a kernel's words in order, each a scalar or a fixed-length array:

    MATMUL = Uniforms("mm", ("M", "N", "K", ..., ("out_dims", 4)))

It renders as WGSL constants holding the word indices (`const mm_M: u32 = 0u;`,
`const mm_out_dims: u32 = 12u;`), injected at the file's `{{UNIFORMS}}`
placeholder by the same plain string templating as every other template
value (device.py `render`), so the .wgsl files stay shared verbatim by
native wgpu and the browser's WebGPU; the shader reads `pu(mm_K)`,
`pf(mm_alpha)`, `pu(mm_out_dims + k)`.  `pack(**words)` lays the values
out for a dispatch and checks that the names are exactly the declared ones
and that arrays fit their length, so a builder and its shader cannot drift
apart word by word.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ...errors import DeviceError

#: Words in the parameter block (common.wgsl's `Params`).
PARAM_SLOTS = 128

Value = int | float


@dataclass(frozen=True)
class Uniforms:
    """One kernel's uniform words: `prefix` names its WGSL constants (`<prefix>_<word>`); each word is a
    name (one word) or (name, length) for an array, in block order."""

    prefix: str
    words: tuple[str | tuple[str, int], ...]
    #: name -> (first word, length); arrays are the words declared with a length, even of 1.
    offsets: dict[str, tuple[int, int]] = field(init=False, repr=False, compare=False)
    arrays: frozenset[str] = field(init=False, repr=False, compare=False)
    #: The WGSL constants naming each word's index (rendered once: pipelines are looked up per dispatch).
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        offsets: dict[str, tuple[int, int]] = {}
        at = 0
        for word in self.words:
            name, length = (word, 1) if isinstance(word, str) else word
            if name in offsets or length < 1:
                raise ValueError(f"{self.prefix}: word {name!r} is declared twice or has no length")
            offsets[name] = (at, length)
            at += length
        object.__setattr__(self, "arrays", frozenset(w[0] for w in self.words if not isinstance(w, str)))
        object.__setattr__(self, "text", "\n".join(f"const {self.prefix}_{name}: u32 = {at}u;"
                                                   for name, (at, _) in offsets.items()))
        if at > PARAM_SLOTS:
            raise ValueError(f"{self.prefix}: {at} words exceed the {PARAM_SLOTS} of the parameter block")
        object.__setattr__(self, "offsets", offsets)

    @property
    def size(self) -> int:
        return sum(length for _, length in self.offsets.values())

    def pack(self, **values: Value | Sequence[Value]) -> list[Value]:
        """The words in block order; arrays shorter than their length are padded with zeros. A missing or
        unknown name, a scalar for an array or an array too long is an error naming the word."""
        missing = [n for n in self.offsets if n not in values]
        unknown = [n for n in values if n not in self.offsets]
        if missing or unknown:
            raise DeviceError(f"uniforms {self.prefix}: missing {missing}, unknown {unknown}")
        out: list[Value] = []
        for name, (_, length) in self.offsets.items():
            v = values[name]
            if name not in self.arrays:
                if not isinstance(v, (int, float)):
                    raise DeviceError(f"uniforms {self.prefix}: {name} is one word, got {v!r}")
                out.append(v)
                continue
            if isinstance(v, (int, float)) or len(v) > length:
                raise DeviceError(f"uniforms {self.prefix}: {name} takes up to {length} words, got {v!r}")
            out.extend(v)
            out.extend([0] * (length - len(v)))
        return out


def declare(*layouts: Uniforms) -> str:
    """The `UNIFORMS` template value of a file: the constants of every layout its entry points use (a
    module is compiled whole, so each entry point's names must exist in all of them)."""
    return "\n".join(u.text for u in layouts)
