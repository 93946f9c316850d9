// model1 src/api: argument checks shared by every public function, and cache geometry.
#include "validate.h"

#include <cmath>
#include <string>

#include "backend.h"
#include "model1/error.h"

namespace model1::detail {
namespace {

std::string list_str(const std::array<int64_t, kMaxDims>& values, int n) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(values[i]);
  }
  return s + "]";
}

std::string dtype_str(DType dtype) { return std::string("dtype ") + dtype_name(dtype); }

}  // namespace

std::string shape_str(const TensorView& t) { return list_str(t.shape, t.ndim); }
std::string strides_str(const TensorView& t) { return list_str(t.strides, t.ndim); }
std::string device_str(const TensorView& t) {
  return std::string(device_name(t.device)) + ":" + std::to_string(t.device_id);
}

void check_data(const TensorView& t, const std::string& name) {
  MODEL1_CHECK(t.data != nullptr, name, "a tensor with a data pointer",
               t.ndim == 0 ? std::string("an absent tensor") : "a null data pointer");
}

void check_dtype(const TensorView& t, const std::string& name, DType want) {
  MODEL1_CHECK(t.dtype == want, name, dtype_str(want), dtype_str(t.dtype));
}

void check_rank(const TensorView& t, const std::string& name, int ndim, const char* layout) {
  MODEL1_CHECK(t.ndim == ndim, name + ".shape",
               "rank " + std::to_string(ndim) + " " + layout,
               "rank " + std::to_string(t.ndim) + " " + shape_str(t));
}

void check_dim(const TensorView& t, const std::string& name, int dim, int64_t want,
               const char* what, const std::string& why) {
  MODEL1_CHECK(t.shape[dim] == want, name + ".shape",
               "shape[" + std::to_string(dim) + "] (" + what + ") " + std::to_string(want) +
                   (why.empty() ? "" : " " + why),
               std::to_string(t.shape[dim]) + " in shape " + shape_str(t));
}

void check_dim_at_least(const TensorView& t, const std::string& name, int dim, int64_t min,
                        const char* what) {
  MODEL1_CHECK(t.shape[dim] >= min, name + ".shape",
               "shape[" + std::to_string(dim) + "] (" + what + ") >= " + std::to_string(min),
               std::to_string(t.shape[dim]) + " in shape " + shape_str(t));
}

void check_last_dim_contiguous(const TensorView& t, const std::string& name) {
  if (t.ndim == 0) return;
  MODEL1_CHECK(t.strides[t.ndim - 1] == 1 || t.shape[t.ndim - 1] <= 1, name + ".strides",
               "last dim contiguous (stride 1)", "strides " + strides_str(t));
}

void check_contiguous(const TensorView& t, const std::string& name) {
  MODEL1_CHECK(t.is_contiguous(), name + ".strides", "a contiguous (row-major) tensor",
               "strides " + strides_str(t) + " for shape " + shape_str(t));
}

void check_same_device(const TensorView& t, const std::string& name, const TensorView& anchor,
                       const std::string& anchor_name) {
  MODEL1_CHECK(t.device == anchor.device && t.device_id == anchor.device_id, name + ".device",
               device_str(anchor) + " (the device of " + anchor_name + ")", device_str(t));
}

void check_backend_available(const TensorView& t, const std::string& name) {
#ifdef MODEL1_WITH_CUDA
  (void)t;
  (void)name;
#else
  MODEL1_CHECK(t.device == Device::kCPU, name + ".device",
               "a CPU tensor (this build has no CUDA backend)", device_str(t));
#endif
}

float resolve_sm_scale(float sm_scale, int64_t d_qk) {
  if (std::isnan(sm_scale)) return static_cast<float>(1.0 / std::sqrt(static_cast<double>(d_qk)));
  MODEL1_CHECK(std::isfinite(sm_scale) && sm_scale > 0.0f, "sm_scale",
               "a finite value > 0 (or NaN for 1/sqrt(d_qk))", std::to_string(sm_scale));
  return sm_scale;
}

void check_num_heads(int64_t h_q, const std::string& name) {
  MODEL1_CHECK(h_q == 8 || h_q == 16 || h_q == 32 || h_q == 64 || h_q == 128, name + ".shape",
               "h_q in {8, 16, 32, 64, 128}", std::to_string(h_q));
}

int check_cache(const KvCacheView& cache, const std::string& name) {
  const TensorView& t = cache.data;
  const std::string data_name = name + ".data";
  check_data(t, data_name);
  MODEL1_CHECK(cache.format == KvFormat::kModel1Fp8 || cache.format == KvFormat::kV32Fp8 ||
                   cache.format == KvFormat::kBf16,
               name + ".format", "model1_fp8, v32_fp8 or bf16",
               "format code " + std::to_string(static_cast<int>(cache.format)));
  MODEL1_CHECK(cache.page_size >= 1, name + ".page_size", "page_size (P) >= 1",
               std::to_string(cache.page_size));
  const int64_t P = cache.page_size;

  int d_qk = 0;
  int64_t element_bytes = 1;
  if (cache.format == KvFormat::kBf16) {
    // bf16 [num_pages, P, d_qk] or [num_pages, P, 1, d_qk]
    check_dtype(t, data_name, DType::kBF16);
    MODEL1_CHECK(t.ndim == 3 || t.ndim == 4, data_name + ".shape",
                 "rank 3 [num_pages, P, d_qk] or rank 4 [num_pages, P, 1, d_qk] for format bf16",
                 "rank " + std::to_string(t.ndim) + " " + shape_str(t));
    const int last = t.ndim - 1;
    MODEL1_CHECK(t.shape[last] == 512 || t.shape[last] == 576, data_name + ".shape",
                 "shape[" + std::to_string(last) + "] (d_qk) 512 or 576",
                 std::to_string(t.shape[last]) + " in shape " + shape_str(t));
    d_qk = static_cast<int>(t.shape[last]);
    if (t.ndim == 4) check_dim(t, data_name, 2, 1, "h_kv");
    MODEL1_CHECK(t.strides[last] == 1, data_name + ".strides", "stride[-1] 1 (rows contiguous)",
                 "strides " + strides_str(t));
    MODEL1_CHECK(t.strides[1] == d_qk || P == 1, data_name + ".strides",
                 "stride[1] " + std::to_string(d_qk) + " (tokens of a page packed)",
                 "strides " + strides_str(t));
    element_bytes = 2;
  } else {
    const int64_t bpt = kv_bytes_per_token(cache.format);
    MODEL1_CHECK(t.dtype == DType::kU8 || t.dtype == DType::kFP8E4M3, data_name,
                 "dtype uint8, int8 or fp8_e4m3 (cache bytes)", "dtype " +
                     std::string(dtype_name(t.dtype)));
    MODEL1_CHECK(t.ndim == 2 || t.ndim == 4, data_name + ".shape",
                 "rank 2 [num_pages, page_stride] or rank 4 [num_pages, P, 1, " +
                     std::to_string(bpt) + "]",
                 "rank " + std::to_string(t.ndim) + " " + shape_str(t));
    d_qk = kv_format_d_qk(cache.format);
    if (t.ndim == 2) {
      MODEL1_CHECK(t.strides[1] == 1 || t.shape[1] <= 1, data_name + ".strides",
                   "stride[1] 1 (bytes of a page contiguous)", "strides " + strides_str(t));
      MODEL1_CHECK(t.shape[1] >= bpt * P, data_name + ".shape",
                   "shape[1] (page bytes) >= " + std::to_string(bpt * P) + " for P = " +
                       std::to_string(P),
                   std::to_string(t.shape[1]) + " in shape " + shape_str(t));
    } else {
      check_dim(t, data_name, 1, P, "P", "(= page_size)");
      check_dim(t, data_name, 2, 1, "h_kv");
      check_dim(t, data_name, 3, bpt, "bytes per token",
                std::string("for format ") + kv_format_name(cache.format));
      MODEL1_CHECK(t.strides[3] == 1, data_name + ".strides", "stride[3] 1",
                   "strides " + strides_str(t));
      MODEL1_CHECK(t.strides[1] == bpt || P == 1, data_name + ".strides",
                   "stride[1] " + std::to_string(bpt) + " (bytes per token)",
                   "strides " + strides_str(t));
    }
  }
  check_dim_at_least(t, data_name, 0, 1, "num_pages");
  if (t.ndim >= 3) check_dim(t, data_name, 1, P, "P", "(= page_size)");
  const int64_t min_stride = kv_min_page_stride(cache.format, P, d_qk);
  const int64_t stride_bytes = t.strides[0] * element_bytes;
  // NOTE: with one page the page stride is never used (PyTorch may report anything for it).
  MODEL1_CHECK(stride_bytes >= min_stride || t.shape[0] == 1, data_name + ".strides",
               "page stride (stride[0]) >= " + std::to_string(min_stride) + " bytes for P = " +
                   std::to_string(P) + " in format " + kv_format_name(cache.format),
               std::to_string(stride_bytes) + " bytes (strides " + strides_str(t) + ")");
  return d_qk;
}

CacheGeom cache_geom(const KvCacheView& cache) {
  CacheGeom g;
  const TensorView& t = cache.data;
  g.base = static_cast<const uint8_t*>(t.data);
  g.page_size = cache.page_size;
  g.num_pages = t.ndim > 0 ? t.shape[0] : 0;
  g.format = cache.format;
  if (cache.format == KvFormat::kBf16) {
    g.d_qk = static_cast<int>(t.shape[t.ndim - 1]);
    g.page_stride = t.strides[0] * 2;
    g.bf16_row_stride = int64_t{2} * g.d_qk;
  } else {
    g.d_qk = kv_format_d_qk(cache.format);
    g.page_stride = t.strides[0];
  }
  // NOTE: a single page's stride is never used to address anything; give it the minimum so
  // kernels can rely on page_stride >= kv_min_page_stride.
  if (g.num_pages == 1) {
    const int64_t min_stride = kv_min_page_stride(cache.format, cache.page_size, g.d_qk);
    if (g.page_stride < min_stride) g.page_stride = min_stride;
  }
  return g;
}

}  // namespace model1::detail
