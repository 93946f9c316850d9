// model1 CPU backend: quantize_cache, store_tokens, dequantize_cache (MODEL1.md sections 2, 5).
// Arguments were validated by src/api.
#include <cstdint>
#include <vector>

#include "backend.h"
#include "cpu/cache_io.h"
#include "cpu/numerics.h"
#include "cpu/parallel.h"

namespace model1::cpu {
namespace {

/// Row r of a bf16 matrix with last dim contiguous.
const uint16_t* bf16_row(const TensorView& t, int64_t r) {
  return t.ptr<const uint16_t>() + r * t.strides[0];
}

// NOTE: tokens are handed out in blocks so threads do not share cache pages' bytes in a hot
// loop; any split gives the same bytes since every token is written independently.
constexpr int64_t kTokensPerTask = 256;

}  // namespace

void quantize_cache(const TensorView& src, const KvCacheView& dst) {
  const detail::CacheGeom g = detail::cache_geom(dst);
  const int64_t n = g.num_slots();
  const int64_t tasks = (n + kTokensPerTask - 1) / kTokensPerTask;
  parallel_for_rows(tasks, num_workers(tasks), [&](int, int64_t task) {
    const int64_t end = std::min(n, (task + 1) * kTokensPerTask);
    for (int64_t slot = task * kTokensPerTask; slot < end; ++slot) {
      write_token(g, slot, bf16_row(src, slot));  // src: [num_slots, d_qk]
    }
  });
}

void store_tokens(const TensorView& tokens, const TensorView& slots, const KvCacheView& dst) {
  const detail::CacheGeom g = detail::cache_geom(dst);
  const int32_t* slot = slots.ptr<const int32_t>();  // [n]
  const int64_t n = tokens.shape[0];
  // NOTE: sequential on purpose: two rows may name the same slot, and then the later row
  // must win, as it would in a serial store.
  for (int64_t r = 0; r < n; ++r) {
    if (slot[r] < 0) continue;  // padding
    write_token(g, slot[r], bf16_row(tokens, r));  // tokens: [n, d_qk]
  }
}

void dequantize_cache(const KvCacheView& src, const TensorView& dst) {
  const detail::CacheGeom g = detail::cache_geom(src);
  const int64_t n = g.num_slots();
  const int64_t tasks = (n + kTokensPerTask - 1) / kTokensPerTask;
  const int workers = num_workers(tasks);
  std::vector<std::vector<float>> scratch(workers, std::vector<float>(g.d_qk));
  parallel_for_rows(tasks, workers, [&](int worker, int64_t task) {
    float* row = scratch[worker].data();  // [d_qk]
    const int64_t end = std::min(n, (task + 1) * kTokensPerTask);
    for (int64_t slot = task * kTokensPerTask; slot < end; ++slot) {
      read_token(g, slot, row);
      if (dst.dtype == DType::kF32) {
        float* out = dst.ptr<float>() + slot * dst.strides[0];  // [num_slots, d_qk]
        std::copy(row, row + g.d_qk, out);
      } else {
        // NOTE: e4m3 * 2^k has at most 4 significant bits, so bf16 holds it exactly.
        uint16_t* out = dst.ptr<uint16_t>() + slot * dst.strides[0];
        for (int d = 0; d < g.d_qk; ++d) out[d] = float_to_bf16(row[d]);
      }
    }
  });
}

}  // namespace model1::cpu
