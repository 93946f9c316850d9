"""Array-library helpers: allocate outputs with the caller's array library, pick the stream.

Inputs are never converted or copied: the extension imports them through DLPack. Only
outputs that the caller did not pass are allocated here, with the library of a reference
input (NumPy for NumPy, PyTorch for PyTorch on the same device).
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from ._error import Error

__all__ = ["empty", "shape_of", "is_torch", "default_stream"]

_NUMPY_DTYPES = {"f32": "float32", "int32": "int32", "uint8": "uint8"}
_TORCH_DTYPES = {"bf16": "bfloat16", "f32": "float32", "int32": "int32", "uint8": "uint8"}


def is_torch(x: Any) -> bool:
    """True for a torch.Tensor (without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "is_cuda")


def _is_numpy(x: Any) -> bool:
    return type(x).__module__ == "numpy" and type(x).__name__ == "ndarray"


def shape_of(x: Any, name: str) -> tuple:
    """The shape of an array argument as a tuple of ints; model1.Error for non-arrays."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise Error.of(name, "an array (NumPy, PyTorch, any DLPack tensor)",
                       "None" if x is None else type(x).__name__)
    return tuple(int(s) for s in shape)


def empty(like: Any, shape: Sequence[int], dtype: str, name: str) -> Any:
    """An uninitialised array of `shape` and `dtype` ("bf16", "f32", "int32", "uint8") made by
    the array library of `like` (NumPy, or PyTorch on like's device). `name` is the output
    argument reported when the library cannot allocate (pass that output explicitly)."""
    shape = tuple(int(s) for s in shape)
    if like is None or _is_numpy(like):
        import numpy as np

        if dtype == "bf16":
            try:
                import ml_dtypes
            except ImportError as e:  # pragma: no cover - ml_dtypes is a dependency
                raise Error.of(name, "ml_dtypes installed (bf16 NumPy outputs), or an explicit "
                               f"'{name}' array", "ml_dtypes not importable") from e
            return np.empty(shape, dtype=ml_dtypes.bfloat16)
        return np.empty(shape, dtype=_NUMPY_DTYPES[dtype])
    if is_torch(like):
        torch = sys.modules["torch"]
        return torch.empty(shape, dtype=getattr(torch, _TORCH_DTYPES[dtype]), device=like.device)
    raise Error.of(name, f"an explicit '{name}' array (outputs are allocated automatically only "
                   "for NumPy and PyTorch inputs)", f"inputs of type {type(like).__module__}."
                   f"{type(like).__name__}")


def default_stream(stream: Any, like: Any) -> dict:
    """Keyword arguments ``stream`` / ``sync_producers`` for the extension.

    ``stream`` given (an int cudaStream_t or a torch.cuda.Stream): run there, and have CUDA
    producers order their pending work before it (DLPack stream semantics). Otherwise, for a
    CUDA torch.Tensor ``like``: PyTorch's current stream, on which torch tensors are already
    ordered (no producer synchronisation needed); else 0, the legacy default stream."""
    if stream is not None:
        cuda_stream = getattr(stream, "cuda_stream", None)  # a torch.cuda.Stream
        return {"stream": int(cuda_stream if cuda_stream is not None else stream),
                "sync_producers": True}
    if is_torch(like) and like.is_cuda:
        torch = sys.modules["torch"]
        return {"stream": int(torch.cuda.current_stream(like.device).cuda_stream),
                "sync_producers": False}
    return {"stream": 0, "sync_producers": True}
