// model1 CPU backend: sparse prefill (MODEL1.md section 4). Arguments were validated by src/api.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend.h"
#include "cpu/attention.h"
#include "cpu/numerics.h"
#include "cpu/parallel.h"

namespace model1::cpu {

void sparse_prefill(const SparsePrefillArgs& a, float sm_scale) {
  const int64_t s_q = a.q.shape[0], h_q = a.q.shape[1];
  const int d_qk = static_cast<int>(a.q.shape[2]);
  const int64_t s_kv = a.kv.shape[0];
  const int64_t kv_row_stride = a.kv.strides[0];  // [s_kv, (1,) d_qk]
  const int64_t topk = a.indices.shape[a.indices.ndim - 1];  // [s_q, (1,) topk]
  const int64_t idx_row_stride = a.indices.strides[0];
  const int32_t* lengths = a.topk_length.defined() ? a.topk_length.ptr<const int32_t>() : nullptr;
  const float* sink = a.attn_sink.defined() ? a.attn_sink.ptr<const float>() : nullptr;

  const int workers = num_workers(s_q);
  std::vector<AttentionScratch> scratch;
  scratch.reserve(workers);
  for (int w = 0; w < workers; ++w) scratch.emplace_back(topk, h_q, d_qk);

  parallel_for_rows(s_q, workers, [&](int worker, int64_t i) {
    AttentionScratch& s = scratch[worker];
    const uint16_t* q = a.q.ptr<const uint16_t>() + i * a.q.strides[0];  // [h_q, d_qk]
    for (int64_t h = 0; h < h_q; ++h) {
      const uint16_t* qh = q + h * a.q.strides[1];
      float* dst = s.q.data() + h * d_qk;
      for (int d = 0; d < d_qk; ++d) dst[d] = bf16_to_float(qh[d]);
    }

    // NOTE: a length above topk means topk, a negative length means 0; indices outside
    // [0, s_kv) are skipped without being read through.
    const int64_t len = lengths ? std::clamp<int64_t>(lengths[i], 0, topk) : topk;
    const int32_t* idx = a.indices.ptr<const int32_t>() + i * idx_row_stride;
    int64_t n = 0;
    for (int64_t k = 0; k < len; ++k) {
      const int64_t t = idx[k];
      if (t < 0 || t >= s_kv) continue;
      const uint16_t* row = a.kv.ptr<const uint16_t>() + t * kv_row_stride;
      float* key = s.keys.data() + n * d_qk;
      for (int d = 0; d < d_qk; ++d) key[d] = bf16_to_float(row[d]);
      ++n;
    }

    const AttentionRowOut out{a.out.ptr<uint16_t>() + i * h_q * kDV,  // [s_q, h_q, 512]
                              a.lse.ptr<float>() + i * h_q,           // [s_q, h_q]
                              a.max_logits.ptr<float>() + i * h_q};   // [s_q, h_q]
    attend_row(s, n, h_q, d_qk, sm_scale, sink, out);
  });
}

}  // namespace model1::cpu
