// model1 src/api: validation and dispatch of the cache operations (include/model1/kv_cache.h).
#include "model1/kv_cache.h"

#include <string>

#include "backend.h"
#include "model1/error.h"
#include "validate.h"

namespace model1 {

using detail::check_backend_available;
using detail::check_cache;
using detail::check_data;
using detail::check_dim;
using detail::check_dtype;
using detail::check_last_dim_contiguous;
using detail::check_rank;
using detail::check_same_device;

namespace {

/// `src`/`dst` token matrix of a whole cache: [num_slots, d_qk], last dim contiguous.
void check_token_matrix(const TensorView& t, const std::string& name, int64_t rows, int d_qk,
                        const std::string& cache_name) {
  check_data(t, name);
  check_rank(t, name, 2, "[num_pages * P, d_qk]");
  check_dim(t, name, 0, rows, "num_pages * P", "(the slots of " + cache_name + ")");
  check_dim(t, name, 1, d_qk, "d_qk", "(the head dim of " + cache_name + ")");
  check_last_dim_contiguous(t, name);
}

}  // namespace

void quantize_cache(const TensorView& src, const KvCacheView& dst, void* stream) {
  const int d_qk = check_cache(dst, "dst");
  check_dtype(src, "src", DType::kBF16);
  check_token_matrix(src, "src", dst.num_slots(), d_qk, "dst");
  check_same_device(dst.data, "dst", src, "src");
  check_backend_available(src, "src");

  if (src.device == Device::kCPU) {
    cpu::quantize_cache(src, dst);
    return;
  }
#ifdef MODEL1_WITH_CUDA
  cuda::quantize_cache(src, dst, stream);
#else
  (void)stream;
#endif
}

void store_tokens(const TensorView& tokens, const TensorView& slots, const KvCacheView& dst,
                  void* stream) {
  const int d_qk = check_cache(dst, "dst");
  check_data(tokens, "tokens");
  check_dtype(tokens, "tokens", DType::kBF16);
  check_rank(tokens, "tokens", 2, "[n, d_qk]");
  check_dim(tokens, "tokens", 1, d_qk, "d_qk", "(the head dim of dst)");
  check_last_dim_contiguous(tokens, "tokens");
  const int64_t n = tokens.shape[0];
  check_data(slots, "slots");
  check_dtype(slots, "slots", DType::kI32);
  check_rank(slots, "slots", 1, "[n]");
  check_dim(slots, "slots", 0, n, "n", "(the rows of tokens)");
  detail::check_contiguous(slots, "slots");
  check_same_device(slots, "slots", tokens, "tokens");
  check_same_device(dst.data, "dst", tokens, "tokens");
  check_backend_available(tokens, "tokens");

  if (tokens.device == Device::kCPU) {
    // NOTE: every slot is checked before the first byte is written, so a bad slot leaves
    // the cache untouched.
    const int32_t* slot = slots.ptr<const int32_t>();
    const int64_t num_slots = dst.num_slots();
    for (int64_t r = 0; r < n; ++r) {
      MODEL1_CHECK(slot[r] < num_slots, "slots",
                   "slots < num_pages * P = " + std::to_string(num_slots) + " (or < 0 to skip)",
                   "slot " + std::to_string(slot[r]) + " at row " + std::to_string(r));
    }
    cpu::store_tokens(tokens, slots, dst);
    return;
  }
#ifdef MODEL1_WITH_CUDA
  cuda::store_tokens(tokens, slots, dst, stream);
#else
  (void)stream;
#endif
}

void dequantize_cache(const KvCacheView& src, const TensorView& dst, void* stream) {
  const int d_qk = check_cache(src, "src");
  check_data(dst, "dst");
  MODEL1_CHECK(dst.dtype == DType::kBF16 || dst.dtype == DType::kF32, "dst", "dtype bf16 or f32",
               std::string("dtype ") + dtype_name(dst.dtype));
  check_token_matrix(dst, "dst", src.num_slots(), d_qk, "src");
  check_same_device(dst, "dst", src.data, "src");
  check_backend_available(dst, "dst");

  if (dst.device == Device::kCPU) {
    cpu::dequantize_cache(src, dst);
    return;
  }
#ifdef MODEL1_WITH_CUDA
  cuda::dequantize_cache(src, dst, stream);
#else
  (void)stream;
#endif
}

}  // namespace model1
