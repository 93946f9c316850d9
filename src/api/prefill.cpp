// model1 src/api: validation and dispatch of sparse prefill (include/model1/prefill.h).
#include "model1/prefill.h"

#include <string>
#include <utility>

#include "backend.h"
#include "model1/error.h"
#include "validate.h"

namespace model1 {

using detail::check_contiguous;
using detail::check_data;
using detail::check_dim;
using detail::check_dim_at_least;
using detail::check_dtype;
using detail::check_last_dim_contiguous;
using detail::check_rank;
using detail::check_same_device;

namespace {

/// Every check of sparse_prefill (outputs untouched on error); returns the resolved sm_scale.
float validate_prefill(const SparsePrefillArgs& a) {
  // q: bf16 [s_q, h_q, d_qk]
  check_data(a.q, "q");
  check_dtype(a.q, "q", DType::kBF16);
  check_rank(a.q, "q", 3, "[s_q, h_q, d_qk]");
  check_dim_at_least(a.q, "q", 0, 1, "s_q");
  detail::check_num_heads(a.q.shape[1], "q");
  const int64_t s_q = a.q.shape[0], h_q = a.q.shape[1], d_qk = a.q.shape[2];
  MODEL1_CHECK(d_qk == 512 || d_qk == 576, "q.shape", "shape[2] (d_qk) 512 or 576",
               std::to_string(d_qk));
  check_last_dim_contiguous(a.q, "q");

  // kv: bf16 [s_kv, d_qk] or [s_kv, 1, d_qk]
  check_data(a.kv, "kv");
  check_dtype(a.kv, "kv", DType::kBF16);
  MODEL1_CHECK(a.kv.ndim == 2 || a.kv.ndim == 3, "kv.shape",
               "rank 2 [s_kv, d_qk] or rank 3 [s_kv, 1, d_qk]",
               "rank " + std::to_string(a.kv.ndim) + " " + detail::shape_str(a.kv));
  check_dim_at_least(a.kv, "kv", 0, 1, "s_kv");
  if (a.kv.ndim == 3) check_dim(a.kv, "kv", 1, 1, "h_kv");
  check_dim(a.kv, "kv", a.kv.ndim - 1, d_qk, "d_qk", "(= q's d_qk)");
  check_last_dim_contiguous(a.kv, "kv");

  // indices: int32 [s_q, topk] or [s_q, 1, topk]
  check_data(a.indices, "indices");
  check_dtype(a.indices, "indices", DType::kI32);
  MODEL1_CHECK(a.indices.ndim == 2 || a.indices.ndim == 3, "indices.shape",
               "rank 2 [s_q, topk] or rank 3 [s_q, 1, topk]",
               "rank " + std::to_string(a.indices.ndim) + " " + detail::shape_str(a.indices));
  check_dim(a.indices, "indices", 0, s_q, "s_q", "(= q.shape[0])");
  if (a.indices.ndim == 3) check_dim(a.indices, "indices", 1, 1, "h_kv");
  check_dim_at_least(a.indices, "indices", a.indices.ndim - 1, 1, "topk");
  check_last_dim_contiguous(a.indices, "indices");

  if (a.topk_length.defined()) {
    check_data(a.topk_length, "topk_length");
    check_dtype(a.topk_length, "topk_length", DType::kI32);
    check_rank(a.topk_length, "topk_length", 1, "[s_q]");
    check_dim(a.topk_length, "topk_length", 0, s_q, "s_q", "(= q.shape[0])");
    check_contiguous(a.topk_length, "topk_length");
  }
  if (a.attn_sink.defined()) {
    check_data(a.attn_sink, "attn_sink");
    check_dtype(a.attn_sink, "attn_sink", DType::kF32);
    check_rank(a.attn_sink, "attn_sink", 1, "[h_q]");
    check_dim(a.attn_sink, "attn_sink", 0, h_q, "h_q", "(= q.shape[1])");
    check_contiguous(a.attn_sink, "attn_sink");
  }
  const float sm_scale = detail::resolve_sm_scale(a.sm_scale, d_qk);
  MODEL1_CHECK(a.d_v == 512, "d_v", "512", std::to_string(a.d_v));

  // Outputs: out bf16 [s_q, h_q, 512], max_logits / lse f32 [s_q, h_q], all contiguous.
  check_data(a.out, "out");
  check_dtype(a.out, "out", DType::kBF16);
  check_rank(a.out, "out", 3, "[s_q, h_q, d_v]");
  check_dim(a.out, "out", 0, s_q, "s_q", "(= q.shape[0])");
  check_dim(a.out, "out", 1, h_q, "h_q", "(= q.shape[1])");
  check_dim(a.out, "out", 2, 512, "d_v");
  check_contiguous(a.out, "out");
  for (const auto& [t, name] : {std::pair<const TensorView*, const char*>{&a.max_logits,
                                                                          "max_logits"},
                                {&a.lse, "lse"}}) {
    check_data(*t, name);
    check_dtype(*t, name, DType::kF32);
    check_rank(*t, name, 2, "[s_q, h_q]");
    check_dim(*t, name, 0, s_q, "s_q", "(= q.shape[0])");
    check_dim(*t, name, 1, h_q, "h_q", "(= q.shape[1])");
    check_contiguous(*t, name);
  }

  // NOTE: the backend check comes first so that a CUDA call in a CPU-only build names the
  // missing backend rather than a device mismatch.
  detail::check_backend_available(a.q, "q");
  check_same_device(a.kv, "kv", a.q, "q");
  check_same_device(a.indices, "indices", a.q, "q");
  if (a.topk_length.defined()) check_same_device(a.topk_length, "topk_length", a.q, "q");
  if (a.attn_sink.defined()) check_same_device(a.attn_sink, "attn_sink", a.q, "q");
  check_same_device(a.out, "out", a.q, "q");
  check_same_device(a.max_logits, "max_logits", a.q, "q");
  check_same_device(a.lse, "lse", a.q, "q");

  return sm_scale;
}

}  // namespace

std::string prefill_kernel_name(const SparsePrefillArgs& a) {
  const float sm_scale = validate_prefill(a);
  if (a.q.device == Device::kCPU) return "cpu";
#ifdef MODEL1_WITH_CUDA
  return cuda::prefill_kernel_name(a, sm_scale);
#else
  (void)sm_scale;
  return "none";
#endif
}

void sparse_prefill(const SparsePrefillArgs& a, void* stream) {
  const float sm_scale = validate_prefill(a);
  if (a.q.device == Device::kCPU) {
    cpu::sparse_prefill(a, sm_scale);
    return;
  }
#ifdef MODEL1_WITH_CUDA
  cuda::sparse_prefill(a, sm_scale, stream);
#else
  (void)stream;
#endif
}

}  // namespace model1
