"""model1.flash_mla: FlashMLA's PyTorch interface, on CPU tensors (reference backend) and, on
a machine with a GPU and a CUDA build, on CUDA tensors; checked against the float64 NumPy
reference on FlashMLA-style inputs (values N(0, 0.1^2) clipped to [-1, 1]; paged caches behind a shuffled block table, -1 padding,
FP8 cache tensors as 4-D views of a larger buffer)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="model1.flash_mla needs PyTorch, which is not installed here")

import model1  # noqa: E402
import model1.flash_mla as fm  # noqa: E402
import model1_reference as ref  # noqa: E402


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("CUDA variant: PyTorch sees no CUDA GPU on this machine")
        if not model1.cuda_compiled():
            pytest.skip("CUDA variant: model1 was built without the CUDA backend "
                        "(configure with nvcc present / -DMODEL1_CUDA=ON)")
    return torch.device(request.param)


BYTES_PER_TOKEN = {"model1_fp8": 584, "v32_fp8": 656}


class Cache:
    """An FP8 cache as FlashMLA users hold it: a (pages, P, 1, bytes_per_token) view into a
    larger byte buffer, filled with model1.quantize_cache, and its float64 dequantization."""

    def __init__(self, fmt, pages, page_size, device, rng, dtype=torch.float8_e4m3fn,
                 pad_pages=2):
        d, bpt = ref.FORMAT_D[fmt], BYTES_PER_TOKEN[fmt]
        stride = model1.kv_min_page_stride(fmt, page_size)
        self.offset = pad_pages * stride
        self.stride, self.page_size, self.fmt = stride, page_size, fmt
        self.buf = torch.full(((pages + 2 * pad_pages) * stride,), 0xEE, dtype=torch.uint8,
                              device=device)
        view = self.buf.as_strided((pages, page_size, 1, bpt), (stride, bpt, bpt, 1),
                                   self.offset)
        tokens_np = ref.flashmla_values(rng, (pages * page_size, d)).astype(ref.BF16)
        tokens = torch.from_numpy(tokens_np.view(np.int16)).view(torch.bfloat16).to(device)
        model1.quantize_cache(tokens, view)
        self.k_cache = view if dtype == torch.uint8 else view.view(dtype)
        host = self.buf.cpu().numpy()
        data = host[self.offset:self.offset + pages * stride].reshape(pages, stride)
        self.keys = ref.dequantize(fmt, data, page_size)
        # The buffer outside the cache is untouched.
        assert (host[:self.offset] == 0xEE).all()
        assert (host[self.offset + pages * stride:] == 0xEE).all()

    @property
    def num_slots(self):
        return self.keys.shape[0]


def bf16_tensor(x: np.ndarray, device):
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(torch.bfloat16).to(device)


def i32(x, device):
    return torch.from_numpy(np.ascontiguousarray(x, np.int32)).to(device)


def make_decode(device, rng, *, fmt="model1_fp8", b=2, s_q=2, h_q=64, topk=128, page_size=64,
                pages=8, extra=False, extra_topk=96, extra_page_size=2, extra_pages=48,
                lengths=False, sink=False, cache_dtype=torch.float8_e4m3fn,
                strided_q=False):
    d = ref.FORMAT_D[fmt]
    cache = Cache(fmt, pages, page_size, device, rng, cache_dtype)
    lens = rng.integers(topk // 2, pages * page_size + 1, size=b)
    idx = ref.flashmla_indices(rng, b, s_q, topk, page_size, pages, lens)
    q_np = ref.flashmla_values(rng, (b, s_q, h_q, d))
    if strided_q:
        q = bf16_tensor(q_np.transpose(0, 2, 1, 3), device).transpose(1, 2)  # non-contiguous
    else:
        q = bf16_tensor(q_np, device)
    p = dict(q=q, k_cache=cache.k_cache, indices=i32(idx, device), cache=cache, idx_np=idx,
             extra=None, extra_idx_np=None, topk_length=None, extra_topk_length=None,
             attn_sink=None)
    if extra:
        ex = Cache(fmt, extra_pages, extra_page_size, device, rng, cache_dtype)
        ex_idx = rng.integers(-2, ex.num_slots + 2, size=(b, s_q, extra_topk)).astype(np.int32)
        p.update(extra=ex, extra_idx_np=ex_idx)
    if lengths:
        tl = rng.integers(0, topk + 1, size=b).astype(np.int32)
        tl[0] = topk
        p["topk_length"] = tl
        if extra:
            p["extra_topk_length"] = rng.integers(0, extra_topk + 1, size=b).astype(np.int32)
    if sink:
        s = rng.uniform(-2, 5, size=h_q).astype(np.float32)
        s[-1] = -np.inf
        p["attn_sink"] = s
    return p


def call(p, meta, device, **kw):
    ex = p["extra"]
    return fm.flash_mla_with_kvcache(
        p["q"], p["k_cache"], None, None, 512, meta,
        is_fp8_kvcache=True, indices=p["indices"],
        attn_sink=None if p["attn_sink"] is None else torch.from_numpy(p["attn_sink"]).to(device),
        extra_k_cache=None if ex is None else ex.k_cache,
        extra_indices_in_kvcache=None if ex is None else i32(p["extra_idx_np"], device),
        topk_length=None if p["topk_length"] is None else i32(p["topk_length"], device),
        extra_topk_length=(None if p["extra_topk_length"] is None
                           else i32(p["extra_topk_length"], device)),
        **kw)


def check(p, out, lse, softmax_scale=None):
    q = p["q"].float().cpu().numpy()
    b, s_q, h_q, _ = q.shape
    assert out.shape == (b, s_q, h_q, 512) and out.dtype == torch.bfloat16
    assert lse.shape == (b, h_q, s_q) and lse.dtype == torch.float32
    assert lse.device == out.device == p["q"].device
    # lse is a transposed view of a contiguous (b, s_q, h_q) buffer, as FlashMLA returns it.
    assert lse.transpose(1, 2).is_contiguous()
    ex = p["extra"]
    r_out, r_lse = ref.decode_ref(q, p["cache"].keys, p["idx_np"], p["topk_length"],
                                  None if ex is None else ex.keys, p["extra_idx_np"],
                                  p["extra_topk_length"], p["attn_sink"], softmax_scale)
    ref.assert_out_close(out.float().cpu().numpy(), r_out)
    ref.assert_lse_close(lse.transpose(1, 2).cpu().numpy(), r_lse)


DECODE_CASES = {
    "h64_extra_lengths_sink": dict(h_q=64, extra=True, lengths=True, sink=True),
    "h128_s1": dict(h_q=128, s_q=1, b=3),
    "h8_topk100": dict(h_q=8, topk=100, extra=True, extra_topk=37, lengths=True),
    "h16_strided_q_int8": dict(h_q=16, topk=64, page_size=61, pages=6,
                               cache_dtype=torch.int8, strided_q=True, sink=True),
    "h32_uint8_p1_extra": dict(h_q=32, topk=72, extra=True, extra_page_size=1,
                               extra_pages=90, cache_dtype=torch.uint8),
    "v32_h64": dict(fmt="v32_fp8", h_q=64, topk=128, extra=True, lengths=True),
}


@pytest.mark.parametrize("name", list(DECODE_CASES))
def test_flash_mla_with_kvcache(device, rng, name):
    p = make_decode(device, rng, **DECODE_CASES[name])
    meta, none = fm.get_mla_metadata()
    assert none is None and not meta.have_initialized
    out, lse = call(p, meta, device)
    assert meta.have_initialized and isinstance(meta.plan, model1.DecodePlan)
    check(p, out, lse)


def test_split_size_follows_the_batch(device, rng):
    """Like FlashMLA's scheduler, the plan's split size follows the batch shape and the GPU
    (model1.LATENCY_SPLIT_KEYS); the CPU backend has no splits (the default)."""
    p = make_decode(device, rng, h_q=128, topk=256, pages=16, extra=True, extra_topk=200)
    meta, _ = fm.get_mla_metadata()
    out, lse = call(p, meta, device)
    check(p, out, lse)
    if device.type == "cuda":
        b, s_q, h_q = (int(x) for x in p["q"].shape[:3])
        keys = p["indices"].shape[-1] + p["extra_idx_np"].shape[-1]
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        assert meta.plan.split_keys == model1.latency_split_keys(b, s_q, h_q, keys, sms)
    else:
        assert meta.plan.split_keys == model1.DEFAULT_SPLIT_KEYS


def test_softmax_scale(device, rng):
    p = make_decode(device, rng, h_q=16, topk=64)
    out, lse = call(p, fm.get_mla_metadata()[0], device, softmax_scale=0.3)
    check(p, out, lse, softmax_scale=0.3)
    out2, lse2 = call(p, fm.get_mla_metadata()[0], device)
    check(p, out2, lse2, softmax_scale=1 / math.sqrt(512))


def test_metadata_reused_across_layers(device, rng):
    meta, _ = fm.get_mla_metadata(None, 64, 1)  # old-style arguments are accepted and ignored
    first_plan = None
    for layer in range(3):
        p = make_decode(device, np.random.default_rng(100 + layer), h_q=64, extra=True,
                        lengths=True, sink=True)
        # Lengths must stay the same across layers; everything else is fresh.
        p["topk_length"] = np.array([128, 77], np.int32)
        p["extra_topk_length"] = np.array([5, 96], np.int32)
        out, lse = call(p, meta, device)
        check(p, out, lse)
        first_plan = first_plan or meta.plan
        assert meta.plan is first_plan


def test_metadata_shape_mismatch_raises(device, rng):
    meta, _ = fm.get_mla_metadata()
    call(make_decode(device, rng, h_q=16, topk=64), meta, device)
    for change in (dict(b=3), dict(topk=72), dict(h_q=32), dict(s_q=1), dict(page_size=32,
                                                                             pages=16)):
        kw = dict(h_q=16, topk=64)
        kw.update(change)
        with pytest.raises(model1.Error) as e:
            call(make_decode(device, rng, **kw), meta, device)
        assert e.value.argument == "tile_scheduler_metadata", change
    with pytest.raises(model1.Error):
        call(make_decode(device, rng, h_q=16, topk=64, extra=True), meta, device)


def test_metadata_length_values_mismatch(device, rng, monkeypatch):
    p = make_decode(device, rng, h_q=16, topk=64, lengths=True)
    meta, _ = fm.get_mla_metadata()
    call(p, meta, device)
    p["topk_length"] = p["topk_length"].copy()
    p["topk_length"][1] = (p["topk_length"][1] + 7) % 65
    with pytest.raises(model1.Error) as e:
        call(p, meta, device)
    assert e.value.argument == "tile_scheduler_metadata" and "topk_length" in str(e.value)
    # model1's plan does not depend on the values: with the check off, results stay exact.
    monkeypatch.setattr(fm, "check_length_values", False)
    out, lse = call(p, meta, device)
    check(p, out, lse)


def test_dense_path_is_refused(device, rng):
    p = make_decode(device, rng, h_q=16, topk=64)
    meta, _ = fm.get_mla_metadata()
    with pytest.raises(model1.Error) as e:
        fm.flash_mla_with_kvcache(p["q"], p["k_cache"], i32(np.zeros((2, 1)), device),
                                  i32(np.array([5, 5]), device), 512, meta, causal=True)
    assert e.value.argument == "indices" and "dense" in str(e.value)
    assert not meta.have_initialized


def test_flag_and_argument_errors(device, rng):
    p = make_decode(device, rng, h_q=16, topk=64)

    def err(**kw):
        args = dict(q=p["q"], k_cache=p["k_cache"], block_table=None, cache_seqlens=None,
                    head_dim_v=512, tile_scheduler_metadata=fm.get_mla_metadata()[0],
                    is_fp8_kvcache=True, indices=p["indices"])
        args.update(kw)
        with pytest.raises(model1.Error) as e:
            fm.flash_mla_with_kvcache(**args)
        return e.value.argument

    assert err(causal=True) == "causal"
    assert err(is_fp8_kvcache=False) == "is_fp8_kvcache"
    assert err(head_dim_v=576) == "head_dim_v"
    assert err(num_splits=torch.zeros(3)) == "num_splits"
    assert err(tile_scheduler_metadata=object()) == "tile_scheduler_metadata"
    assert err(k_cache=p["k_cache"].view(torch.uint8).view(torch.bfloat16)[..., :292]) == \
        "k_cache"
    assert err(indices=p["indices"].long()) == "indices"
    assert err(softmax_scale=-1.0) == "softmax_scale"
    ex = Cache("v32_fp8", 4, 2, device, rng)  # other format than the main cache
    assert err(extra_k_cache=ex.k_cache,
               extra_indices_in_kvcache=p["indices"]).startswith("extra_k_cache")
    assert err(extra_k_cache=p["k_cache"]) == "extra_indices_in_kvcache"


def test_requires_grad_query(device, rng):
    p = make_decode(device, rng, h_q=16, topk=64)
    p["q"] = p["q"].clone().requires_grad_()
    out, lse = call(p, fm.get_mla_metadata()[0], device)
    check(dict(p, q=p["q"].detach()), out, lse)


def make_prefill(device, rng, d, h_q, s_q=6, s_kv=200, topk=80, lengths=True, sink=True):
    q = ref.flashmla_values(rng, (s_q, h_q, d))
    kv = ref.flashmla_values(rng, (s_kv, d)).astype(ref.BF16)
    idx = np.stack([rng.choice(s_kv, topk, replace=False) for _ in range(s_q)]).astype(np.int32)
    idx[0, :5] = [-1, s_kv, s_kv + 3, np.iinfo(np.int32).min, np.iinfo(np.int32).max]
    idx[-1] = -1
    tl = rng.integers(0, topk + 1, size=s_q).astype(np.int32) if lengths else None
    sk = rng.uniform(-2, 5, size=h_q).astype(np.float32) if sink else None
    return q, kv, idx, tl, sk


@pytest.mark.parametrize("d,h_q", [(512, 64), (512, 16), (576, 128), (576, 32)])
def test_flash_mla_sparse_fwd(device, rng, d, h_q):
    q, kv, idx, tl, sk = make_prefill(device, rng, d, h_q)
    scale = 1 / math.sqrt(d) * 1.3
    kv_t = bf16_tensor(kv.astype(np.float32), device)[:, None, :]  # (s_kv, 1, d)
    out, max_logits, lse = fm.flash_mla_sparse_fwd(
        bf16_tensor(q, device), kv_t, i32(idx, device)[:, None, :], scale, 512,
        torch.from_numpy(sk).to(device), i32(tl, device))
    s_q = q.shape[0]
    assert out.shape == (s_q, h_q, 512) and out.dtype == torch.bfloat16
    assert max_logits.shape == lse.shape == (s_q, h_q)
    assert out.device == lse.device == max_logits.device == kv_t.device
    q_bf = q.astype(ref.BF16)
    r_out, r_max, r_lse = ref.prefill_ref(q_bf, kv, idx, tl, sk, scale)
    ref.assert_out_close(out.float().cpu().numpy(), r_out)
    ref.assert_lse_close(lse.cpu().numpy(), r_lse)
    ref.assert_lse_close(max_logits.cpu().numpy(), r_max, "max_logits")
    assert not out[-1].float().any() and torch.isposinf(lse[-1]).all()


def test_cuda_current_stream_and_determinism(rng):
    if not torch.cuda.is_available():
        pytest.skip("CUDA variant: PyTorch sees no CUDA GPU on this machine")
    if not model1.cuda_compiled():
        pytest.skip("CUDA variant: model1 was built without the CUDA backend")
    device = torch.device("cuda")
    p = make_decode(device, rng, h_q=64, extra=True, lengths=True, sink=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        meta, _ = fm.get_mla_metadata()
        out1, lse1 = call(p, meta, device)
        out2, lse2 = call(p, meta, device)
    side.synchronize()
    check(p, out1, lse1)
    assert torch.equal(out1.view(torch.int16), out2.view(torch.int16))
    assert torch.equal(lse1.contiguous().view(torch.int32), lse2.contiguous().view(torch.int32))


def test_model1_api_with_torch_tensors(device, rng):
    """The plain model1 API takes torch tensors too: outputs are torch tensors on the inputs'
    device, passed outputs are written in place, the cache's 4-D view shares its storage."""
    pages, page_size = 4, 16
    tokens_np = ref.flashmla_values(rng, (pages * page_size, 512)).astype(ref.BF16)
    tokens = torch.from_numpy(tokens_np.view(np.int16)).view(torch.bfloat16).to(device)
    cache = model1.quantize_cache(tokens, page_size=page_size)
    assert isinstance(cache.data, torch.Tensor) and cache.data.device == tokens.device
    view = cache.flashmla_view()
    assert view.shape == (pages, page_size, 1, 584) and view.data_ptr() == cache.data.data_ptr()
    keys = ref.dequantize("model1_fp8", cache.data.cpu().numpy(), page_size)
    back = model1.dequantize_cache(view, dtype="f32")
    assert isinstance(back, torch.Tensor) and back.device == tokens.device
    assert np.array_equal(back.cpu().numpy().astype(np.float64), keys)

    q_np = ref.flashmla_values(rng, (2, 1, 16, 512))
    idx = rng.integers(-1, pages * page_size, size=(2, 1, 24)).astype(np.int32)
    out = torch.full((2, 1, 16, 512), float("nan"), dtype=torch.bfloat16, device=device)
    o, lse = model1.sparse_decode(bf16_tensor(q_np, device), view, i32(idx, device), out=out)
    assert o is out and isinstance(lse, torch.Tensor) and lse.device == out.device
    r_out, r_lse = ref.decode_ref(bf16_tensor(q_np, "cpu").float().numpy(), keys, idx)
    ref.assert_out_close(out.float().cpu().numpy(), r_out)
    ref.assert_lse_close(lse.cpu().numpy(), r_lse)
