"""Real PyPI packages that ship ONNX models, run unchanged with `onnxruntime` swapped for webinfer.

Each case runs twice in fresh subprocesses (runner.py): once with the real onnxruntime (the
reference), once with `sys.modules["onnxruntime"] = webinfer`, and the package's final outputs
must agree: texts and labels exactly, boxes, scores and timestamps within the case's tolerances
(cases.PACKAGES).  The packages are installed by `bash tools/dev.sh test|setup` (setup_compat,
from requirements.txt); a missing or different version fails the test, it is never skipped.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from importlib import metadata

import pytest

from tests.compat.cases import PACKAGES

pytestmark = [pytest.mark.compat, pytest.mark.slow]

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "runner.py")
TIMEOUT_S = 600


class WebinferFailed(AssertionError):
    """The package ran under onnxruntime but raised under webinfer."""


class OutputMismatch(AssertionError):
    """The package ran under both, and webinfer's outputs differ beyond the tolerance."""


# Cases that fail against the current webinfer: case -> a regex of the expected first failure
# (README.md here has the detail and what fails next).  Only that failure is expected: a
# different one (the next gap, once this one is fixed) fails the test, and so does a pass
# (strict XPASS), so that the entry is updated or removed.  Install and reference failures
# always fail.
KNOWN_FAILURES: dict[str, str] = {}


def _pinned(case):
    name, version = PACKAGES[case]["req"].split("==")
    return name, version


def _require_installed(case):
    name, version = _pinned(case)
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name}=={version} is not installed: the compat suite needs "
                    f"`bash tools/dev.sh setup` (setup_compat installs tests/compat/requirements.txt)",
                    pytrace=False)
    if have != version:
        pytest.fail(f"{name} is {have}, the suite pins {version} (tests/compat/requirements.txt)",
                    pytrace=False)


def run_case(case, backend, tmp_path):
    out = tmp_path / f"{case}.{backend}.json"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, RUNNER, case, backend, str(out)], capture_output=True,
                          text=True, timeout=TIMEOUT_S, env=env)
    if not out.exists():
        raise AssertionError(f"{case} under {backend}: the runner died (rc {proc.returncode})\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    res = json.loads(out.read_text())
    res["stderr"] = proc.stderr
    return res


def _flat(v):
    if isinstance(v, (list, tuple)):
        for x in v:
            yield from _flat(x)
    else:
        yield v


def compare(case, ref, got):
    """A list of differences between onnxruntime's result `ref` and webinfer's `got`."""
    tol = PACKAGES[case]["tol"]
    problems = []
    for key, want in ref.items():
        have = got.get(key)
        if key in ("text", "label", "result"):
            if have != want:
                problems.append(f"{key}: onnxruntime {want!r}, webinfer {have!r}")
            continue
        if key == "samples":
            if len(have) != len(want):
                problems.append(f"speech segments: onnxruntime {want}, webinfer {have}")
                continue
        if len(want) != len(have) or any(
                isinstance(w, list) != isinstance(h, list) or (isinstance(w, list) and len(w) != len(h))
                for w, h in zip(want, have)):
            problems.append(f"{key}: shapes differ: onnxruntime {want!r}, webinfer {have!r}")
            continue
        atol = tol[key]
        worst = max((abs(h - w) for w, h in zip(_flat(want), _flat(have))), default=0.0)
        if not worst <= atol or any(isinstance(h, float) and math.isnan(h) for h in _flat(have)):
            problems.append(f"{key}: max |webinfer - onnxruntime| = {worst:.4g} > {atol}")
    return problems


def _key_frames(tb):
    """The traceback's last frames (the package's call into webinfer and webinfer's raise)."""
    lines = [ln for ln in tb.splitlines() if ln.strip()]
    frames = [i for i, ln in enumerate(lines) if ln.lstrip().startswith("File ")]
    return "\n".join(lines[frames[-4] if len(frames) >= 4 else 0:])


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.xfail(strict=True, raises=(WebinferFailed, OutputMismatch),
                                            reason=KNOWN_FAILURES[c]))
    if c in KNOWN_FAILURES else c for c in sorted(PACKAGES)])
def test_package(case, tmp_path):
    _require_installed(case)
    ref = run_case(case, "onnxruntime", tmp_path)
    assert ref["ok"], f"{case} fails with the real onnxruntime:\n{ref['traceback']}"
    assert ref["onnxruntime_module"] == "onnxruntime"
    got = run_case(case, "webinfer", tmp_path)
    assert got["onnxruntime_module"] == "webinfer", "the swap did not hold in the subprocess"
    if not got["ok"]:
        known = KNOWN_FAILURES.get(case)
        if known and not re.search(known, got["error"] + "\n" + got["traceback"]):
            raise AssertionError(f"{case} under webinfer no longer fails with the known /{known}/ but with "
                                 f"{got['error']}\n{_key_frames(got['traceback'])}\n(update KNOWN_FAILURES)")
        raise WebinferFailed(f"{case} ({PACKAGES[case]['entry']}) under webinfer: {got['error']}\n"
                             f"{_key_frames(got['traceback'])}")
    problems = compare(case, ref["result"], got["result"])
    if problems and case in KNOWN_FAILURES:
        raise AssertionError(f"{case} now runs under webinfer but differs (update KNOWN_FAILURES):\n  "
                             + "\n  ".join(problems))
    if problems:
        raise OutputMismatch(f"{case}: webinfer's output differs from onnxruntime's:\n  " + "\n  ".join(problems))


def test_requirements_cover_cases():
    """Every case's package is pinned in requirements.txt, and nothing else is."""
    with open(os.path.join(HERE, "requirements.txt")) as f:
        pins = {ln.strip() for ln in f if ln.strip() and not ln.startswith("#")}
    assert pins == {p["req"] for p in PACKAGES.values()}
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9.]*", p) for p in pins)
