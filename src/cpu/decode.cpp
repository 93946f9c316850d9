// model1 CPU backend: sparse decode (MODEL1.md section 3). Arguments were validated by src/api.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend.h"
#include "cpu/attention.h"
#include "cpu/cache_io.h"
#include "cpu/numerics.h"
#include "cpu/parallel.h"

namespace model1::cpu {
namespace {

/// One cache's candidates for the whole call.
struct CandidateSource {
  detail::CacheGeom geom;
  const int32_t* indices = nullptr;  // [b, s_q, topk], last dim contiguous
  int64_t stride_b = 0, stride_s = 0;
  int64_t topk = 0;
  const int32_t* lengths = nullptr;  // [b] or null

  CandidateSource(const KvCacheView& cache, const TensorView& idx, const TensorView& len)
      : geom(detail::cache_geom(cache)),
        indices(idx.ptr<const int32_t>()),
        stride_b(idx.strides[0]),
        stride_s(idx.strides[1]),
        topk(idx.shape[2]),
        lengths(len.defined() ? len.ptr<const int32_t>() : nullptr) {}

  /// Dequantizes the valid candidates of row (i, j) into keys[n...]; returns the new n.
  int64_t gather(int64_t i, int64_t j, float* keys, int64_t n) const {
    // NOTE: a length above topk means topk, a negative length means 0.
    const int64_t len = lengths ? std::clamp<int64_t>(lengths[i], 0, topk) : topk;
    const int32_t* row = indices + i * stride_b + j * stride_s;
    const int64_t num_slots = geom.num_slots();
    for (int64_t k = 0; k < len; ++k) {
      const int64_t slot = row[k];
      // NOTE: the bounds check is part of the contract: invalid slots are never read.
      if (slot < 0 || slot >= num_slots) continue;
      read_token(geom, slot, keys + n * geom.d_qk);  // duplicates are read (and count) again
      ++n;
    }
    return n;
  }
};

}  // namespace

void sparse_decode(const SparseDecodeArgs& a, float sm_scale) {
  const int64_t b = a.q.shape[0], s_q = a.q.shape[1], h_q = a.q.shape[2];
  const int d_qk = static_cast<int>(a.q.shape[3]);
  const CandidateSource main_src(a.kv, a.indices, a.topk_length);
  const bool has_extra = a.extra_kv.data.defined();
  const CandidateSource extra_src =
      has_extra ? CandidateSource(a.extra_kv, a.extra_indices, a.extra_topk_length) : main_src;
  const int64_t max_keys = main_src.topk + (has_extra ? extra_src.topk : 0);
  const float* sink = a.attn_sink.defined() ? a.attn_sink.ptr<const float>() : nullptr;

  const int64_t rows = b * s_q;
  const int workers = num_workers(rows);
  std::vector<AttentionScratch> scratch;
  scratch.reserve(workers);
  for (int w = 0; w < workers; ++w) scratch.emplace_back(max_keys, h_q, d_qk);

  parallel_for_rows(rows, workers, [&](int worker, int64_t row) {
    const int64_t i = row / s_q, j = row % s_q;
    AttentionScratch& s = scratch[worker];

    // The row's queries as float: q[i][j] is [h_q, d_qk] with arbitrary head stride.
    const uint16_t* q = a.q.ptr<const uint16_t>() + i * a.q.strides[0] + j * a.q.strides[1];
    for (int64_t h = 0; h < h_q; ++h) {
      const uint16_t* qh = q + h * a.q.strides[2];
      float* dst = s.q.data() + h * d_qk;
      for (int d = 0; d < d_qk; ++d) dst[d] = bf16_to_float(qh[d]);
    }

    // Each referenced key is dequantized once per row and shared by all heads.
    int64_t n = main_src.gather(i, j, s.keys.data(), 0);
    if (has_extra) n = extra_src.gather(i, j, s.keys.data(), n);

    const AttentionRowOut out{a.out.ptr<uint16_t>() + row * h_q * kDV,  // [b, s_q, h_q, 512]
                              a.lse.ptr<float>() + row * h_q,           // [b, s_q, h_q]
                              nullptr};
    attend_row(s, n, h_q, d_qk, sm_scale, sink, out);
  });
}

}  // namespace model1::cpu
