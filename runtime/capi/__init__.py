"""onnxruntime's `capi` package, for code that imports from it.

Packages written for onnxruntime import its exception classes from
`onnxruntime.capi.onnxruntime_pybind11_state` (or `_pybind_state`) to catch
them, and sometimes the session classes from
`onnxruntime.capi.onnxruntime_inference_collection`.  With
`sys.modules["onnxruntime"] = webinfer`, those imports land in these
modules, which re-export webinfer's own classes: webinfer's errors
subclass onnxruntime-named ones (errors.py), so the same `except` clauses
catch them.
"""

from . import _pybind_state, onnxruntime_inference_collection, onnxruntime_pybind11_state

__all__ = ["_pybind_state", "onnxruntime_inference_collection", "onnxruntime_pybind11_state"]
