"""Build information, format helpers, package layout."""

import os
import re
import subprocess
import sys

import pytest

import model1

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_version_matches_cmake_project():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        want = re.search(r"project\(model1 VERSION ([0-9.]+)", f.read()).group(1)
    assert model1.version() == want
    assert model1.__version__ == want


def test_build_info_types():
    assert isinstance(model1.cuda_compiled(), bool)
    archs = model1.cuda_archs()
    assert isinstance(archs, list)
    assert all(a.startswith(("sm_", "compute_")) for a in archs), archs
    if not model1.cuda_compiled():
        assert archs == [] and model1.gpus() == []
    for g in model1.gpus():
        assert set(g) >= {"device_id", "name", "sm", "num_sms", "total_memory"}
        assert g["sm"].startswith("sm_") and g["num_sms"] > 0 and g["total_memory"] > 0


@pytest.mark.parametrize("page_size", [1, 2, 61, 64, 256, 576])
def test_format_sizes(page_size):
    assert model1.kv_bytes_per_token("model1_fp8") == 584
    assert model1.kv_bytes_per_token("v32_fp8") == 656
    assert model1.kv_bytes_per_token("bf16", 576) == 1152
    want = -(-584 * page_size // 576) * 576
    assert model1.kv_min_page_stride("model1_fp8", page_size) == want
    assert want % 576 == 0 and want >= 584 * page_size
    assert model1.kv_min_page_stride("v32_fp8", page_size) == 656 * page_size


def test_unknown_format_is_an_error():
    with pytest.raises(model1.Error) as e:
        model1.kv_bytes_per_token("fp4")
    assert e.value.argument == "format" and "fp4" in e.value.actual


def test_import_does_not_need_torch():
    code = "import sys, model1; assert 'torch' not in sys.modules, 'model1 imported torch'"
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_extension_lives_inside_the_package():
    assert model1._C.__name__ == "model1._C"
    assert os.path.dirname(model1._C.__file__) == os.path.dirname(model1.__file__)


def test_docstrings_everywhere():
    import model1._api as api

    for name in model1.__all__:
        obj = getattr(model1, name)
        if callable(obj):
            assert obj.__doc__ and len(obj.__doc__) > 40, name
    for name in ("quantize_cache", "store_tokens", "dequantize_cache", "plan_decode",
                 "sparse_decode", "sparse_prefill", "cache_info"):
        doc = getattr(model1._C, name).__doc__
        assert doc and "[" in doc, name  # shapes are documented
    assert "[b, s_q, h_q, d_qk]" in api.sparse_decode.__doc__
