"""Sparse decode on the CPU with NumPy / ml_dtypes arrays against the float64 NumPy reference
(MODEL1.md section 3), plus plans, determinism, batch invariance and zero-copy outputs."""

import dataclasses

import ml_dtypes
import numpy as np
import pytest

import model1
import model1_reference as ref

BF16 = ml_dtypes.bfloat16
I32 = np.iinfo(np.int32)


@dataclasses.dataclass
class Case:
    fmt: str = "model1_fp8"
    b: int = 2
    s_q: int = 1
    h_q: int = 64
    topk: int = 128
    page_size: int = 64
    pages: int = 6
    topk_length: bool = False
    extra: bool = False
    extra_topk: int = 96
    extra_page_size: int = 2
    extra_pages: int = 40
    extra_topk_length: bool = False
    sink: bool = False
    invalid: bool = False
    sm_scale: float = None
    view: str = "2d"  # how the main cache is passed: "2d" KvCache, "4d" FlashMLA view


CASES = {
    "basic": Case(),
    "h16_s2_all": Case(h_q=16, s_q=2, b=3, topk_length=True, extra=True, extra_topk_length=True,
                       sink=True, invalid=True, view="4d"),
    "h64_s2_all": Case(h_q=64, s_q=2, topk=100, topk_length=True, extra=True, sink=True,
                       invalid=True, page_size=61, pages=5, sm_scale=0.07),
    "h8_topk_not_64": Case(h_q=8, topk=37, extra=True, extra_topk=11, extra_page_size=1,
                           extra_pages=50, invalid=True),
    "v32": Case(fmt="v32_fp8", h_q=16, s_q=2, topk=64, page_size=2, pages=80, extra=True,
                topk_length=True, sink=True, invalid=True, view="4d"),
}


def make_problem(case: Case, rng):
    d = ref.FORMAT_D[case.fmt]
    p = {}
    tokens = ref.random_tokens(rng, case.pages * case.page_size, d, spread=False)
    p["kv"] = model1.quantize_cache(tokens, page_size=case.page_size, format=case.fmt)
    slots = case.pages * case.page_size
    p["keys"] = ref.dequantize(case.fmt, p["kv"].data, case.page_size)
    p["q"] = (rng.standard_normal((case.b, case.s_q, case.h_q, d)) * 1.5).astype(BF16)
    lengths = rng.integers(case.topk // 2, slots + 1, size=case.b)
    p["indices"] = ref.flashmla_indices(rng, case.b, case.s_q, case.topk, case.page_size,
                                        case.pages, lengths)
    if case.invalid:
        idx = p["indices"]
        flavours = [-1, I32.min, I32.max, slots, slots + 7, -2]
        for n, v in enumerate(flavours):
            idx[n % case.b, n % case.s_q, (3 * n) % case.topk] = v
        idx[0, 0, 1] = idx[0, 0, 0]  # duplicates count twice
        if case.b > 2:
            idx[2] = -1  # a request with no valid key at all
    used = set(p["indices"].reshape(-1).tolist())
    p["topk_length"] = None
    if case.topk_length:
        tl = rng.integers(1, case.topk + 1, size=case.b).astype(np.int32)
        tl[0] = case.topk + 50  # above topk means topk
        if case.b > 1:
            tl[1] = 0 if case.b > 2 else case.topk // 3
        p["topk_length"] = tl
    p["extra_kv"] = p["extra_indices"] = p["extra_topk_length"] = p["extra_keys"] = None
    if case.extra:
        ex_tokens = ref.random_tokens(rng, case.extra_pages * case.extra_page_size, d,
                                      spread=False)
        p["extra_kv"] = model1.quantize_cache(ex_tokens, page_size=case.extra_page_size,
                                              format=case.fmt)
        p["extra_keys"] = ref.dequantize(case.fmt, p["extra_kv"].data, case.extra_page_size)
        ex_slots = case.extra_pages * case.extra_page_size
        p["extra_indices"] = rng.integers(-3, ex_slots + 3,
                                          size=(case.b, case.s_q, case.extra_topk)).astype(np.int32)
        if case.extra_topk_length:
            etl = rng.integers(0, case.extra_topk + 1, size=case.b).astype(np.int32)
            etl[-1] = -5  # negative means 0
            p["extra_topk_length"] = etl
    p["attn_sink"] = None
    if case.sink:
        sink = rng.uniform(-3, 6, size=case.h_q).astype(np.float32)
        sink[0], sink[1] = -np.inf, np.inf
        p["attn_sink"] = sink
    # NaN in every main-cache slot no valid candidate names: it must have no effect.
    plant_nan(case, p["kv"].data, used, slots)
    if case.view == "4d":
        p["kv_arg"] = p["kv"].flashmla_view()
    else:
        p["kv_arg"] = p["kv"]
    return p


def plant_nan(case, data, used, slots):
    for s in range(slots):
        if s in used:
            continue
        page, t = divmod(s, case.page_size)
        if case.fmt == "model1_fp8":
            data[page, 576 * t: 576 * t + 448] = 0x7F  # e4m3 NaN
            data[page, 576 * t + 448: 576 * t + 576] = 0xFF  # bf16 NaN
            data[page, 576 * case.page_size + 8 * t: 576 * case.page_size + 8 * t + 7] = 0xFF
        else:
            data[page, 656 * t: 656 * (t + 1)] = 0xFF


def run(p, **kw):
    return model1.sparse_decode(p["q"], p["kv_arg"], p["indices"], p["topk_length"],
                                p["extra_kv"], p["extra_indices"], p["extra_topk_length"],
                                p["attn_sink"], **kw)


def reference(p, case):
    return ref.decode_ref(p["q"], p["keys"], p["indices"], p["topk_length"], p["extra_keys"],
                          p["extra_indices"], p["extra_topk_length"], p["attn_sink"],
                          case.sm_scale)


@pytest.mark.parametrize("name", list(CASES))
def test_decode_matches_reference(name, rng):
    case = CASES[name]
    p = make_problem(case, rng)
    out, lse = run(p, sm_scale=case.sm_scale)
    assert out.shape == (case.b, case.s_q, case.h_q, 512) and out.dtype == BF16
    assert lse.shape == (case.b, case.s_q, case.h_q) and lse.dtype == np.float32
    ref_out, ref_lse = reference(p, case)
    ref.assert_out_close(out, ref_out)
    ref.assert_lse_close(lse, ref_lse)
    if case.b > 2 and case.invalid:
        assert not out[2].astype(np.float32).any() and np.isposinf(lse[2]).all()
    if case.sink:
        assert not out[..., 1, :].astype(np.float32).any()  # sink +inf gives 0


def test_plan_reuse_and_determinism(rng):
    case = CASES["h16_s2_all"]
    p = make_problem(case, rng)
    plan = model1.plan_decode(p["q"], p["kv_arg"], p["indices"], p["topk_length"], p["extra_kv"],
                              p["extra_indices"], p["extra_topk_length"], p["attn_sink"])
    assert isinstance(plan, model1.DecodePlan) and plan.valid
    out1, lse1 = run(p, plan=plan)
    out2, lse2 = run(p, plan=plan)
    out3, lse3 = run(p)
    for o, l in ((out2, lse2), (out3, lse3)):
        assert np.array_equal(o.view(np.uint16), out1.view(np.uint16))
        assert np.array_equal(lse1.view(np.uint32), l.view(np.uint32))
    # Another "layer": same shapes, new q and cache contents, same plan.
    p2 = make_problem(case, np.random.default_rng(7))
    out4, lse4 = run(p2, plan=plan)
    ref_out, ref_lse = reference(p2, case)
    ref.assert_out_close(out4, ref_out)
    ref.assert_lse_close(lse4, ref_lse)


def test_plan_for_other_shapes_is_an_error(rng):
    p = make_problem(CASES["basic"], rng)
    plan = model1.plan_decode(p["q"], p["kv_arg"], p["indices"])
    q3 = np.concatenate([p["q"], p["q"][:1]])
    idx3 = np.concatenate([p["indices"], p["indices"][:1]])
    out = np.full((3, 1, 64, 512), np.nan, BF16)
    with pytest.raises(model1.Error) as e:
        model1.sparse_decode(q3, p["kv_arg"], idx3, plan=plan, out=out)
    assert e.value.argument.startswith("plan")
    assert np.isnan(out.astype(np.float32)).all()  # nothing written


def test_plan_split_keys_option(rng):
    p = make_problem(CASES["basic"], rng)
    args = (p["q"], p["kv_arg"], p["indices"])
    default = model1.plan_decode(*args)
    assert default.split_keys == model1.DEFAULT_SPLIT_KEYS > 0
    plan = model1.plan_decode(*args, split_keys=128)
    assert plan.split_keys == 128 and "split_keys=128" in repr(plan)
    out1, lse1 = run(p, plan=plan)
    out2, lse2 = run(p, plan=default)  # the CPU backend has no splits: the same bits
    assert np.array_equal(out1.view(np.uint16), out2.view(np.uint16))
    assert np.array_equal(lse1.view(np.uint32), lse2.view(np.uint32))
    # LATENCY_SPLIT_KEYS: accepted; the CPU backend (no splits) resolves it to the default.
    assert model1.plan_decode(*args, split_keys=model1.LATENCY_SPLIT_KEYS).split_keys == \
        model1.DEFAULT_SPLIT_KEYS
    for bad in (-2, -64, 1, 100, 16384 + 64):
        with pytest.raises(model1.Error) as e:
            model1.plan_decode(*args, split_keys=bad)
        assert e.value.argument == "options.split_keys" and "multiple of 64" in str(e.value)
    for bad in (1.5, "128", True):
        with pytest.raises(model1.Error) as e:
            model1.plan_decode(*args, split_keys=bad)
        assert e.value.argument == "split_keys"
    # The convenience call plans with split_keys itself; with a plan it must stay 0.
    out3, lse3 = run(p, split_keys=192)
    assert np.array_equal(out3.view(np.uint16), out1.view(np.uint16))
    out = np.full(out1.shape, np.nan, out1.dtype)
    for kw in ({"split_keys": 100}, {"split_keys": 128, "plan": plan}):
        with pytest.raises(model1.Error) as e:
            run(p, out=out, **kw)
        assert e.value.argument in ("options.split_keys", "split_keys")
        assert np.isnan(out.astype(np.float32)).all()  # nothing written


def test_latency_split_keys():
    """The latency rule on shapes it was measured on (H200, 132 SMs; docs/PERF.md)."""
    assert model1.LATENCY_SPLIT_KEYS == -1
    rule = model1.latency_split_keys
    assert rule(2, 2, 64, 640, 132) == 64          # model1-c1 b = 2
    assert rule(32, 2, 64, 640, 132) == 320        # model1-c1 b = 32
    assert rule(128, 2, 64, 640, 132) == model1.DEFAULT_SPLIT_KEYS  # fills the GPU
    assert rule(2, 2, 128, 1152, 132) == 128       # model1-c2 b = 2 (two CTAs a split)
    assert rule(16, 2, 128, 2048, 132) == 1024     # v32-h128 b = 16
    assert rule(b=2, s_q=2, h_q=64, keys_per_request=640, num_sms=8) == 320
    for kwargs, name in (({"b": 0}, "b"), ({"s_q": 0}, "s_q"), ({"h_q": 0}, "h_q"),
                         ({"keys_per_request": 0}, "keys_per_request"), ({"num_sms": 0}, "num_sms")):
        full = dict(b=2, s_q=2, h_q=64, keys_per_request=640, num_sms=132)
        full.update(kwargs)
        with pytest.raises(model1.Error) as e:
            rule(**full)
        assert e.value.argument == name
    assert rule(np.int64(2), np.int32(2), 64, 640, 132) == 64  # integer scalars are ints
    for bad in (2.0, "2", True, None):
        with pytest.raises(model1.Error) as e:
            rule(bad, 2, 64, 640, 132)
        assert e.value.argument == "b"


def test_decode_kernel_name(rng):
    p = make_problem(CASES["h64_s2_all"], rng)
    args = (p["q"], p["kv_arg"], p["indices"], p["topk_length"], p["extra_kv"],
            p["extra_indices"], p["extra_topk_length"], p["attn_sink"])
    assert model1.decode_kernel_name(*args) == "cpu"
    plan = model1.plan_decode(*args)
    assert model1.decode_kernel_name(*args, plan=plan) == "cpu"
    # The same validation as sparse_decode: a plan for other shapes and bad arguments are refused.
    other = make_problem(CASES["basic"], rng)
    with pytest.raises(model1.Error) as e:
        model1.decode_kernel_name(other["q"], other["kv_arg"], other["indices"], plan=plan)
    assert e.value.argument.startswith("plan")
    with pytest.raises(model1.Error) as e:
        model1.decode_kernel_name(p["q"], p["kv_arg"], p["indices"].astype(np.int64))
    assert e.value.argument.startswith("indices")


def test_batch_invariance(rng):
    case = CASES["h64_s2_all"]
    p = make_problem(case, rng)
    out, lse = run(p, sm_scale=case.sm_scale)
    for i in range(case.b):
        one = dict(p)
        for k in ("q", "indices", "topk_length", "extra_indices", "extra_topk_length"):
            if p[k] is not None:
                one[k] = p[k][i:i + 1]
        o, l = run(one, sm_scale=case.sm_scale)
        assert np.array_equal(o.view(np.uint16), out[i:i + 1].view(np.uint16))
        assert np.array_equal(l.view(np.uint32), lse[i:i + 1].view(np.uint32))


def test_outputs_are_written_in_place(rng):
    """Zero copy: the out / lse arrays passed are the ones returned and written."""
    case = CASES["basic"]
    p = make_problem(case, rng)
    out = np.full((case.b, case.s_q, case.h_q, 512), np.nan, BF16)
    lse = np.full((case.b, case.s_q, case.h_q), np.nan, np.float32)
    o, l = run(p, out=out, lse=lse)
    assert o is out and l is lse
    ref_out, ref_lse = reference(p, case)
    ref.assert_out_close(out, ref_out)
    ref.assert_lse_close(lse, ref_lse)


def test_strided_query(rng):
    """q may have any strides (last dim contiguous): the view is read, not a copy."""
    case = Case(s_q=2, h_q=16, extra=True)
    p = make_problem(case, rng)
    q_bhsd = np.ascontiguousarray(p["q"].transpose(0, 2, 1, 3))  # [b, h, s_q, d]
    q_view = q_bhsd.transpose(0, 2, 1, 3)  # [b, s_q, h, d] with permuted strides
    assert not q_view.flags.c_contiguous
    out, lse = run(dict(p, q=q_view))
    ref_out, ref_lse = reference(p, case)
    ref.assert_out_close(out, ref_out)
    ref.assert_lse_close(lse, ref_lse)


def test_non_contiguous_lse_is_refused(rng):
    case = Case(s_q=2, h_q=16)
    p = make_problem(case, rng)
    lse_view = np.full((case.b, case.h_q, case.s_q), np.nan, np.float32).transpose(0, 2, 1)
    with pytest.raises(model1.Error) as e:
        run(p, lse=lse_view)
    assert e.value.argument == "lse.strides"


def test_cache_slice_and_fp8_typed_cache(rng):
    """The main cache as a float8_e4m3fn array that is a slice of a larger buffer."""
    case = CASES["basic"]
    p = make_problem(case, rng)
    stride = p["kv"].page_stride
    big = np.zeros((case.pages + 3, stride), np.uint8)
    big[2:2 + case.pages] = p["kv"].data
    fp8 = big.view(ml_dtypes.float8_e4m3fn)[2:2 + case.pages]
    out_a, lse_a = run(p)
    out_b, lse_b = run(dict(p, kv_arg=model1.KvCache(fp8, "model1_fp8", case.page_size)))
    assert np.array_equal(out_a.view(np.uint16), out_b.view(np.uint16))
    assert np.array_equal(lse_a.view(np.uint32), lse_b.view(np.uint32))


def test_bf16_cache(rng):
    """A plain bf16 cache [pages, P, d_qk] (format inferred) gives the same attention as the
    dequantized values in float64."""
    pages, page_size, b, h = 3, 16, 2, 16
    kv = ref.random_tokens(rng, pages * page_size, 512, spread=False).reshape(pages, page_size, 512)
    q = rng.standard_normal((b, 1, h, 512)).astype(BF16)
    idx = rng.integers(-2, pages * page_size + 2, size=(b, 1, 40)).astype(np.int32)
    out, lse = model1.sparse_decode(q, kv, idx)
    keys = kv.reshape(-1, 512).astype(np.float64)
    ref_out, ref_lse = ref.decode_ref(q, keys, idx)
    ref.assert_out_close(out, ref_out)
    ref.assert_lse_close(lse, ref_lse)
