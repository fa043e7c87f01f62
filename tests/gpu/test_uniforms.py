"""Named uniform blocks (devices/gpu/uniforms.py): the words a builder packs are the ones its WGSL names.

Pure Python (no adapter needed): layouts, packing checks, and that every
kernel file reads its words by name, none by position.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webinfer.devices.gpu import (attention_kernels, conv_kernels, elementwise_kernels, layout_kernels, matmul_kernels,
                                  norm_kernels)
from webinfer.devices.gpu.device import wgsl_source

WGSL_DIR = Path(__file__).resolve().parents[2] / "wgsl"
from webinfer.devices.gpu.uniforms import Uniforms
from webinfer.errors import DeviceError


def test_layout_offsets_constants_and_packing() -> None:
    u = Uniforms("t", ("n", ("dims", 3), "alpha"))
    assert u.offsets == {"n": (0, 1), "dims": (1, 3), "alpha": (4, 1)} and u.size == 5
    assert u.text.splitlines() == ["const t_n: u32 = 0u;", "const t_dims: u32 = 1u;", "const t_alpha: u32 = 4u;"]
    assert u.pack(alpha=0.5, n=7, dims=[2, 3]) == [7, 2, 3, 0, 0.5]  # arrays padded, order from the layout


@pytest.mark.parametrize("words, match", [
    (dict(n=1, dims=[1]), r"missing \['alpha'\]"),
    (dict(n=1, dims=[1], alpha=1.0, beta=2.0), r"unknown \['beta'\]"),
    (dict(n=[1], dims=[1], alpha=1.0), "n is one word"),
    (dict(n=1, dims=[1, 2, 3, 4], alpha=1.0), "dims takes up to 3 words"),
])
def test_packing_refuses_wrong_words(words: dict, match: str) -> None:
    with pytest.raises(DeviceError, match=match):
        Uniforms("t", ("n", ("dims", 3), "alpha")).pack(**words)


def test_a_layout_must_fit_the_block() -> None:
    with pytest.raises(ValueError, match="exceed the 128"):
        Uniforms("big", (("a", 100), ("b", 29)))
    with pytest.raises(ValueError, match="declared twice"):
        Uniforms("dup", ("a", "a"))


@pytest.mark.parametrize("file, layouts", [
    ("matmul.wgsl", (matmul_kernels.MATMUL,)),
    ("conv2d.wgsl", (conv_kernels.CONV2D,)),
    ("softmax.wgsl", (norm_kernels.SOFTMAX,)),
    ("layernorm.wgsl", (norm_kernels.LAYERNORM,)),
    ("elementwise.wgsl", (elementwise_kernels.uniforms_of(2, 4),)),
    ("attention.wgsl", (attention_kernels.ATTENTION,)),
    ("attention_scores.wgsl", (attention_kernels.ATTENTION,)),
    ("attention_mask.wgsl", (attention_kernels.ATTENTION,)),
    ("copy.wgsl", layout_kernels.copy_uniforms(3)),
    ("gather.wgsl", layout_kernels.gather_uniforms(2)),
    ("resize.wgsl", (layout_kernels.resize_uniforms(2),)),
    ("pool.wgsl", (conv_kernels.pool_uniforms(2),)),
    ("reduce.wgsl", (norm_kernels.reduce_uniforms(1, 2),)),
    ("arg.wgsl", (norm_kernels.ARG,)),
])
def test_kernels_read_words_by_name(file: str, layouts: tuple[Uniforms, ...]) -> None:
    """The file reads only named words, and every name it reads is one its layouts declare."""
    assert not re.search(r"\bp[uif]\(\s*\d", "".join(wgsl_source(f.name) for f in WGSL_DIR.glob("*.wgsl")))
    source = wgsl_source(file)
    assert ("{{UNIFORMS}}" in source) == (file != "attention_mask.wgsl")  # an include: its hosts declare
    assert not re.search(r"\bp[uif]\(\s*\d", source), f"{file} still reads a positional word"
    for layout in layouts:
        named = set(re.findall(rf"\b{layout.prefix}_(\w+)", source))
        assert named and named <= set(layout.offsets), named - set(layout.offsets)


def test_an_array_of_one_word_takes_a_sequence() -> None:
    """A rank-1 output's shape is an array of one word: packed from a list, as any other rank's."""
    assert elementwise_kernels.uniforms_of(1, 0).pack(n=60, shape=[60]) == [60, 60]
