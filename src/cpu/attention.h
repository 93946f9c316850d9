// model1 CPU backend: the attention of one query token over a gathered set of keys, shared by
// sparse decode and sparse prefill (MODEL1.md sections 3 and 4).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace model1::cpu {

inline constexpr int kDV = 512;  // value dims: the first 512 dims of every key

/// Per-thread buffers, sized once per call so the row loop never allocates.
struct AttentionScratch {
  std::vector<float> keys;     // [max_keys, d_qk] dequantized candidate keys
  std::vector<float> q;        // [h_q, d_qk] the row's queries as float
  std::vector<double> scores;  // [max_keys] scaled logits of one head
  std::vector<float> partial;  // [kDV] float accumulator of one block of keys
  std::vector<double> acc;     // [kDV] double accumulator across blocks

  AttentionScratch(int64_t max_keys, int64_t h_q, int d_qk)
      : keys(static_cast<std::size_t>(max_keys * d_qk)),
        q(static_cast<std::size_t>(h_q * d_qk)),
        scores(static_cast<std::size_t>(max_keys)),
        partial(kDV),
        acc(kDV) {}
};

/// Outputs of one query token (all heads). `max_logits` may be null (decode has none).
struct AttentionRowOut {
  uint16_t* out;       // [h_q, kDV] bf16 bits
  float* lse;          // [h_q]
  float* max_logits;   // [h_q] or null
};

/// Attends every head of one query token (s.q, [h_q, d_qk]) over the first `num_keys` rows of
/// s.keys, applies the optional sink (`sink`: [h_q] or null) and writes the outputs.
/// With num_keys == 0: out = 0, lse = +inf, max_logits = -inf.
void attend_row(AttentionScratch& s, int64_t num_keys, int64_t h_q, int d_qk, float sm_scale,
                const float* sink, const AttentionRowOut& out);

}  // namespace model1::cpu
