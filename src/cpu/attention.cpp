// model1 CPU backend: one query token's attention over gathered keys.
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/numerics.h"

namespace model1::cpu {
namespace {

// NOTE: 16 independent partial sums let the compiler vectorize the dot product without
// reassociating (no -ffast-math), and keep the result a fixed function of the inputs.
constexpr int kDotLanes = 16;
// Keys accumulated in float before the block is added to the double accumulator: bounds the
// float rounding error to a 64-term sum while keeping the inner loop in float.
constexpr int64_t kKeysPerBlock = 64;

float dot(const float* a, const float* b, int n) {  // n % kDotLanes == 0 (512, 576)
  float lane[kDotLanes] = {};
  for (int d = 0; d < n; d += kDotLanes) {
    for (int u = 0; u < kDotLanes; ++u) lane[u] += a[d + u] * b[d + u];
  }
  double sum = 0.0;
  for (int u = 0; u < kDotLanes; ++u) sum += lane[u];
  return static_cast<float>(sum);
}

}  // namespace

void attend_row(AttentionScratch& s, int64_t num_keys, int64_t h_q, int d_qk, float sm_scale,
                const float* sink, const AttentionRowOut& o) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  for (int64_t h = 0; h < h_q; ++h) {
    uint16_t* out = o.out + h * kDV;  // [kDV]
    if (num_keys == 0) {
      std::fill(out, out + kDV, uint16_t{0});
      o.lse[h] = kInf;
      if (o.max_logits != nullptr) o.max_logits[h] = -kInf;
      continue;
    }
    const float* q = s.q.data() + h * d_qk;  // [d_qk]

    // Scaled logits and their maximum.
    double max_score = -std::numeric_limits<double>::infinity();
    for (int64_t k = 0; k < num_keys; ++k) {
      const double score =
          static_cast<double>(sm_scale) * dot(q, s.keys.data() + k * d_qk, d_qk);
      s.scores[k] = score;
      max_score = std::max(max_score, score);
    }

    // Softmax weights (relative to the maximum) and the weighted sum of values.
    double sum = 0.0;
    std::fill(s.acc.begin(), s.acc.end(), 0.0);
    for (int64_t k0 = 0; k0 < num_keys; k0 += kKeysPerBlock) {
      const int64_t k1 = std::min(num_keys, k0 + kKeysPerBlock);
      std::fill(s.partial.begin(), s.partial.end(), 0.0f);
      for (int64_t k = k0; k < k1; ++k) {
        const double w = std::exp(s.scores[k] - max_score);
        sum += w;
        const float wf = static_cast<float>(w);
        const float* v = s.keys.data() + k * d_qk;  // V = K[0:kDV]
        for (int d = 0; d < kDV; ++d) s.partial[d] += wf * v[d];
      }
      for (int d = 0; d < kDV; ++d) s.acc[d] += s.partial[d];
    }
    const double lse = max_score + std::log(sum);

    // Sink: out *= 1 / (1 + exp(sink - lse)); exp(-inf) = 0 leaves out unchanged and
    // exp(+inf) = inf zeroes it. The returned lse excludes the sink.
    double factor = 1.0 / sum;
    if (sink != nullptr) factor /= 1.0 + std::exp(static_cast<double>(sink[h]) - lse);
    for (int d = 0; d < kDV; ++d) out[d] = float_to_bf16(static_cast<float>(s.acc[d] * factor));
    o.lse[h] = static_cast<float>(lse);
    if (o.max_logits != nullptr) o.max_logits[h] = static_cast<float>(max_score);
  }
}

}  // namespace model1::cpu
