"""Sparse prefill on the CPU with NumPy / ml_dtypes arrays against the float64 NumPy
reference (MODEL1.md section 4)."""

import ml_dtypes
import numpy as np
import pytest

import model1
import model1_reference as ref

BF16 = ml_dtypes.bfloat16
I32 = np.iinfo(np.int32)


def make_problem(rng, s_q, h_q, d, s_kv, topk, *, rank3=False, lengths=False, sink=False,
                 invalid=False):
    q = (rng.standard_normal((s_q, h_q, d)) * 1.5).astype(BF16)
    kv = rng.standard_normal((s_kv, d)).astype(BF16)
    idx = np.stack([rng.choice(s_kv, size=topk, replace=False) for _ in range(s_q)])
    idx = idx.astype(np.int32)
    if invalid:
        for n, v in enumerate([-1, I32.min, I32.max, s_kv, s_kv + 1]):
            idx[n % s_q, (5 * n) % topk] = v
        idx[1, 2] = idx[1, 3]  # duplicate
        idx[-1] = -1  # a query without any valid key
    # NaN in every kv row no query names: no effect allowed.
    unused = np.setdiff1d(np.arange(s_kv), idx[(idx >= 0) & (idx < s_kv)])
    kv[unused] = np.nan
    tl = None
    if lengths:
        tl = rng.integers(0, topk + 1, size=s_q).astype(np.int32)
        tl[0] = topk + 9
        tl[1] = -4
    sk = None
    if sink:
        sk = rng.uniform(-2, 5, size=h_q).astype(np.float32)
        sk[0], sk[-1] = -np.inf, np.inf
    args = dict(q=q, kv=kv[:, None, :] if rank3 else kv,
                indices=idx[:, None, :] if rank3 else idx, topk_length=tl, attn_sink=sk)
    return args, (q, kv, idx, tl, sk)


@pytest.mark.parametrize("d,h_q,rank3,lengths,sink,invalid", [
    (512, 64, False, False, False, False),
    (512, 16, True, True, True, True),
    (576, 16, False, True, True, True),
    (576, 64, True, False, True, True),
])
def test_prefill_matches_reference(rng, d, h_q, rank3, lengths, sink, invalid):
    s_q, s_kv, topk = 5, 150, 70
    args, (q, kv, idx, tl, sk) = make_problem(rng, s_q, h_q, d, s_kv, topk, rank3=rank3,
                                              lengths=lengths, sink=sink, invalid=invalid)
    scale = 0.05 if d == 576 else None
    out, max_logits, lse = model1.sparse_prefill(**args, sm_scale=scale)
    assert out.shape == (s_q, h_q, 512) and out.dtype == BF16
    assert max_logits.shape == lse.shape == (s_q, h_q)
    r_out, r_max, r_lse = ref.prefill_ref(q, kv, idx, tl, sk, scale)
    ref.assert_out_close(out, r_out)
    ref.assert_lse_close(lse, r_lse)
    # max_logits: same tolerance as lse; -inf exactly where nothing is valid.
    ref.assert_lse_close(max_logits, r_max, "max_logits")
    if invalid:
        assert not out[-1].astype(np.float32).any()
        assert np.isposinf(lse[-1]).all() and np.isneginf(max_logits[-1]).all()


def test_prefill_outputs_in_place(rng):
    args, (q, kv, idx, _, _) = make_problem(rng, 3, 16, 512, 40, 16)
    out = np.full((3, 16, 512), np.nan, BF16)
    mx = np.full((3, 16), np.nan, np.float32)
    lse = np.full((3, 16), np.nan, np.float32)
    o, m, l = model1.sparse_prefill(**args, out=out, max_logits=mx, lse=lse)
    assert o is out and m is mx and l is lse
    r_out, r_max, r_lse = ref.prefill_ref(q, kv, idx)
    ref.assert_out_close(out, r_out)
    ref.assert_lse_close(lse, r_lse)
    ref.assert_lse_close(mx, r_max, "max_logits")


def test_prefill_d_v_must_be_512(rng):
    args, _ = make_problem(rng, 2, 16, 512, 20, 8)
    with pytest.raises(model1.Error) as e:
        model1.sparse_prefill(**args, d_v=256)
    assert e.value.argument == "d_v"


def test_prefill_kernel_name(rng):
    args, _ = make_problem(rng, 2, 16, 512, 20, 8)
    assert model1.prefill_kernel_name(**args) == "cpu"
    # The same validation as sparse_prefill, and nothing is written.
    out = np.full((2, 16, 512), np.nan, BF16)
    with pytest.raises(model1.Error) as e:
        model1.prefill_kernel_name(**args, d_v=256, out=out)
    assert e.value.argument == "d_v"
    assert np.isnan(out.astype(np.float32)).all()
