"""Bad arguments raise model1.Error (a ValueError) naming the argument, and change nothing."""

import pickle

import ml_dtypes
import numpy as np
import pytest

import model1
import model1_reference as ref

BF16 = ml_dtypes.bfloat16


@pytest.fixture
def problem(rng):
    cache = model1.quantize_cache(ref.random_tokens(rng, 128, 512), page_size=64)
    q = rng.standard_normal((2, 1, 16, 512)).astype(BF16)
    idx = rng.integers(0, 128, size=(2, 1, 32)).astype(np.int32)
    out = np.full((2, 1, 16, 512), np.nan, BF16)
    lse = np.full((2, 1, 16), np.nan, np.float32)
    return dict(q=q, kv=cache, indices=idx, out=out, lse=lse)


def decode_error(problem, **changes):
    args = dict(problem, **changes)
    with pytest.raises(model1.Error) as e:
        model1.sparse_decode(**args)
    # Validation happens before anything is written.
    assert np.isnan(problem["out"].astype(np.float32)).all()
    assert np.isnan(problem["lse"]).all()
    return e.value


def test_error_class():
    assert issubclass(model1.Error, ValueError)
    e = model1.Error.of("q", "dtype bf16", "dtype f32")
    assert (e.argument, e.expected, e.actual) == ("q", "dtype bf16", "dtype f32")
    assert "'q'" in str(e) and "dtype bf16" in str(e)
    e2 = pickle.loads(pickle.dumps(e))
    assert (type(e2), e2.argument, str(e2)) == (model1.Error, "q", str(e))


def test_library_error_fields(problem):
    e = decode_error(problem, q=problem["q"].astype(np.float32))
    assert e.argument == "q"
    assert "bf16" in e.expected and "f32" in e.actual
    assert e.file.endswith(".cpp") and e.line > 0
    assert "'q'" in str(e) and e.expected in str(e) and e.actual in str(e)


def test_wrong_index_dtype(problem):
    e = decode_error(problem, indices=problem["indices"].astype(np.int64))
    assert e.argument == "indices"


def test_wrong_out_shape(problem):
    bad = np.full((2, 1, 16, 256), np.nan, BF16)
    e = decode_error(problem, out=bad)
    assert e.argument.startswith("out")
    assert np.isnan(bad.astype(np.float32)).all()


def test_read_only_output(problem):
    ro = problem["out"].copy()
    ro.flags.writeable = False
    e = decode_error(problem, out=ro)
    assert e.argument == "out" and "writable" in e.expected


def test_read_only_inputs_are_fine(problem):
    q = problem["q"].copy()
    q.flags.writeable = False
    out, _ = model1.sparse_decode(q, problem["kv"], problem["indices"])
    assert np.isfinite(out.astype(np.float32)).all()


def test_not_an_array(problem):
    e = decode_error(problem, q=[[1.0, 2.0]])
    assert e.argument == "q"
    e = decode_error(problem, indices=None)
    assert e.argument == "indices"


def test_unsupported_dtypes(problem):
    e = decode_error(problem, q=problem["q"].astype(np.float16))
    assert e.argument == "q" and "bf16" in e.expected
    e = decode_error(problem, q=problem["q"].astype(ml_dtypes.float8_e5m2))
    assert e.argument == "q"


def test_bad_head_count(problem):
    q = np.zeros((2, 1, 12, 512), BF16)
    e = decode_error(problem, q=q, out=np.full((2, 1, 12, 512), np.nan, BF16),
                     lse=np.full((2, 1, 12), np.nan, np.float32))
    assert e.argument.startswith("q")


def test_bad_sm_scale(problem):
    e = decode_error(problem, sm_scale=-1.0)
    assert e.argument == "sm_scale"


def test_optional_tensor_errors(problem):
    e = decode_error(problem, topk_length=np.zeros(3, np.int32))
    assert e.argument.startswith("topk_length")
    e = decode_error(problem, attn_sink=np.zeros(16, np.int32))
    assert e.argument.startswith("attn_sink")
    e = decode_error(problem, extra_indices=problem["indices"])  # without extra_kv
    assert e.argument.startswith("extra")


def test_cache_format_and_page_size_errors(problem):
    data = problem["kv"].data
    e = decode_error(problem, kv=data)  # 2-D bytes: format cannot be inferred
    assert e.argument == "kv.format"
    with pytest.raises(model1.Error) as e:
        model1.KvCache(data, "model1_fp8")  # 2-D bytes: P cannot be inferred
    assert e.value.argument == "kv.page_size"
    with pytest.raises(model1.Error) as e:
        model1.KvCache(data, "fp4", 64)
    assert e.value.argument == "kv.format"
    with pytest.raises(model1.Error) as e:
        model1.KvCache(data, "model1_fp8", 0)
    assert e.value.argument == "kv.page_size"
    # Page stride too small for P = 65.
    e = decode_error(problem, kv=model1.KvCache(data, "model1_fp8", 65))
    assert e.argument.startswith("kv")


def test_quantize_errors(rng):
    src = ref.random_tokens(rng, 64, 512)
    with pytest.raises(model1.Error) as e:
        model1.quantize_cache(src)  # no dst and no page_size
    assert e.value.argument == "page_size"
    with pytest.raises(model1.Error) as e:
        model1.quantize_cache(src, page_size=48)  # 64 rows are not whole pages of 48
    assert e.value.argument == "src.shape"
    with pytest.raises(model1.Error) as e:
        model1.quantize_cache(src.astype(np.float32), page_size=64)
    assert e.value.argument == "src"
    with pytest.raises(model1.Error) as e:
        model1.dequantize_cache(model1.quantize_cache(src, page_size=64), dtype="f16")
    assert e.value.argument == "dtype"


def test_unknown_array_library_needs_explicit_outputs():
    class Fake:
        shape = (1, 1, 16, 512)

    with pytest.raises(model1.Error) as e:
        model1.sparse_decode(Fake(), None, None)
    assert e.value.argument == "out"
