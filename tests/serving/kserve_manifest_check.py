"""Build a KServe manifest into the kserve SDK's model classes; exit 1 naming the first mismatch.

    python tests/serving/kserve_manifest_check.py deploy/kserve/servingruntime.yaml V1alpha1ServingRuntime

Run by test_deploy.py in its own interpreter (kserve's generated protobuf
modules cannot be imported beside tritonclient's).  Every key must be a
field of the SDK's model (kubernetes' for core types), every value of the
declared type; the models' setters check required fields; serializing the
object back must keep every value of the manifest.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import kserve
import kubernetes.client
import yaml


def _sdk_object(data: Any, klass: str) -> Any:
    """`data` (a manifest's dict) built into the kserve SDK's model classes (kubernetes' for core types),
    failing on any key a model does not define or a value of the wrong type; the models' setters check
    required fields."""
    if klass.startswith("List[") and klass.endswith("]"):  # kubernetes' newer spelling of the same types
        klass = "list[" + klass[5:]
    elif klass.startswith("Dict[") and klass.endswith("]"):
        klass = "dict(" + klass[5:-1] + ")"
    if klass.startswith("list["):
        assert isinstance(data, list), f"{klass}: got {data!r}"
        return [_sdk_object(d, klass[5:-1]) for d in data]
    if klass.startswith("dict("):
        value_type = klass[5:-1].split(", ", 1)[1]
        assert isinstance(data, dict), f"{klass}: got {data!r}"
        return {k: _sdk_object(v, value_type) for k, v in data.items()}
    scalars = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
    if klass in scalars:
        assert isinstance(data, scalars[klass]), f"expected {klass}, got {data!r}"
        return data
    cls = getattr(kserve.models, klass, None) or getattr(kubernetes.client.models, klass)
    assert isinstance(data, dict), f"{klass}: got {data!r}"
    by_key = {v: k for k, v in cls.attribute_map.items()}
    unknown = set(data) - set(by_key)
    assert not unknown, f"{klass} has no field(s) {sorted(unknown)}"
    return cls(**{by_key[k]: _sdk_object(v, cls.openapi_types[by_key[k]]) for k, v in data.items()})



def _within(doc: Any, out: Any) -> bool:
    """Every value of `doc` is in `out` (which may add the SDK's defaults, such as a container's name "")."""
    if isinstance(doc, dict):
        return isinstance(out, dict) and all(k in out and _within(v, out[k]) for k, v in doc.items())
    if isinstance(doc, list):
        return isinstance(out, list) and len(doc) == len(out) and all(_within(a, b) for a, b in zip(doc, out))
    return doc == out


def main() -> int:
    path, klass = sys.argv[1], sys.argv[2]
    doc = yaml.safe_load(Path(path).read_text())
    try:
        obj = _sdk_object(doc, klass)
    except (AssertionError, ValueError, TypeError, AttributeError) as e:
        print(f"{path}: {type(e).__name__}: {e}")
        return 1
    back = kserve.api_client.ApiClient().sanitize_for_serialization(obj)
    if not _within(doc, back):
        print(f"{path}: the SDK's {klass} does not keep the manifest's values: {back}")
        return 1
    print(f"{path}: a valid {klass}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
