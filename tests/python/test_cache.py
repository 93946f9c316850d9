"""Cache writing and reading on the CPU with NumPy / ml_dtypes arrays, bit-exact against the
independent NumPy implementation of MODEL1.md section 2 (model1_reference)."""

import ml_dtypes
import numpy as np
import pytest

import model1
import model1_reference as ref

BF16 = ml_dtypes.bfloat16


def edge_tokens(fmt):
    """Tokens whose tiles sit on the scale rule's edges."""
    d = ref.FORMAT_D[fmt]
    tile = ref.M1_TILE if fmt == "model1_fp8" else ref.V32_TILE
    nope = ref.M1_NOPE if fmt == "model1_fp8" else ref.V32_NOPE
    rows = []
    for amax in [56.0, 56.25, 448.0, 1.0, 0.0, 1e-8, 448e-4, 3.0e4, 2.0**-20]:
        x = np.zeros(d, np.float32)
        x[:nope] = np.linspace(-amax, amax * 0.999, nope)
        x[5] = -amax  # amax exactly, negative
        x[nope:] = np.linspace(-2, 2, d - nope)
        rows.append(x)
    # One tile per regime inside a single token.
    x = np.zeros(d, np.float32)
    for t, amax in enumerate([56.0, 56.25, 0.0, 1e-6, 7.0, 1e3, 0.5, 3.0][: nope // tile]):
        x[t * tile:(t + 1) * tile] = amax * np.cos(np.arange(tile))
    rows.append(x)
    return np.stack(rows).astype(BF16)


@pytest.mark.parametrize("fmt", ["model1_fp8", "v32_fp8"])
@pytest.mark.parametrize("page_size", [1, 2, 61])
def test_quantize_bit_exact(fmt, page_size, rng):
    d = ref.FORMAT_D[fmt]
    edges = edge_tokens(fmt)
    pages = -(-(len(edges) + 40) // page_size)
    tokens = ref.random_tokens(rng, pages * page_size, d)
    tokens[: len(edges)] = edges
    stride = ref.min_page_stride(fmt, page_size)
    cache = model1.empty_cache(pages, page_size, fmt)
    cache.data[...] = 0xCD  # padding must stay as it is
    got = model1.quantize_cache(tokens, cache)
    assert got is cache
    assert cache.data.shape == (pages, stride) and cache.data.dtype == np.uint8
    want = ref.cache_bytes(fmt, tokens, page_size, stride, fill=0xCD)
    diff = np.argwhere(cache.data != want)
    assert diff.size == 0, f"{len(diff)} bytes differ, first at (page, byte) {diff[0]}"


@pytest.mark.parametrize("fmt", ["model1_fp8", "v32_fp8"])
@pytest.mark.parametrize("out_dtype", ["bf16", "f32"])
def test_dequantize_exact(fmt, out_dtype, rng):
    page_size = 61
    d = ref.FORMAT_D[fmt]
    tokens = ref.random_tokens(rng, 3 * page_size, d)
    stride = ref.min_page_stride(fmt, page_size)
    data = ref.cache_bytes(fmt, tokens, page_size, stride)
    back = model1.dequantize_cache(model1.KvCache(data, fmt, page_size), dtype=out_dtype)
    assert back.shape == (3 * page_size, d)
    assert back.dtype == (BF16 if out_dtype == "bf16" else np.float32)
    want = ref.dequantize(fmt, data, page_size)
    assert np.array_equal(back.astype(np.float64), want)
    # RoPE dims are stored, not quantized: they come back bit for bit.
    nope = ref.M1_NOPE if fmt == "model1_fp8" else ref.V32_NOPE
    assert np.array_equal(back[:, nope:].astype(np.float64), tokens[:, nope:].astype(np.float64))


def test_round_trip_error_is_bounded(rng):
    tokens = ref.random_tokens(rng, 128, 512)
    cache = model1.quantize_cache(tokens, page_size=64)
    back = model1.dequantize_cache(cache, dtype="f32").astype(np.float64)
    x = tokens.astype(np.float64)
    tiles = np.abs(x[:, :448]).reshape(128, 7, 64).max(axis=2, keepdims=True)
    # e4m3 keeps 3 mantissa bits: relative error <= 2^-4 of the value, plus the scale's
    # subnormal step (scale / 2^9 <= 2 * amax / 448 / 2^9) for small values.
    err = np.abs(back[:, :448] - x[:, :448]).reshape(128, 7, 64)
    bound = np.abs(x[:, :448]).reshape(128, 7, 64) / 16 + tiles * 2 / 448 / 512 + 2e-4 / 512
    assert (err <= bound).all()


def test_flashmla_view_of_a_slice(rng):
    """The 4-D [pages, P, 1, 584] view of a padded byte buffer that is itself a slice of a
    larger allocation: format and P inferred, bytes identical to the 2-D cache."""
    page_size, pages = 64, 3
    stride = ref.min_page_stride("model1_fp8", page_size) + 576  # larger than needed
    big = np.full((pages + 2) * stride + 1000, 0xEE, np.uint8)
    flat = big[stride + 123: stride + 123 + pages * stride]
    view = np.lib.stride_tricks.as_strided(flat, (pages, page_size, 1, 584),
                                           (stride, 584, 584, 1))
    tokens = ref.random_tokens(rng, pages * page_size, 512)
    model1.quantize_cache(tokens, view)
    got = flat.reshape(pages, stride)
    want = ref.model1_cache_bytes(tokens, page_size, stride, fill=0xEE)
    assert np.array_equal(got, want)
    assert (big[: stride + 123] == 0xEE).all()
    assert (big[stride + 123 + pages * stride:] == 0xEE).all()
    info = model1.KvCache(view)
    assert (info.format, info.page_size, info.num_pages, info.page_stride) == \
        ("model1_fp8", page_size, pages, stride)
    back = model1.dequantize_cache(view, dtype="f32")
    assert np.array_equal(back.astype(np.float64), ref.dequantize("model1_fp8", got, page_size))
    # KvCache.flashmla_view() builds the same view.
    again = model1.KvCache(flat.reshape(pages, stride), "model1_fp8", page_size).flashmla_view()
    assert again.shape == view.shape and again.strides == view.strides
    assert np.shares_memory(again, flat)


def test_v32_flashmla_view(rng):
    page_size, pages = 2, 5
    tokens = ref.random_tokens(rng, pages * page_size, 576)
    cache = model1.empty_cache(pages, page_size, "v32_fp8")
    view = cache.flashmla_view()
    assert view.shape == (pages, page_size, 1, 656)
    model1.quantize_cache(tokens, view)
    assert np.array_equal(cache.data, ref.v32_cache_bytes(tokens, page_size, 656 * page_size))


def test_fp8_typed_cache_array(rng):
    """A cache held as an ml_dtypes float8_e4m3fn array is the same bytes."""
    tokens = ref.random_tokens(rng, 2 * 64, 512)
    fp8 = np.zeros((2, ref.min_page_stride("model1_fp8", 64)), ml_dtypes.float8_e4m3fn)
    model1.quantize_cache(tokens, fp8, page_size=64, format="model1_fp8")
    want = ref.model1_cache_bytes(tokens, 64, fp8.shape[1], fill=0)
    assert np.array_equal(fp8.view(np.uint8), want)
    back = model1.dequantize_cache(model1.KvCache(fp8, "model1_fp8", 64))
    assert np.array_equal(back.astype(np.float64), ref.dequantize("model1_fp8", want, 64))


@pytest.mark.parametrize("fmt", ["model1_fp8", "v32_fp8"])
def test_store_tokens(fmt, rng):
    page_size, pages = 61, 3
    d = ref.FORMAT_D[fmt]
    stride = ref.min_page_stride(fmt, page_size)
    base = ref.random_tokens(rng, pages * page_size, d)
    cache = model1.quantize_cache(base, page_size=page_size, format=fmt)
    new = ref.random_tokens(rng, 20, d)
    slots = rng.choice(pages * page_size, size=20, replace=False).astype(np.int32)
    slots[[3, 11]] = -1  # padding rows: skipped
    slots[7] = np.iinfo(np.int32).min
    assert model1.store_tokens(new, slots, cache) is cache
    expect = base.copy()
    keep = slots >= 0
    expect[slots[keep]] = new[keep]
    want = ref.cache_bytes(fmt, expect, page_size, stride)
    mask = ref.payload_mask(fmt, page_size, stride)
    assert np.array_equal(cache.data[:, mask], want[:, mask])


def test_store_tokens_into_bf16_cache(rng):
    cache = model1.empty_cache(2, 4, "bf16")
    assert cache.data.shape == (2, 4, 512) and cache.data.dtype == BF16
    cache.data[...] = 0
    new = ref.random_tokens(rng, 3, 512)
    model1.store_tokens(new, np.array([5, -1, 0], np.int32), cache)
    flat = cache.data.reshape(8, 512)
    assert np.array_equal(flat[5], new[0]) and np.array_equal(flat[0], new[2])
    assert not flat[[1, 2, 3, 4, 6, 7]].astype(np.float32).any()


def test_store_tokens_bad_slot_changes_nothing(rng):
    cache = model1.quantize_cache(ref.random_tokens(rng, 64, 512), page_size=64)
    before = cache.data.copy()
    slots = np.array([1, 64], np.int32)  # 64 is past the end (1 page of 64)
    with pytest.raises(model1.Error) as e:
        model1.store_tokens(ref.random_tokens(rng, 2, 512), slots, cache)
    assert e.value.argument.startswith("slots")
    assert np.array_equal(cache.data, before)


def test_quantize_writes_the_given_array_in_place(rng):
    """Zero copy: the array passed as dst is the one written (no staging copy)."""
    tokens = ref.random_tokens(rng, 64, 512)
    data = np.zeros((1, ref.min_page_stride("model1_fp8", 64)), np.uint8)
    address = data.__array_interface__["data"][0]
    model1.quantize_cache(tokens, data, page_size=64, format="model1_fp8")
    assert data.__array_interface__["data"][0] == address
    assert np.array_equal(data, ref.model1_cache_bytes(tokens, 64, data.shape[1], fill=0))


def test_non_contiguous_source_rows(rng):
    """src rows may have any stride (last dim contiguous): a view, not a copy, is read."""
    wide = ref.random_tokens(rng, 128, 1024)
    src = wide[:, 256:768]  # [128, 512], row stride 1024
    assert not src.flags.c_contiguous
    cache = model1.quantize_cache(src, page_size=64)
    want = ref.model1_cache_bytes(np.ascontiguousarray(src), 64, cache.page_stride)
    mask = ref.payload_mask("model1_fp8", 64, cache.page_stride)
    assert np.array_equal(cache.data[:, mask], want[:, mask])
