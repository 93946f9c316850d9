"""The model1 Python API: caches, sparse decode, sparse prefill.

Every function accepts arrays from any DLPack framework (NumPy incl. ml_dtypes bfloat16 and
float8_e4m3fn, PyTorch, CuPy, JAX), CPU or CUDA, and never copies them. Work runs on the
arrays' device; CUDA work is enqueued on `stream` (default: PyTorch's current stream for
torch tensors, else the legacy default stream) without synchronising the host. Outputs may be
passed in (`out=`, ...) and are then written in place; otherwise they are allocated with the
array library of the main input (NumPy or PyTorch) and returned.
"""

from __future__ import annotations

import operator
from typing import Any, Optional, Tuple

from . import _C
from ._arrays import default_stream, empty, is_torch, shape_of
from ._error import Error

__all__ = [
    "KvCache", "DecodePlan", "empty_cache", "quantize_cache", "store_tokens",
    "dequantize_cache", "plan_decode", "sparse_decode", "decode_kernel_name", "sparse_prefill",
    "prefill_kernel_name",
]

DecodePlan = _C.DecodePlan

_FORMATS = ("model1_fp8", "v32_fp8", "bf16")
_D_V = 512


class KvCache:
    """A paged KV cache: an array plus its format and page size P.

    ``data`` is one of
      * uint8 / int8 / float8_e4m3fn ``[num_pages, page_stride]`` bytes (format and page_size
        required; page_stride >= :func:`model1.kv_min_page_stride`);
      * FlashMLA's view ``[num_pages, P, 1, 584 | 656]`` bytes with stride(0) = page stride
        (format and P inferred: 584 -> "model1_fp8", 656 -> "v32_fp8");
      * bf16 ``[num_pages, P, d_qk]`` (format "bf16", P inferred).
    A slot (what indices name) is ``page * P + offset``. The cache may be a slice of a larger
    buffer. Nothing is copied: ``data`` is the array given.

    Attributes: data, format ("model1_fp8" | "v32_fp8" | "bf16"), page_size, num_pages,
    num_slots, d_qk, bytes_per_token, page_stride (bytes).
    """

    __slots__ = ("data", "format", "page_size", "num_pages", "num_slots", "d_qk",
                 "bytes_per_token", "page_stride")

    def __init__(self, data: Any, format: Optional[str] = None,
                 page_size: Optional[int] = None):
        info = _C.cache_info(data, format, _page_size_arg(page_size, "kv.page_size"))
        self.data = data
        self.format: str = info["format"]
        self.page_size: int = info["page_size"]
        self.num_pages: int = info["num_pages"]
        self.num_slots: int = info["num_slots"]
        self.d_qk: int = info["d_qk"]
        self.bytes_per_token: int = info["bytes_per_token"]
        self.page_stride: int = info["page_stride"]

    def flashmla_view(self) -> Any:
        """FlashMLA's 4-D view of a byte cache: ``[num_pages, P, 1, bytes_per_token]`` with
        stride(0) = the page stride and stride(1) = bytes_per_token (a view, no copy). For
        MODEL1 this is only a view: a page holds all data rows, then all scale rows."""
        if self.format == "bf16":
            raise Error.of("kv.format", "a byte cache (model1_fp8 or v32_fp8) for the 4-D view",
                           "bf16")
        shape = (self.num_pages, self.page_size, 1, self.bytes_per_token)
        d = self.data
        if is_torch(d):
            es = d.element_size()
            return d.as_strided(shape, (self.page_stride // es, self.bytes_per_token // es,
                                        self.bytes_per_token // es, 1),
                                d.storage_offset())
        import numpy as np

        if type(d).__module__ == "numpy":
            return np.lib.stride_tricks.as_strided(
                d, shape, (self.page_stride, self.bytes_per_token, self.bytes_per_token,
                           d.itemsize), writeable=d.flags.writeable)
        raise Error.of("kv.data", "a NumPy or PyTorch array for flashmla_view()",
                       type(d).__name__)

    def _parts(self) -> Tuple[Any, str, int]:
        return self.data, self.format, self.page_size

    def __repr__(self) -> str:
        return (f"model1.KvCache(format={self.format!r}, page_size={self.page_size}, "
                f"num_pages={self.num_pages}, page_stride={self.page_stride}, "
                f"data={type(self.data).__module__}.{type(self.data).__name__})")


def _page_size_arg(page_size: Optional[int], name: str) -> int:
    if page_size is None:
        return 0
    if int(page_size) < 1:
        raise Error.of(name, "page_size (P) >= 1", str(page_size))
    return int(page_size)


def _cache_parts(cache: Any, format: Optional[str], page_size: Optional[int],
                 name: str) -> Tuple[Any, Optional[str], int]:
    """(data, format or None, page_size or 0) for the extension."""
    if isinstance(cache, KvCache):
        if format is not None and format != cache.format:
            raise Error.of(f"{name}.format", f"format {cache.format!r} (the KvCache's)",
                           repr(format))
        if page_size is not None and int(page_size) != cache.page_size:
            raise Error.of(f"{name}.page_size", f"page_size {cache.page_size} (the KvCache's)",
                           str(page_size))
        return cache._parts()
    return cache, format, _page_size_arg(page_size, f"{name}.page_size")


def empty_cache(num_pages: int, page_size: int, format: str = "model1_fp8", *,
                like: Any = None, page_stride: Optional[int] = None,
                d_qk: int = 512) -> KvCache:
    """Allocates an (uninitialised) paged cache.

    Args:
        num_pages: pages in the cache.
        page_size: P, tokens per page (any positive integer).
        format: "model1_fp8" (584 B/token), "v32_fp8" (656 B/token) or "bf16".
        like: an array whose library and device to use (None: NumPy on the CPU).
        page_stride: bytes between pages (byte formats); default and minimum
            :func:`model1.kv_min_page_stride` (MODEL1: ceil(584 P / 576) * 576).
        d_qk: head dim of a bf16 cache (512 or 576).

    Returns:
        KvCache with ``data`` uint8 ``[num_pages, page_stride]`` (byte formats) or bf16
        ``[num_pages, page_size, d_qk]``.
    """
    if format not in _FORMATS:
        raise Error.of("format", "format \"model1_fp8\", \"v32_fp8\" or \"bf16\"", repr(format))
    page_size = _page_size_arg(page_size, "page_size")
    if format == "bf16":
        data = empty(like, (num_pages, page_size, d_qk), "bf16", "kv")
        return KvCache(data, "bf16")
    min_stride = _C.kv_min_page_stride(format, page_size)
    stride = min_stride if page_stride is None else int(page_stride)
    if stride < min_stride:
        raise Error.of("page_stride", f"page_stride >= {min_stride} bytes for P = {page_size}",
                       str(stride))
    data = empty(like, (num_pages, stride), "uint8", "kv")
    return KvCache(data, format, page_size)


def quantize_cache(src: Any, dst: Any = None, *, page_size: Optional[int] = None,
                   format: Optional[str] = None, stream: Any = None) -> Any:
    """Quantizes bf16 tokens into a whole paged cache (MODEL1.md sections 2 and 5).

    Row ``slot`` of ``src`` goes to page ``slot // P``, offset ``slot % P``; every byte of every
    token row is written (MODEL1 scale pad byte = 0), page padding is left untouched.

    Args:
        src: bf16 ``[num_pages * P, d_qk]`` (d_qk 512, or 576 for "v32_fp8"), last dim
            contiguous.
        dst: the cache to fill in place: a :class:`KvCache`, a 4-D FlashMLA view, a bf16
            ``[pages, P, d_qk]`` array, or a byte ``[pages, page_stride]`` array (then give
            ``format`` and ``page_size``). None allocates one (``format`` default
            "model1_fp8", ``page_size`` required) with src's array library.
        page_size, format: see ``dst``.
        stream: cudaStream_t (int or torch.cuda.Stream) for CUDA arrays; default PyTorch's
            current stream for torch tensors, else 0.

    Returns:
        ``dst`` (the allocated :class:`KvCache` when ``dst`` is None).
    """
    if dst is None:
        if page_size is None:
            raise Error.of("page_size", "page_size given when dst is None (to allocate it)",
                           "None")
        rows = shape_of(src, "src")[0]
        page_size = _page_size_arg(page_size, "page_size")
        if rows % page_size != 0:
            raise Error.of("src.shape", f"shape[0] a multiple of page_size {page_size}",
                           str(rows))
        fmt = format or "model1_fp8"
        d_qk = shape_of(src, "src")[-1] if fmt == "bf16" else 512
        dst = empty_cache(rows // page_size, page_size, fmt, like=src, d_qk=d_qk)
    data, fmt, p = _cache_parts(dst, format, page_size, "dst")
    _C.quantize_cache(src, data, fmt, p, **default_stream(stream, src))
    return dst


def store_tokens(tokens: Any, slots: Any, dst: Any, *, page_size: Optional[int] = None,
                 format: Optional[str] = None, stream: Any = None) -> Any:
    """Quantizes new tokens into their slots of a cache, in place (MODEL1.md section 5).

    Args:
        tokens: bf16 ``[n, d_qk]``, last dim contiguous.
        slots: int32 ``[n]``: token r goes to slot ``slots[r] = page * P + offset``; negative
            slots are skipped (padding); a slot >= num_pages * P is an error (CPU) or skipped
            (CUDA).
        dst: the cache (as in :func:`quantize_cache`); ``page_size`` / ``format`` as there.
        stream: as in :func:`quantize_cache`.

    Returns:
        ``dst``.
    """
    data, fmt, p = _cache_parts(dst, format, page_size, "dst")
    _C.store_tokens(tokens, slots, data, fmt, p, **default_stream(stream, tokens))
    return dst


def dequantize_cache(src: Any, dst: Any = None, *, page_size: Optional[int] = None,
                     format: Optional[str] = None, dtype: str = "bf16",
                     stream: Any = None) -> Any:
    """Reads every token of a cache back: ``e4m3 * scale`` (exact in bf16 and f32) and the
    RoPE dims as stored.

    Args:
        src: the cache (as in :func:`quantize_cache`'s ``dst``).
        dst: bf16 or f32 ``[num_pages * P, d_qk]``, last dim contiguous; None allocates one of
            ``dtype`` ("bf16" or "f32") with src's array library.
        stream: as in :func:`quantize_cache`.

    Returns:
        ``dst``: ``[num_pages * P, d_qk]``, row = slot.
    """
    data, fmt, p = _cache_parts(src, format, page_size, "src")
    if dst is None:
        if dtype not in ("bf16", "f32"):
            raise Error.of("dtype", "dtype \"bf16\" or \"f32\"", repr(dtype))
        info = _C.cache_info(data, fmt, p)
        dst = empty(data, (info["num_slots"], info["d_qk"]), dtype, "dst")
    _C.dequantize_cache(data, dst, fmt, p, **default_stream(stream, data))
    return dst


def _decode_call(fn, q, kv, indices, topk_length, extra_kv, extra_indices, extra_topk_length,
                 attn_sink, sm_scale, out, lse, stream, **extra):
    q_shape = shape_of(q, "q")
    if out is None:
        out = empty(q, q_shape[:3] + (_D_V,), "bf16", "out")
    if lse is None:
        lse = empty(q, q_shape[:3], "f32", "lse")
    kv_data, kv_format, kv_p = _cache_parts(kv, None, None, "kv")
    if extra_kv is not None:
        ex_data, ex_format, ex_p = _cache_parts(extra_kv, None, None, "extra_kv")
    else:
        ex_data, ex_format, ex_p = None, None, 0
    result = fn(q, kv_data, kv_format, kv_p, indices, topk_length, ex_data, ex_format, ex_p,
                extra_indices, extra_topk_length, attn_sink,
                None if sm_scale is None else float(sm_scale), out, lse,
                **default_stream(stream, q), **extra)
    return result, out, lse


def _check_split_keys(split_keys: Any, plan: Any) -> None:
    """split_keys is an int (its range is checked by the library), and 0 when a plan is given."""
    if isinstance(split_keys, bool) or not isinstance(split_keys, int):
        raise Error.of("split_keys", "an int (0, -1 or a multiple of 64 in [64, 16384])",
                       repr(split_keys))
    if plan is not None and split_keys != 0:
        raise Error.of("split_keys", "0 when a plan is given (the plan's own split size applies)",
                       str(split_keys))


def latency_split_keys(b: int, s_q: int, h_q: int, keys_per_request: int, num_sms: int) -> int:
    """The split size that minimises a batch's latency by the measured rule (docs/PERF.md): the
    smallest multiple of 64 keys whose splits of ``b * s_q`` requests of up to
    ``keys_per_request`` keys (topk + extra_topk) launch at most ``num_sms`` CTAs, one wave
    (h_q 128 counts two CTAs per split); ``DEFAULT_SPLIT_KEYS`` when one split per request
    already needs more. ``plan_decode(..., split_keys=LATENCY_SPLIT_KEYS)`` applies it to the
    call's shapes and GPU, except that a 64-head plan whose kernels run half-head CTAs may take
    one 64-key chunk more a split (``DecodePlan.split_keys`` reports the value taken). A
    function of the batch: plans made with different results are not bit-identical. Raises
    :class:`Error` naming an argument that is not an int >= 1."""
    values = []
    for name, v in (("b", b), ("s_q", s_q), ("h_q", h_q), ("keys_per_request", keys_per_request),
                    ("num_sms", num_sms)):
        try:
            if isinstance(v, bool):
                raise TypeError
            values.append(operator.index(v))  # ints and integer scalars (numpy, torch)
        except TypeError:
            raise Error.of(name, "an int >= 1", repr(v)) from None
    return _C.latency_split_keys(*values)


def plan_decode(q: Any, kv: Any, indices: Any, topk_length: Any = None, extra_kv: Any = None,
                extra_indices: Any = None, extra_topk_length: Any = None,
                attn_sink: Any = None, sm_scale: Optional[float] = None, *, out: Any = None,
                lse: Any = None, stream: Any = None, split_keys: int = 0) -> "DecodePlan":
    """Validates a sparse-decode call and builds its :class:`DecodePlan` (split-KV schedule and
    workspace). Arguments as in :func:`sparse_decode`; nothing is written. Reuse the plan for
    every call (e.g. every layer) with the same shapes, device and optional tensors present;
    on CUDA the length values may change between calls.

    ``split_keys``: on CUDA, the target keys per split-KV split (a multiple of 64 in
    ``[64, 16384]``; 0 = the library default, ``model1.DEFAULT_SPLIT_KEYS``; -1 =
    ``model1.LATENCY_SPLIT_KEYS``: :func:`latency_split_keys` for these shapes and this GPU,
    where 16, 32 or 64 heads may also run as two CTAs of half the heads a split). A
    request of n keys runs as ``ceil(n / split_keys)`` splits (at most 16) on separate SMs,
    merged afterwards: small values lower the latency of small batches, large ones raise the
    throughput of batches that fill the GPU. It is a constant of the plan, so batch invariance
    holds among calls with equal plans' split sizes (-1 picks one per batch shape). The CPU
    backend validates it and has no splits (-1 resolves to the default there)."""
    _check_split_keys(split_keys, None)
    plan, _, _ = _decode_call(_C.plan_decode, q, kv, indices, topk_length, extra_kv,
                              extra_indices, extra_topk_length, attn_sink, sm_scale, out, lse,
                              stream, split_keys=split_keys)
    return plan


def sparse_decode(q: Any, kv: Any, indices: Any, topk_length: Any = None,
                  extra_kv: Any = None, extra_indices: Any = None,
                  extra_topk_length: Any = None, attn_sink: Any = None,
                  sm_scale: Optional[float] = None, *, plan: Optional["DecodePlan"] = None,
                  out: Any = None, lse: Any = None, stream: Any = None,
                  split_keys: int = 0) -> Tuple[Any, Any]:
    """Sparse decode over a paged FP8 cache with dynamic top-k and an optional extra cache
    (MODEL1.md section 3).

    Args:
        q: bf16 ``[b, s_q, h_q, d_qk]`` (d_qk 512 for MODEL1, 576 for V3.2; h_q 8, 16, 32,
            64 or 128); any strides, last dim contiguous.
        kv: main cache: :class:`KvCache`, a 4-D FlashMLA byte view or a bf16 cache.
        indices: int32 ``[b, s_q, topk]`` slots; slots outside ``[0, pages * P)`` are skipped.
        topk_length: optional int32 ``[b]``: only ``indices[i, :, :topk_length[i]]`` count.
        extra_kv, extra_indices (int32 ``[b, s_q, extra_topk]``), extra_topk_length (int32
            ``[b]``): optional extra cache, same format, own P.
        attn_sink: optional f32 ``[h_q]``: ``out *= 1 / (1 + exp(attn_sink - lse))``.
        sm_scale: softmax scale; None = ``1 / sqrt(d_qk)``.
        plan: a :class:`DecodePlan` from :func:`plan_decode` for these shapes (None: plan
            inside the call).
        split_keys: the split size of the plan made inside the call, as in
            :func:`plan_decode` (0: the default); a given ``plan`` carries its own.
        out: bf16 ``[b, s_q, h_q, 512]`` to write, or None to allocate.
        lse: f32 ``[b, s_q, h_q]`` to write, or None to allocate.
        stream: as in :func:`quantize_cache`.

    Returns:
        ``(out, lse)``: out bf16 ``[b, s_q, h_q, 512]``; lse f32 ``[b, s_q, h_q]``, natural
        log of the softmax denominator, excluding the sink, +inf where no key is valid (out
        is 0 there).
    """
    _check_split_keys(split_keys, plan)
    _, out, lse = _decode_call(_C.sparse_decode, q, kv, indices, topk_length, extra_kv,
                               extra_indices, extra_topk_length, attn_sink, sm_scale, out, lse,
                               stream, plan=plan, split_keys=split_keys)
    return out, lse


def decode_kernel_name(q: Any, kv: Any, indices: Any, topk_length: Any = None,
                       extra_kv: Any = None, extra_indices: Any = None,
                       extra_topk_length: Any = None, attn_sink: Any = None,
                       sm_scale: Optional[float] = None, *, plan: Optional["DecodePlan"] = None,
                       out: Any = None, lse: Any = None, stream: Any = None) -> str:
    """Which kernel family :func:`sparse_decode` runs for these arguments, with the same
    validation and nothing written or launched: ``"cpu"``, ``"portable"`` (every NVIDIA GPU from
    sm_80), ``"portable-compact"`` (its small-shared-memory configuration) or ``"sm90a"`` (the
    Hopper kernels: H100/H200, FP8 caches, 8, 16, 32, 64 or 128 heads, q rows and out 16-byte
    aligned). Arguments as in
    :func:`sparse_decode`."""
    name, _, _ = _decode_call(_C.sparse_decode, q, kv, indices, topk_length, extra_kv,
                              extra_indices, extra_topk_length, attn_sink, sm_scale, out, lse,
                              stream, plan=plan, kernel_name_only=True)
    return name


def _prefill_outputs(q: Any, d_v: int, out: Any, max_logits: Any, lse: Any) -> Tuple[Any, Any, Any]:
    """The prefill outputs: the given ones, or new arrays like q (out bf16 ``[s_q, h_q, d_v]``,
    max_logits and lse f32 ``[s_q, h_q]``)."""
    q_shape = shape_of(q, "q")
    if out is None:
        out = empty(q, q_shape[:2] + (int(d_v),), "bf16", "out")
    if max_logits is None:
        max_logits = empty(q, q_shape[:2], "f32", "max_logits")
    if lse is None:
        lse = empty(q, q_shape[:2], "f32", "lse")
    return out, max_logits, lse


def sparse_prefill(q: Any, kv: Any, indices: Any, topk_length: Any = None,
                   attn_sink: Any = None, sm_scale: Optional[float] = None, d_v: int = 512, *,
                   out: Any = None, max_logits: Any = None, lse: Any = None,
                   stream: Any = None) -> Tuple[Any, Any, Any]:
    """Sparse prefill attention over a bf16 KV array (MODEL1.md section 4).

    Args:
        q: bf16 ``[s_q, h_q, d_qk]`` (d_qk 512 or 576), last dim contiguous.
        kv: bf16 ``[s_kv, d_qk]`` or ``[s_kv, 1, d_qk]``.
        indices: int32 ``[s_q, topk]`` or ``[s_q, 1, topk]``; valid iff ``0 <= i < s_kv``.
        topk_length: optional int32 ``[s_q]``.
        attn_sink: optional f32 ``[h_q]``.
        sm_scale: None = ``1 / sqrt(d_qk)``.
        d_v: value dims, must be 512.
        out, max_logits, lse: outputs to write (bf16 ``[s_q, h_q, d_v]``, f32 ``[s_q, h_q]``,
            f32 ``[s_q, h_q]``), or None to allocate.
        stream: as in :func:`quantize_cache`.

    Returns:
        ``(out, max_logits, lse)``: max_logits is the largest sm_scale-scaled logit (-inf with
        no valid key); lse the natural-log sum (+inf with no valid key); both exclude the sink.
    """
    out, max_logits, lse = _prefill_outputs(q, d_v, out, max_logits, lse)
    _C.sparse_prefill(q, kv, indices, topk_length, attn_sink,
                      None if sm_scale is None else float(sm_scale), int(d_v), out, max_logits,
                      lse, **default_stream(stream, q))
    return out, max_logits, lse


def prefill_kernel_name(q: Any, kv: Any, indices: Any, topk_length: Any = None,
                        attn_sink: Any = None, sm_scale: Optional[float] = None, d_v: int = 512, *,
                        out: Any = None, max_logits: Any = None, lse: Any = None,
                        stream: Any = None) -> str:
    """Which kernel family :func:`sparse_prefill` runs for these arguments, with the same
    validation and nothing written or launched: ``"cpu"``, ``"portable"`` (every NVIDIA GPU from
    sm_80), ``"portable-compact"`` (its small-shared-memory configuration) or ``"sm90a"`` (the
    Hopper kernel: H100/H200, 64 or 128 heads, 16-byte aligned kv rows). Arguments as in
    :func:`sparse_prefill`."""
    out, max_logits, lse = _prefill_outputs(q, d_v, out, max_logits, lse)
    return _C.sparse_prefill(q, kv, indices, topk_length, attn_sink,
                             None if sm_scale is None else float(sm_scale), int(d_v), out,
                             max_logits, lse, **default_stream(stream, q), kernel_name_only=True)
