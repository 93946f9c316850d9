"""model1: DeepSeek MODEL1 sparse attention (FP8 paged KV caches, sparse decode with dynamic
top-k and an extra cache, sparse prefill) for any DLPack array library, CPU or CUDA.

Functions take NumPy (incl. ml_dtypes bfloat16 / float8_e4m3fn), PyTorch, CuPy or JAX arrays
without copying them, run on the arrays' device, and raise :class:`model1.Error` (a
ValueError) naming the argument at fault. ``model1.flash_mla`` offers FlashMLA's PyTorch
interface on top (it is the only part that imports torch).

Example::

    import numpy as np, ml_dtypes, model1
    bf16 = ml_dtypes.bfloat16
    cache = model1.quantize_cache(np.random.randn(4 * 64, 512).astype(bf16), page_size=64)
    q = np.random.randn(2, 1, 64, 512).astype(bf16)            # [b, s_q, h_q, d_qk]
    idx = np.random.randint(0, cache.num_slots, (2, 1, 128)).astype(np.int32)
    out, lse = model1.sparse_decode(q, cache, idx)             # [2, 1, 64, 512], [2, 1, 64]
"""

from __future__ import annotations

from . import _C
from ._api import (DecodePlan, KvCache, decode_kernel_name, dequantize_cache, empty_cache,
                   latency_split_keys, plan_decode, prefill_kernel_name, quantize_cache,
                   sparse_decode, sparse_prefill, store_tokens)
from ._error import Error

__version__: str = _C.version()
#: plan_decode's split_keys when 0 is given: target keys per split-KV split on CUDA.
DEFAULT_SPLIT_KEYS: int = _C.DEFAULT_SPLIT_KEYS
#: plan_decode's split_keys asking for latency_split_keys() of the call's shapes and GPU.
LATENCY_SPLIT_KEYS: int = _C.LATENCY_SPLIT_KEYS

__all__ = [
    "Error", "KvCache", "DecodePlan", "empty_cache", "quantize_cache", "store_tokens",
    "dequantize_cache", "plan_decode", "sparse_decode", "decode_kernel_name", "sparse_prefill",
    "prefill_kernel_name", "DEFAULT_SPLIT_KEYS", "LATENCY_SPLIT_KEYS", "latency_split_keys",
    "version",
    "cuda_compiled", "cuda_archs", "gpus", "kv_bytes_per_token", "kv_min_page_stride",
    "__version__",
]


def version() -> str:
    """The library version, e.g. "0.1.0" (same as ``model1.__version__``)."""
    return _C.version()


def cuda_compiled() -> bool:
    """True when the extension was built with the CUDA backend."""
    return bool(_C.cuda_compiled())


def cuda_archs() -> list:
    """GPU architectures the CUDA backend carries machine code for, e.g. ["sm_80", "sm_90a"]
    (empty without CUDA)."""
    return list(_C.cuda_archs())


def gpus() -> list:
    """GPUs visible at run time: a list of dicts with device_id, name, sm ("sm_90"), num_sms,
    total_memory (bytes). Empty without CUDA, a driver or a GPU; never raises."""
    return list(_C.gpus())


def kv_bytes_per_token(format: str, d_qk: int = 512) -> int:
    """Payload bytes per token of a cache format: 584 ("model1_fp8"), 656 ("v32_fp8") or
    2 * d_qk ("bf16")."""
    return int(_C.kv_bytes_per_token(format, d_qk))


def kv_min_page_stride(format: str, page_size: int, d_qk: int = 512) -> int:
    """Smallest page stride in bytes for pages of ``page_size`` tokens: "model1_fp8"
    ceil(584 P / 576) * 576, "v32_fp8" 656 P, "bf16" 2 d_qk P."""
    return int(_C.kv_min_page_stride(format, page_size, d_qk))
