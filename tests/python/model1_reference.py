"""Independent NumPy reference for the model1 Python tests (MODEL1.md sections 2-4).

Written from the contract only (no code shared with the library): the quantization rule and
byte layouts of both FP8 cache formats, decoding of cache bytes, and float64 sparse decode /
prefill. Also the tolerance checks of MODEL1.md and FlashMLA-style input generation.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

BF16 = ml_dtypes.bfloat16
E4M3 = ml_dtypes.float8_e4m3fn

# MODEL1_FP8: 448 NoPE dims e4m3 in 7 tiles of 64 (UE8M0 scales), 64 bf16 RoPE dims.
M1_D, M1_NOPE, M1_TILE, M1_TILES = 512, 448, 64, 7
M1_DATA_ROW, M1_SCALE_ROW, M1_BPT, M1_ALIGN = 576, 8, 584, 576
# V32_FP8: 512 NoPE dims e4m3 in 4 tiles of 128 (float32 scales), 64 bf16 RoPE dims.
V32_D, V32_NOPE, V32_TILE, V32_TILES, V32_BPT = 576, 512, 128, 4, 656

D_V = 512
FORMAT_D = {"model1_fp8": M1_D, "v32_fp8": V32_D}


def min_page_stride(fmt: str, page_size: int) -> int:
    if fmt == "model1_fp8":
        return -(-M1_BPT * page_size // M1_ALIGN) * M1_ALIGN
    return V32_BPT * page_size


# ---------------------------------------------------------------- quantization rule
def tile_scales(tiles_f32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale of each tile (last axis): s = 2^ceil(log2(max(amax / 448, 1e-4))), computed in
    float32 with an exact ceil(log2) (frexp). Returns (s float32, log2(s) int)."""
    amax = np.max(np.abs(tiles_f32), axis=-1).astype(np.float32)
    v = np.maximum(amax / np.float32(448.0), np.float32(1e-4)).astype(np.float32)
    mant, exp = np.frexp(v)  # v = mant * 2**exp, mant in [0.5, 1)
    k = np.where(mant == 0.5, exp - 1, exp).astype(np.int64)
    return np.ldexp(np.float32(1.0), k).astype(np.float32), k


def quantize_tiles(x_bf16: np.ndarray, tile: int):
    """x: bf16 [n, nope]. Returns (e4m3 [n, nope], scale float32 [n, tiles], log2 scale)."""
    n, nope = x_bf16.shape
    tiles = x_bf16.astype(np.float32).reshape(n, nope // tile, tile)
    s, k = tile_scales(tiles)
    q = (tiles / s[..., None]).astype(np.float32).astype(E4M3)  # round to nearest even
    return q.reshape(n, nope), s, k


def model1_cache_bytes(tokens_bf16: np.ndarray, page_size: int, page_stride: int,
                       fill: int = 0xCD) -> np.ndarray:
    """Reference MODEL1_FP8 cache [pages, page_stride] uint8 for tokens [pages * P, 512]; page
    padding bytes hold `fill`."""
    n = tokens_bf16.shape[0]
    assert tokens_bf16.shape[1] == M1_D and n % page_size == 0
    pages = n // page_size
    q, _, k = quantize_tiles(tokens_bf16[:, :M1_NOPE], M1_TILE)
    data = np.concatenate([q.view(np.uint8), tokens_bf16[:, M1_NOPE:].copy().view(np.uint8)],
                          axis=1)  # [n, 576]
    scales = np.zeros((n, M1_SCALE_ROW), np.uint8)
    scales[:, :M1_TILES] = (k + 127).astype(np.uint8)
    cache = np.full((pages, page_stride), fill, np.uint8)
    for p in range(pages):
        rows = slice(p * page_size, (p + 1) * page_size)
        cache[p, :M1_DATA_ROW * page_size] = data[rows].reshape(-1)
        cache[p, M1_DATA_ROW * page_size:M1_BPT * page_size] = scales[rows].reshape(-1)
    return cache


def v32_cache_bytes(tokens_bf16: np.ndarray, page_size: int, page_stride: int,
                    fill: int = 0xCD) -> np.ndarray:
    """Reference V32_FP8 cache [pages, page_stride] uint8 for tokens [pages * P, 576]."""
    n = tokens_bf16.shape[0]
    assert tokens_bf16.shape[1] == V32_D and n % page_size == 0
    pages = n // page_size
    q, s, _ = quantize_tiles(tokens_bf16[:, :V32_NOPE], V32_TILE)
    rows = np.concatenate([q.view(np.uint8), s.astype("<f4").view(np.uint8),
                           tokens_bf16[:, V32_NOPE:].copy().view(np.uint8)], axis=1)  # [n, 656]
    cache = np.full((pages, page_stride), fill, np.uint8)
    cache[:, :V32_BPT * page_size] = rows.reshape(pages, -1)
    return cache


def cache_bytes(fmt: str, tokens_bf16: np.ndarray, page_size: int, page_stride: int,
                fill: int = 0xCD) -> np.ndarray:
    builder = model1_cache_bytes if fmt == "model1_fp8" else v32_cache_bytes
    return builder(tokens_bf16, page_size, page_stride, fill)


def payload_mask(fmt: str, page_size: int, page_stride: int) -> np.ndarray:
    """bool [page_stride]: bytes of a page that belong to token rows (the rest is padding)."""
    mask = np.zeros(page_stride, bool)
    bpt = M1_BPT if fmt == "model1_fp8" else V32_BPT
    mask[:bpt * page_size] = True
    return mask


# ---------------------------------------------------------------- reading cache bytes
def dequantize(fmt: str, cache: np.ndarray, page_size: int) -> np.ndarray:
    """Every token of a byte cache [pages, page_stride] as float64 [pages * P, d_qk]:
    e4m3 * scale for NoPE dims, bf16 RoPE dims as stored."""
    cache = np.ascontiguousarray(cache).view(np.uint8)
    pages = cache.shape[0]
    n = pages * page_size
    if fmt == "model1_fp8":
        data = cache[:, :M1_DATA_ROW * page_size].reshape(n, M1_DATA_ROW)
        scale_rows = cache[:, M1_DATA_ROW * page_size:M1_BPT * page_size].reshape(n, 8)
        nope = data[:, :M1_NOPE].copy().view(E4M3).astype(np.float64)
        exps = scale_rows[:, :M1_TILES].astype(np.float64) - 127.0
        nope = nope.reshape(n, M1_TILES, M1_TILE) * np.exp2(exps)[..., None]
        rope = data[:, M1_NOPE:].copy().view(BF16).astype(np.float64)
        return np.concatenate([nope.reshape(n, M1_NOPE), rope], axis=1)
    rows = cache[:, :V32_BPT * page_size].reshape(n, V32_BPT)
    nope = rows[:, :V32_NOPE].copy().view(E4M3).astype(np.float64)
    scales = rows[:, V32_NOPE:V32_NOPE + 16].copy().view("<f4").astype(np.float64)
    nope = nope.reshape(n, V32_TILES, V32_TILE) * scales[..., None]
    rope = rows[:, V32_NOPE + 16:].copy().view(BF16).astype(np.float64)
    return np.concatenate([nope.reshape(n, V32_NOPE), rope], axis=1)


# ---------------------------------------------------------------- attention references
def _candidates(idx_row: np.ndarray, length: int | None, num_slots: int) -> list:
    topk = idx_row.shape[0]
    n = topk if length is None else min(max(int(length), 0), topk)
    return [int(s) for s in idx_row[:n] if 0 <= int(s) < num_slots]


def _attend(q_rows: np.ndarray, keys: np.ndarray, sm_scale: float, sink):
    """q_rows [h, d], keys [n, d] float64. Returns out [h, 512], lse [h], max_logit [h]."""
    h = q_rows.shape[0]
    if keys.shape[0] == 0:
        return np.zeros((h, D_V)), np.full(h, np.inf), np.full(h, -np.inf)
    logits = sm_scale * (q_rows @ keys.T)  # [h, n]
    m = logits.max(axis=1)
    p = np.exp(logits - m[:, None])
    denom = p.sum(axis=1)
    lse = m + np.log(denom)
    out = (p @ keys[:, :D_V]) / denom[:, None]
    if sink is not None:
        with np.errstate(over="ignore"):
            out = out / (1.0 + np.exp(sink.astype(np.float64) - lse))[:, None]
    return out, lse, m


def decode_ref(q, keys, indices, topk_length=None, extra_keys=None, extra_indices=None,
               extra_topk_length=None, attn_sink=None, sm_scale=None):
    """MODEL1.md section 3 in float64. q [b, s_q, h, d] (any float dtype); keys / extra_keys
    float64 [slots, d] (dequantized caches). Returns out [b, s_q, h, 512], lse [b, s_q, h]."""
    q = np.asarray(q).astype(np.float64)
    b, s_q, h, d = q.shape
    sm_scale = 1.0 / math.sqrt(d) if sm_scale is None else float(sm_scale)
    out = np.zeros((b, s_q, h, D_V))
    lse = np.zeros((b, s_q, h))
    for i in range(b):
        for j in range(s_q):
            slots = _candidates(indices[i, j], None if topk_length is None else topk_length[i],
                                keys.shape[0])
            rows = [keys[s] for s in slots]
            if extra_keys is not None:
                ex = _candidates(extra_indices[i, j],
                                 None if extra_topk_length is None else extra_topk_length[i],
                                 extra_keys.shape[0])
                rows += [extra_keys[s] for s in ex]
            k = np.stack(rows) if rows else np.zeros((0, d))
            out[i, j], lse[i, j], _ = _attend(q[i, j], k, sm_scale, attn_sink)
    return out, lse


def prefill_ref(q, kv, indices, topk_length=None, attn_sink=None, sm_scale=None):
    """MODEL1.md section 4 in float64. q [s_q, h, d], kv [s_kv, d], indices [s_q, topk].
    Returns out [s_q, h, 512], max_logits [s_q, h], lse [s_q, h]."""
    q = np.asarray(q).astype(np.float64)
    kv = np.asarray(kv).astype(np.float64)
    s_q, h, d = q.shape
    sm_scale = 1.0 / math.sqrt(d) if sm_scale is None else float(sm_scale)
    out = np.zeros((s_q, h, D_V))
    lse = np.zeros((s_q, h))
    mx = np.zeros((s_q, h))
    for i in range(s_q):
        slots = _candidates(indices[i], None if topk_length is None else topk_length[i],
                            kv.shape[0])
        k = kv[slots] if slots else np.zeros((0, d))
        out[i], lse[i], mx[i] = _attend(q[i], k, sm_scale, attn_sink)
    return out, mx, lse


# ---------------------------------------------------------------- tolerances (MODEL1.md)
def assert_out_close(out, ref, what="out"):
    out = np.asarray(out).astype(np.float64)
    assert out.shape == ref.shape, f"{what}: shape {out.shape} != {ref.shape}"
    assert np.isfinite(out).all(), f"{what}: non-finite values"
    tol = 1e-3 + (2.01 / 128) * np.abs(ref)
    err = np.abs(out - ref)
    bad = err > tol
    assert not bad.any(), (f"{what}: {bad.sum()} of {bad.size} elements out of tolerance, "
                           f"max err {err.max():.3g}, first at {np.argwhere(bad)[0]}")
    na, nb = np.linalg.norm(out), np.linalg.norm(ref)
    if na > 0 and nb > 0:
        cos_dist = 1.0 - float(np.sum(out * ref)) / (na * nb)
        assert cos_dist < 5e-6, f"{what}: cosine distance {cos_dist:.3g}"
    else:
        assert na == nb == 0, f"{what}: one of output/reference is all zero"


def assert_lse_close(lse, ref, what="lse"):
    lse = np.asarray(lse).astype(np.float64)
    assert lse.shape == ref.shape, f"{what}: shape {lse.shape} != {ref.shape}"
    assert not np.isnan(lse).any(), f"{what}: NaN"
    inf = np.isinf(ref)
    assert np.array_equal(lse[inf], ref[inf]), f"{what}: infinities differ"
    fin = ~inf
    err = np.abs(lse[fin] - ref[fin])
    tol = 1e-6 + (8.01 / 65536) * np.abs(ref[fin])
    assert (err <= tol).all(), f"{what}: max err {err.max():.3g}"


# ---------------------------------------------------------------- input generation
def random_tokens(rng: np.random.Generator, n: int, d: int, spread: bool = True) -> np.ndarray:
    """bf16 [n, d] tokens; with `spread`, magnitudes vary per 64-dim tile over many decades
    (so every quantization scale regime occurs)."""
    x = rng.standard_normal((n, d))
    if spread:
        x *= 10.0 ** rng.uniform(-5, 3, size=(n, d // 64, 1)).repeat(64, axis=2).reshape(n, d)
    return x.astype(BF16)


def flashmla_values(rng: np.random.Generator, shape) -> np.ndarray:
    """FlashMLA-style values (PERFORMANCE.md's generation rule): N(0, 0.1^2) clipped to [-1, 1],
    as float64. NOTE: MODEL1.md's tolerances are calibrated on such inputs; GPU kernels round
    softmax weights to bf16 before P V (as FlashMLA does), which on much larger logits gives
    element errors above 1e-3 + (2.01/128)|ref| with the cosine still tiny."""
    return np.clip(rng.normal(0.0, 0.1, size=shape), -1.0, 1.0)


def flashmla_indices(rng: np.random.Generator, b: int, s_q: int, topk: int, page_size: int,
                     num_pages: int, lengths: np.ndarray) -> np.ndarray:
    """FlashMLA-style int32 [b, s_q, topk]: per request, distinct random positions below its
    cached length, padded with -1, mapped to slots through a shuffled block table."""
    blocks_per_req = num_pages // b
    table = rng.permutation(num_pages)[:b * blocks_per_req].reshape(b, blocks_per_req)
    idx = np.full((b, s_q, topk), -1, np.int32)
    for i in range(b):
        length = int(min(lengths[i], blocks_per_req * page_size))
        for j in range(s_q):
            n = min(topk, length)
            pos = rng.choice(length, size=n, replace=False)
            idx[i, j, :n] = table[i, pos // page_size] * page_size + pos % page_size
    return idx
