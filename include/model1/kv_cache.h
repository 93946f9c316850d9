// model1: paged KV caches and the operations that write and read them (MODEL1.md sections 2, 5).
#pragma once

#include <cstdint>

#include "model1/kv_format.h"
#include "model1/tensor.h"

namespace model1 {

/// A paged cache. `data` is one of:
///  - rank 2 `[num_pages, page_stride]` of uint8 / fp8 bytes, stride(1) == 1 and
///    stride(0) == page stride in bytes (>= kv_min_page_stride) — the native view; or
///  - rank 4 `[num_pages, P, h_kv = 1, bytes_per_token]` uint8 / fp8 (FlashMLA's view):
///    stride(3) == 1, stride(1) == bytes_per_token, stride(0) == page stride in bytes;
///  - for KvFormat::kBf16: bf16 `[num_pages, P, d_qk]` (stride(2) == 1, stride(1) == d_qk) or
///    rank 4 `[num_pages, P, 1, d_qk]`.
/// `page_size` (P) must match shape[1] for the rank-3/4 views.
struct KvCacheView {
  TensorView data;
  KvFormat format = KvFormat::kModel1Fp8;
  int64_t page_size = 0;  ///< P, tokens per page

  int64_t num_pages() const { return data.ndim > 0 ? data.shape[0] : 0; }
  int64_t num_slots() const { return num_pages() * page_size; }
};

/// Fills a whole cache from bf16 tokens: token `slot` of `src` goes to page slot / P, offset
/// slot % P. `src`: bf16 `[num_pages * P, d_qk]` (any row stride, last dim contiguous).
/// Every page byte that belongs to a token row is written (MODEL1 scale pad byte = 0); page
/// padding bytes past 584 P are left as they are. Same device for both; `stream` is a
/// cudaStream_t for CUDA tensors (nullptr = default stream) and ignored on the CPU.
void quantize_cache(const TensorView& src, const KvCacheView& dst, void* stream = nullptr);

/// Stores `n` new tokens: row r of `tokens` (bf16 `[n, d_qk]`) goes to slot `slots[r]`
/// (int32 `[n]`). Slots < 0 are skipped (padding); a slot >= num_pages * P is an error
/// (checked on the CPU; on CUDA such rows are skipped and nothing is written for them).
void store_tokens(const TensorView& tokens, const TensorView& slots, const KvCacheView& dst,
                  void* stream = nullptr);

/// Reads every token back: `dst` bf16 or f32 `[num_pages * P, d_qk]` (last dim contiguous).
/// The result is exactly e4m3 * scale (exact in bf16 and f32) and bf16 RoPE dims as stored.
void dequantize_cache(const KvCacheView& src, const TensorView& dst, void* stream = nullptr);

}  // namespace model1
