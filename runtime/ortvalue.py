"""`OrtValue` and `IOBinding`: onnxruntime's value handles and pre-bound runs.

Code written for onnxruntime passes `OrtValue`s to `run_with_ort_values`,
binds inputs and outputs once with `IOBinding` and reruns, or asks for
outputs written into its own buffers.  Here an OrtValue wraps what the
executor passes around: a numpy array on the host (a CPU OrtValue made
from an array shares its memory, as onnxruntime's does), a list for
sequences, or a GPU tensor (device "webgpu").  GPU values let a loop keep
its state on the device: bind an output to "webgpu", feed the OrtValue it
returns to the next run, and nothing crosses to the host in between.
"""

from __future__ import annotations

import ctypes
import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from . import dtypes
from .devices.gpu.device import GpuTensor
from .errors import InputError, InputTypeError

if TYPE_CHECKING:
    from .options import RunOptions
    from .session import InferenceSession

#: Device names accepted for host memory (onnxruntime's, and webinfer's provider short name).
_HOST = ("cpu", "cpu_input", "cpu_output")
#: The GPU device's name (onnxruntime's spelling for its WebGPU device too).
GPU = "webgpu"


def _device(device_type: str, what: str, gpu_ok: bool = True) -> str:
    """'cpu' or 'webgpu' for an onnxruntime device_type; anything else is refused with the reason."""
    name = str(device_type).lower()
    if name in _HOST:
        return "cpu"
    if name == GPU and gpu_ok:
        return GPU
    where = "'cpu' or 'webgpu'" if gpu_ok else "'cpu' (raw pointers address host memory)"
    raise InputError(f"{what}: device_type '{device_type}' is not supported here; use {where}")


def _host_device(device_type: str, what: str) -> None:
    _device(device_type, what, gpu_ok=False)


def _gpu_device() -> Any:
    """A device on the process's WebGPU backend, for values made outside a session."""
    from .devices.gpu import open_device
    return open_device({})


def _elem_of(element_type: Any) -> int:
    """An ONNX element type from a numpy dtype/type or an ONNX enum value."""
    if isinstance(element_type, (int, np.integer)) and not isinstance(element_type, bool):
        if int(element_type) not in dtypes.ELEM_TYPES:
            raise InputTypeError(f"unknown ONNX element type {element_type}")
        return int(element_type)
    try:
        return dtypes.from_numpy(np.dtype(element_type))
    except TypeError as e:
        raise InputTypeError(f"no ONNX element type for {element_type!r}") from e


class OrtValue:
    """A tensor (or sequence) handed to or returned by a session, as onnxruntime's OrtValue."""

    def __init__(self, value: Any, elem: int | None = None):
        self._value = value
        if elem is None and isinstance(value, np.ndarray):
            try:
                elem = dtypes.from_numpy(value.dtype)
            except TypeError:
                elem = None
        self._elem = elem

    # ------------------------------------------------------------ creation
    @staticmethod
    def ortvalue_from_numpy(numpy_obj: np.ndarray, device_type: str = "cpu", device_id: int = 0,
                            vendor_id: int = -1) -> "OrtValue":
        """Wrap `numpy_obj`, sharing its memory (a copy only if it is not C-contiguous, as onnxruntime);
        with device_type "webgpu", a copy on the GPU."""
        device = _device(device_type, "ortvalue_from_numpy")
        if not isinstance(numpy_obj, np.ndarray):
            raise InputTypeError(f"ortvalue_from_numpy takes a numpy array, got {type(numpy_obj).__name__}")
        array = np.ascontiguousarray(numpy_obj)
        if device == GPU:
            gpu = _gpu_device()
            tensor = gpu.upload(array.copy())
            gpu.materialize(tensor)
            return OrtValue(tensor, dtypes.from_numpy(array.dtype))
        return OrtValue(array)

    @staticmethod
    def ortvalue_from_numpy_with_onnx_type(data: np.ndarray, onnx_element_type: int) -> "OrtValue":
        """Wrap `data` whose bits hold `onnx_element_type` (e.g. bfloat16 stored as uint16)."""
        elem = _elem_of(onnx_element_type)
        storage = dtypes.storage_dtype(elem)
        if data.dtype.itemsize != storage.itemsize:
            raise InputTypeError(f"ortvalue_from_numpy_with_onnx_type: {data.dtype} cannot hold "
                                 f"{dtypes.type_name(elem)}")
        return OrtValue(np.ascontiguousarray(data).view(storage), elem)

    @staticmethod
    def ortvalue_from_shape_and_type(shape: Sequence[int], element_type: Any, device_type: str = "cpu",
                                     device_id: int = 0, vendor_id: int = -1, memory_info: Any = None) -> "OrtValue":
        """A new tensor of `shape` and `element_type` (a numpy type or ONNX enum), zero-filled."""
        device = _device(device_type, "ortvalue_from_shape_and_type")
        elem = _elem_of(element_type)
        dims = [int(d) for d in shape]
        if any(d < 0 for d in dims):
            raise InputError(f"ortvalue_from_shape_and_type: negative dimension in {dims}")
        array = np.zeros(dims, dtypes.storage_dtype(elem))
        if device == GPU:
            return OrtValue.ortvalue_from_numpy(array, GPU)
        return OrtValue(array, elem)

    # --------------------------------------------------------------- query
    def numpy(self) -> Any:
        """The value as numpy (the shared array itself for host tensors, a copy read back for GPU ones)."""
        if self._on_gpu():
            from .executor import drive
            host = drive(self._value.storage.device.download(self._value))
            return dtypes.export_array(host, self._elem) if self._elem is not None else host
        if isinstance(self._value, np.ndarray) and self._elem is not None:
            return dtypes.export_array(self._value, self._elem)
        return self._value

    def _on_gpu(self) -> bool:
        return isinstance(self._value, GpuTensor)

    def shape(self) -> list[int]:
        return list(self._value.shape) if self.is_tensor() else []

    def data_type(self) -> str:
        if isinstance(self._value, list):
            inner = self._value[0] if self._value else None
            elem = dtypes.type_name(dtypes.from_numpy(inner.dtype)) if isinstance(inner, np.ndarray) else "float"
            return f"seq(tensor({elem}))"
        return f"tensor({dtypes.type_name(self._elem)})" if self._elem is not None else "unknown"

    def element_type(self) -> int:
        """The ONNX element type enum (1 for float32), as onnxruntime returns it."""
        if self._elem is None:
            raise InputTypeError("this OrtValue is not a tensor")
        return self._elem

    def device_name(self) -> str:
        return GPU if self._on_gpu() else "cpu"

    def has_value(self) -> bool:
        return self._value is not None

    def is_tensor(self) -> bool:
        return isinstance(self._value, (np.ndarray, GpuTensor))

    def is_tensor_sequence(self) -> bool:
        return isinstance(self._value, list)

    def is_sparse_tensor(self) -> bool:
        return False

    def data_ptr(self) -> int:
        if self._on_gpu():
            raise InputTypeError("data_ptr: this OrtValue lives on the GPU, which has no host address")
        if not isinstance(self._value, np.ndarray):
            raise InputTypeError("data_ptr: this OrtValue is not a tensor")
        return int(self._value.ctypes.data)

    def tensor_size_in_bytes(self) -> int:
        if not self.is_tensor():
            raise InputTypeError("tensor_size_in_bytes: this OrtValue is not a tensor")
        return int(self._value.nbytes)

    def update_inplace(self, np_arr: np.ndarray) -> None:
        """Copy `np_arr` into this value's memory (same number of elements, as onnxruntime requires)."""
        if self._on_gpu():
            raise InputTypeError("update_inplace: this OrtValue lives on the GPU; make a new one with "
                                 "ortvalue_from_numpy(array, 'webgpu')")
        if not isinstance(self._value, np.ndarray):
            raise InputTypeError("update_inplace: this OrtValue is not a tensor")
        src = np.asarray(np_arr)
        if src.size != self._value.size:
            raise RuntimeError("The input size of numpy arrays does not match the size of the OrtValue.")
        self._value.reshape(-1)[...] = src.reshape(-1).astype(self._value.dtype, copy=False)

    @property
    def value(self) -> Any:
        """What the executor takes: webinfer's storage of the value."""
        return self._value

    def __repr__(self) -> str:
        return f"OrtValue({self.data_type()}, shape={self.shape()})"


def _array_at(ptr: int, shape: Sequence[int], elem: int) -> np.ndarray:
    """A numpy view of `shape` x `elem` at host address `ptr` (a buffer_ptr given to IOBinding)."""
    dtype = dtypes.storage_dtype(elem)
    count = math.prod(int(d) for d in shape)
    if not ptr:
        raise InputError("buffer_ptr is null")
    buf = (ctypes.c_char * (count * dtype.itemsize)).from_address(int(ptr))
    return np.frombuffer(memoryview(buf), dtype=dtype, count=count).reshape([int(d) for d in shape])


class IOBinding:
    """Inputs and outputs bound once to a session, run with `session.run_with_iobinding(binding)`."""

    def __init__(self, session: "InferenceSession"):
        self._session = session
        self._inputs: dict[str, OrtValue] = {}
        #: Output name -> an OrtValue to write into, or None (allocated by the run).
        self._outputs: dict[str, OrtValue | None] = {}
        #: Outputs the run leaves on the GPU.
        self._gpu_outputs: set[str] = set()
        self._results: list[OrtValue] = []

    def bind_cpu_input(self, name: str, arr_on_cpu: np.ndarray) -> None:
        self._inputs[name] = OrtValue(np.asarray(arr_on_cpu))

    def bind_input(self, name: str, device_type: str, device_id: int, element_type: Any, shape: Sequence[int],
                   buffer_ptr: int) -> None:
        """Bind input `name` to host memory at `buffer_ptr` (read at each run, not copied now)."""
        _host_device(device_type, f"bind_input '{name}'")
        elem = _elem_of(element_type)
        self._inputs[name] = OrtValue(_array_at(buffer_ptr, shape, elem), elem)

    def bind_ortvalue_input(self, name: str, ortvalue: OrtValue) -> None:
        self._inputs[name] = ortvalue

    def bind_output(self, name: str, device_type: str = "cpu", device_id: int = 0, element_type: Any = None,
                    shape: Sequence[int] | None = None, buffer_ptr: int | None = None) -> None:
        """Bind output `name`: allocated by each run (on the host, or with device_type "webgpu" kept on
        the GPU), or written into host memory at `buffer_ptr`."""
        device = _device(device_type, f"bind_output '{name}'")
        self._gpu_outputs.discard(name)
        if buffer_ptr is None:
            self._outputs[name] = None
            if device == GPU:
                self._gpu_outputs.add(name)
            return
        _host_device(device_type, f"bind_output '{name}' with a buffer_ptr")
        if element_type is None or shape is None:
            raise InputError(f"bind_output '{name}': a buffer_ptr needs element_type and shape")
        elem = _elem_of(element_type)
        self._outputs[name] = OrtValue(_array_at(buffer_ptr, shape, elem), elem)

    def bind_ortvalue_output(self, name: str, ortvalue: OrtValue) -> None:
        """Bind output `name` to `ortvalue`: a host value is written in place; a GPU value is rebound
        to the run's GPU result (no copy, no host round trip)."""
        self._outputs[name] = ortvalue
        if ortvalue.device_name() == GPU:
            self._gpu_outputs.add(name)
        else:
            self._gpu_outputs.discard(name)

    def clear_binding_inputs(self) -> None:
        self._inputs.clear()

    def clear_binding_outputs(self) -> None:
        self._outputs.clear()
        self._gpu_outputs.clear()
        self._results = []

    def synchronize_inputs(self) -> None:
        """Nothing to wait for: host inputs are read when the run starts."""

    def synchronize_outputs(self) -> None:
        """Nothing to wait for: a run returns when its outputs are on the host."""

    def get_outputs(self) -> list[OrtValue]:
        return list(self._results)

    def copy_outputs_to_cpu(self) -> list[Any]:
        return [v.numpy().copy() if isinstance(v.numpy(), np.ndarray) else v.numpy() for v in self._results]

    def _run(self, run_options: "RunOptions | None") -> None:
        """Run the session on the bound inputs; fill bound output buffers and the results."""
        names = list(self._outputs) or None
        feed = {n: v.value for n, v in self._inputs.items()}
        on_device = {n: GPU for n, v in self._inputs.items() if v.device_name() == GPU}
        on_device.update((n, GPU) for n in self._gpu_outputs)
        outs = self._session._run_values(names, feed, run_options, on_device)
        results = []
        for name, value in zip(names or self._session._plan.output_names, outs):
            target = self._outputs.get(name) if names else None
            if target is not None and name in self._gpu_outputs:
                target._value = value
                results.append(target)
            elif target is not None:
                dest = target.value
                if not isinstance(value, np.ndarray) or dest.shape != value.shape or dest.dtype != value.dtype:
                    raise InputError(f"output '{name}' is {_describe(value)} but the buffer bound to it "
                                     f"is {_describe(dest)}")
                np.copyto(dest, value)
                results.append(target)
            else:
                results.append(OrtValue(value, self._session._output_elem(name)))
        self._results = results


def _describe(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"{v.dtype}{list(v.shape)}"
    return type(v).__name__
