"""FlashMLA-compatible PyTorch interface (MODEL1.md section 6), backed by model1.

Drop-in for the sparse entry points of DeepSeek's ``flash_mla`` package::

    from model1.flash_mla import get_mla_metadata, flash_mla_with_kvcache, flash_mla_sparse_fwd

Same signatures, argument names, defaults and return conventions. Tensors may live on a CUDA
device (work runs on PyTorch's current stream, without host synchronisation) or on the CPU
(the reference backend). Nothing is copied: tensors reach the library through DLPack.

Differences from FlashMLA: the dense path (``indices=None``) is not provided (model1 is the
sparse core) and raises :class:`model1.Error`; errors are :class:`model1.Error` (a ValueError)
instead of assertions; reusing metadata with different length values raises (see
:data:`check_length_values`) rather than silently using a stale schedule.

This is the only model1 module that imports torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import torch

from . import _C
from ._error import Error

__all__ = ["FlashMLASchedMeta", "get_mla_metadata", "flash_mla_with_kvcache",
           "flash_mla_sparse_fwd", "check_length_values"]

#: When True (default), reusing a FlashMLASchedMeta compares the values of ``topk_length`` /
#: ``extra_topk_length`` with those of its first call and raises on a difference. For CUDA
#: tensors the comparison synchronises the host with the stream (once per call); it is skipped
#: while a CUDA graph is being captured. Set to False in production once the calling code is
#: known to be consistent (model1's plans are valid for any length values, so a mismatch
#: there only reflects a FlashMLA contract violation, not a wrong result).
check_length_values: bool = True

_HEAD_DIM_V = 512
_BYTE_DTYPES = (torch.uint8, torch.int8, torch.float8_e4m3fn)


@dataclasses.dataclass
class FlashMLASchedMeta:
    """Scheduling metadata for :func:`flash_mla_with_kvcache`, as returned by
    :func:`get_mla_metadata`. Empty until its first use, which records the call's shapes and
    length values and builds a :class:`model1.DecodePlan`; later calls (e.g. the other layers
    of a decoding step) must have the same shapes and length values."""

    @dataclasses.dataclass(frozen=True)
    class Config:
        b: int
        s_q: int
        h_q: int
        d_qk: int
        page_block_size: int
        h_k: int
        causal: bool
        is_fp8_kvcache: bool
        topk: Optional[int]
        extra_page_block_size: Optional[int]
        extra_topk: Optional[int]
        has_topk_length: bool
        has_extra_topk_length: bool
        device: str

    have_initialized: bool = False
    config: Optional[Config] = None
    plan: Optional[Any] = None  # model1.DecodePlan
    topk_length: Optional[torch.Tensor] = None  # copies of the first call's length tensors
    extra_topk_length: Optional[torch.Tensor] = None
    # FlashMLA's fields, kept for code that inspects them; model1 keeps its schedule in `plan`.
    tile_scheduler_metadata: Optional[torch.Tensor] = None
    num_splits: Optional[torch.Tensor] = None


def get_mla_metadata(*args: Any, **kwargs: Any) -> Tuple[FlashMLASchedMeta, None]:
    """Returns ``(FlashMLASchedMeta(), None)``: an empty metadata object, filled by the first
    :func:`flash_mla_with_kvcache` call that uses it. The arguments are ignored (kept for
    compatibility with FlashMLA's older interface)."""
    del args, kwargs
    return FlashMLASchedMeta(), None


def _plain(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    # NOTE: torch refuses to export tensors that require grad through DLPack; the kernels have
    # no backward, so a detached alias is what they need.
    if t is not None and t.requires_grad:
        return t.detach()
    return t


def _cache_bytes(cache: Optional[torch.Tensor], name: str) -> Optional[torch.Tensor]:
    """A uint8 alias of an FP8 cache tensor (same storage, strides and shape)."""
    if cache is None:
        return None
    if not isinstance(cache, torch.Tensor):
        raise Error.of(name, "a torch.Tensor", type(cache).__name__)
    if cache.dtype not in _BYTE_DTYPES:
        raise Error.of(name, "dtype float8_e4m3fn, int8 or uint8 (FP8 cache bytes, shape "
                       "(pages, P, 1, 584 | 656))", f"dtype {cache.dtype}")
    if cache.dim() != 4:
        raise Error.of(f"{name}.shape", "(num_blocks, page_block_size, 1, 584 | 656)",
                       str(tuple(cache.shape)))
    cache = _plain(cache)
    return cache if cache.dtype == torch.uint8 else cache.view(torch.uint8)


# The library names SparseDecodeArgs fields; this module's callers know FlashMLA's names.
_FLASH_MLA_NAMES = {"kv": "k_cache", "extra_kv": "extra_k_cache",
                    "extra_indices": "extra_indices_in_kvcache", "sm_scale": "softmax_scale",
                    "plan": "tile_scheduler_metadata"}


def _renamed(e: Error) -> Error:
    """The same error with the argument named as in flash_mla_with_kvcache's signature."""
    root, dot, detail = e.argument.partition(".")
    if root not in _FLASH_MLA_NAMES:
        return e
    name = _FLASH_MLA_NAMES[root] + dot + detail
    message = str(e).replace(f"'{e.argument}'", f"'{name}'", 1)
    return Error(message, name, e.expected, e.actual, e.file, e.line)


def _stream_of(t: torch.Tensor) -> int:
    # NOTE: PyTorch's current stream, on which torch tensors are ready by PyTorch's rules, so
    # the extension is told not to have producers synchronise (sync_producers=False).
    return int(torch.cuda.current_stream(t.device).cuda_stream) if t.is_cuda else 0


def _same_values(saved: Optional[torch.Tensor], now: Optional[torch.Tensor]) -> bool:
    if saved is None or now is None:
        return saved is None and now is None
    if saved.shape != now.shape or saved.device != now.device or saved.dtype != now.dtype:
        return False
    return bool(torch.equal(saved, now))


def _check_reuse(meta: FlashMLASchedMeta, config: "FlashMLASchedMeta.Config",
                 topk_length: Optional[torch.Tensor],
                 extra_topk_length: Optional[torch.Tensor]) -> None:
    old = meta.config
    assert old is not None
    for field in dataclasses.fields(config):
        was, now = getattr(old, field.name), getattr(config, field.name)
        if was != now:
            raise Error.of("tile_scheduler_metadata",
                           f"{field.name} {was!r}, as in the first call that used this metadata "
                           "(get_mla_metadata() gives a new one for new shapes)",
                           f"{field.name} {now!r}")
    if not check_length_values:
        return
    for name, saved, now in (("topk_length", meta.topk_length, topk_length),
                             ("extra_topk_length", meta.extra_topk_length, extra_topk_length)):
        if now is not None and now.is_cuda and torch.cuda.is_current_stream_capturing():
            continue
        if not _same_values(saved, now):
            raise Error.of("tile_scheduler_metadata",
                           f"the {name} values of the first call that used this metadata "
                           "(FlashMLA metadata is reusable only with the same lengths; call "
                           "get_mla_metadata() again, or set "
                           "model1.flash_mla.check_length_values = False)",
                           f"different {name} values")


def flash_mla_with_kvcache(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: Optional[torch.Tensor],
    cache_seqlens: Optional[torch.Tensor],
    head_dim_v: int,
    tile_scheduler_metadata: FlashMLASchedMeta,
    num_splits: None = None,
    softmax_scale: Optional[float] = None,
    causal: bool = False,
    is_fp8_kvcache: bool = False,
    indices: Optional[torch.Tensor] = None,
    attn_sink: Optional[torch.Tensor] = None,
    extra_k_cache: Optional[torch.Tensor] = None,
    extra_indices_in_kvcache: Optional[torch.Tensor] = None,
    topk_length: Optional[torch.Tensor] = None,
    extra_topk_length: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sparse decoding attention over FP8 paged KV caches (FlashMLA's interface).

    Arguments:
        q: (batch_size, seq_len_q, num_heads_q, head_dim) bf16; head_dim 512 (MODEL1) or 576
            (V3.2); num_heads_q 8, 16, 32, 64 or 128; last dim contiguous, other strides free.
        k_cache: (num_blocks, page_block_size, 1, 584 | 656) float8_e4m3fn / int8 / uint8;
            stride(1) = bytes per token, stride(0) = the page stride in bytes (MODEL1: pages
            padded to a multiple of 576 bytes; inside a page all data rows come first, then
            all scale rows). 584 B/token means MODEL1, 656 V3.2. May be a slice of a larger
            buffer.
        block_table, cache_seqlens: unused by the sparse path (may be None).
        head_dim_v: must be 512.
        tile_scheduler_metadata: a FlashMLASchedMeta from :func:`get_mla_metadata`; reusable
            across calls (layers) with the same shapes and the same values of topk_length and
            extra_topk_length. Its plan's split size is chosen at the first call from the batch
            shape and the GPU (``model1.LATENCY_SPLIT_KEYS``), as FlashMLA's scheduler does.
        num_splits: must be None.
        softmax_scale: default 1 / sqrt(head_dim).
        causal: must be False for sparse attention.
        is_fp8_kvcache: must be True for sparse attention.
        indices: (batch_size, seq_len_q, topk) int32 slots (block * page_block_size + offset);
            invalid slots (negative, >= num_blocks * page_block_size) are skipped. Required:
            None (the dense path) raises model1.Error. topk need not be a multiple of 64.
        attn_sink: optional (num_heads_q,) float32: the output is scaled by
            exp(lse) / (exp(lse) + exp(attn_sink)); lse is unaffected; +inf gives zeros.
        extra_k_cache, extra_indices_in_kvcache: optional extra cache (same format, own
            page_block_size) and its (batch_size, seq_len_q, extra_topk) int32 slots.
        topk_length, extra_topk_length: optional (batch_size,) int32: only the first
            topk_length[i] indices of request i are used.

    Returns:
        (out, softmax_lse): out (batch_size, seq_len_q, num_heads_q, 512) bf16; softmax_lse
        (batch_size, num_heads_q, seq_len_q) float32, a transposed view of a contiguous
        (batch_size, seq_len_q, num_heads_q) buffer; natural log, +inf where no index is
        valid (out is 0 there).
    """
    del block_table, cache_seqlens  # dense-path arguments
    meta = tile_scheduler_metadata
    if not isinstance(meta, FlashMLASchedMeta):
        raise Error.of("tile_scheduler_metadata", "a FlashMLASchedMeta from get_mla_metadata()",
                       type(meta).__name__)
    if num_splits is not None:
        raise Error.of("num_splits", "None (the schedule lives in tile_scheduler_metadata)",
                       type(num_splits).__name__)
    if indices is None:
        raise Error.of("indices", "an indices tensor: model1 implements the sparse path of "
                       "flash_mla_with_kvcache only (dense decoding, indices=None, is not "
                       "supported)", "None")
    if causal:
        raise Error.of("causal", "False (sparse attention has no causal mask)", "True")
    if not is_fp8_kvcache:
        raise Error.of("is_fp8_kvcache", "True (sparse decoding reads FP8 caches)", "False")
    if head_dim_v != _HEAD_DIM_V:
        raise Error.of("head_dim_v", f"{_HEAD_DIM_V}", str(head_dim_v))
    if not isinstance(q, torch.Tensor) or q.dim() != 4:
        raise Error.of("q.shape", "a 4-D torch.Tensor (batch_size, seq_len_q, num_heads_q, "
                       "head_dim)", str(tuple(getattr(q, "shape", ()))))
    if extra_k_cache is None and extra_indices_in_kvcache is not None:
        raise Error.of("extra_k_cache", "a cache when extra_indices_in_kvcache is given", "None")
    if extra_k_cache is not None and extra_indices_in_kvcache is None:
        raise Error.of("extra_indices_in_kvcache", "a tensor when extra_k_cache is given",
                       "None")

    q = _plain(q)
    kv = _cache_bytes(k_cache, "k_cache")
    extra_kv = _cache_bytes(extra_k_cache, "extra_k_cache")
    indices = _plain(indices)
    extra_indices = _plain(extra_indices_in_kvcache)
    topk_length = _plain(topk_length)
    extra_topk_length = _plain(extra_topk_length)
    attn_sink = _plain(attn_sink)

    b, s_q, h_q, d_qk = (int(s) for s in q.shape)
    config = FlashMLASchedMeta.Config(
        b=b, s_q=s_q, h_q=h_q, d_qk=d_qk,
        page_block_size=int(kv.shape[1]), h_k=int(kv.shape[2]),
        causal=bool(causal), is_fp8_kvcache=bool(is_fp8_kvcache),
        topk=int(indices.shape[-1]),
        extra_page_block_size=None if extra_kv is None else int(extra_kv.shape[1]),
        extra_topk=None if extra_indices is None else int(extra_indices.shape[-1]),
        has_topk_length=topk_length is not None,
        has_extra_topk_length=extra_topk_length is not None,
        device=str(q.device))

    out = torch.empty((b, s_q, h_q, _HEAD_DIM_V), dtype=torch.bfloat16, device=q.device)
    lse = torch.empty((b, s_q, h_q), dtype=torch.float32, device=q.device)
    stream = _stream_of(q)
    sm_scale = None if softmax_scale is None else float(softmax_scale)
    args = (q, kv, None, 0, indices, topk_length, extra_kv, None, 0, extra_indices,
            extra_topk_length, attn_sink, sm_scale, out, lse)

    try:
        if not meta.have_initialized:
            # NOTE: like FlashMLA's scheduler, the split size follows the batch (the latency
            # rule: the smallest split whose CTAs fit the GPU in one wave); FlashMLA's outputs
            # are not batch-invariant either. The plan's split_keys reports the choice.
            plan = _C.plan_decode(*args, stream=stream, sync_producers=False,
                                  split_keys=_C.LATENCY_SPLIT_KEYS)
            meta.plan = plan
            meta.config = config
            meta.topk_length = None if topk_length is None else topk_length.clone()
            meta.extra_topk_length = (None if extra_topk_length is None
                                      else extra_topk_length.clone())
            meta.have_initialized = True
        else:
            _check_reuse(meta, config, topk_length, extra_topk_length)
        _C.sparse_decode(*args, plan=meta.plan, stream=stream, sync_producers=False)
    except Error as e:
        raise _renamed(e) from None
    return out, lse.transpose(1, 2)


def flash_mla_sparse_fwd(
    q: torch.Tensor,
    kv: torch.Tensor,
    indices: torch.Tensor,
    sm_scale: float,
    d_v: int = 512,
    attn_sink: Optional[torch.Tensor] = None,
    topk_length: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse attention prefill (FlashMLA's interface).

    Args:
        q: (s_q, h_q, d_qk) bf16, d_qk 512 or 576; last dim contiguous.
        kv: (s_kv, 1, d_qk) bf16.
        indices: (s_q, 1, topk) int32; invalid entries (-1, >= s_kv) are skipped.
        sm_scale: softmax scale.
        d_v: value dims; must be 512.
        attn_sink: optional (h_q,) float32: output scaled by exp(lse) / (exp(lse) +
            exp(attn_sink)); no effect on lse and max_logits.
        topk_length: optional (s_q,) int32: query i uses indices[i, :, :topk_length[i]].

    Returns:
        (out, max_logits, lse): out (s_q, h_q, d_v) bf16; max_logits (s_q, h_q) float32, the
        largest scaled logit (-inf with no valid index); lse (s_q, h_q) float32, natural log
        (+inf with no valid index).
    """
    if not isinstance(q, torch.Tensor) or q.dim() != 3:
        raise Error.of("q.shape", "a 3-D torch.Tensor (s_q, h_q, d_qk)",
                       str(tuple(getattr(q, "shape", ()))))
    q, kv, indices = _plain(q), _plain(kv), _plain(indices)
    attn_sink, topk_length = _plain(attn_sink), _plain(topk_length)
    s_q, h_q = int(q.shape[0]), int(q.shape[1])
    out = torch.empty((s_q, h_q, int(d_v)), dtype=torch.bfloat16, device=q.device)
    max_logits = torch.empty((s_q, h_q), dtype=torch.float32, device=q.device)
    lse = torch.empty((s_q, h_q), dtype=torch.float32, device=q.device)
    _C.sparse_prefill(q, kv, indices, topk_length, attn_sink, float(sm_scale), int(d_v), out,
                      max_logits, lse, stream=_stream_of(q), sync_producers=False)
    return out, max_logits, lse
