// model1 bench/tests: the float64 oracle (MODEL1.md sections 2, 3, 4).
//
// NOTE: deliberately naive and independent of src/cpu: it decodes cache bytes itself from the
// layout constants of kv_format.h, walks every (request, token, head) with plain loops, and
// accumulates in double. It only reads CPU memory and never writes the arguments' outputs.
#include "oracle.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "model1/error.h"
#include "model1/kv_format.h"

namespace model1::oracle {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double bf16_bits_to_double(uint16_t bits) {
  const uint32_t u = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

double bf16_at(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof(bits));
  return bf16_bits_to_double(bits);
}

double f32_at(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, sizeof(f));
  return f;
}

// float8 e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; S.1111.111 is NaN, no inf.
double e4m3_to_double(uint8_t v) {
  const int sign = v >> 7;
  const int exponent = (v >> 3) & 0xF;
  const int mantissa = v & 0x7;
  if (exponent == 0xF && mantissa == 0x7) return kNaN;
  const double magnitude = exponent == 0 ? std::ldexp(double(mantissa), -9)  // m/8 * 2^-6
                                         : std::ldexp(double(8 + mantissa), exponent - 10);
  return sign ? -magnitude : magnitude;
}

// UE8M0: byte e means 2^(e - 127); 255 is NaN.
double ue8m0_to_double(uint8_t e) { return e == 0xFF ? kNaN : std::ldexp(1.0, int(e) - 127); }

int64_t element_bytes(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return 2;
    case DType::kF32: return 4;
    case DType::kI32: return 4;
    case DType::kU8: return 1;
    case DType::kFP8E4M3: return 1;
  }
  return 1;
}

int cache_d_qk(const KvCacheView& cache) {
  switch (cache.format) {
    case KvFormat::kModel1Fp8: return model1_fp8::kDQk;
    case KvFormat::kV32Fp8: return v32_fp8::kDQk;
    case KvFormat::kBf16: return int(cache.data.shape[cache.data.ndim - 1]);
  }
  return 0;
}

// Reads element [i0, i1, ...] of an int32 / f32 / bf16 view by its strides (elements).
int32_t i32_at(const TensorView& t, std::initializer_list<int64_t> idx) {
  int64_t off = 0;
  int d = 0;
  for (int64_t i : idx) off += i * t.strides[d++];
  return static_cast<const int32_t*>(t.data)[off];
}

double f32_tensor_at(const TensorView& t, int64_t i) {
  return static_cast<const float*>(t.data)[i * t.strides[0]];
}

// The candidate count of a request: topk_length clamped to [0, topk]; all when absent.
int64_t effective_length(const TensorView& topk_length, int64_t row, int64_t topk) {
  if (!topk_length.defined()) return topk;
  const int64_t len = i32_at(topk_length, {row});
  if (len < 0) return 0;
  return len < topk ? len : topk;
}

// The index tensor's element k of row (i, j) for rank-3 [b, s_q, topk] decode indices.
int32_t index_at_3d(const TensorView& indices, int64_t i, int64_t j, int64_t k) {
  return i32_at(indices, {i, j, k});
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t d = 0; d < a.size(); ++d) s += a[d] * b[d];
  return s;
}

// Softmax over `keys` for query `qv`: writes out[0:d_v] and returns lse (or +inf when empty);
// `max_logit` receives the largest scaled logit (-inf when empty). Applies the sink.
double attend(const std::vector<double>& qv, const std::vector<std::vector<double>>& keys,
              double sm_scale, int d_v, bool has_sink, double sink, double* out,
              double* max_logit) {
  for (int d = 0; d < d_v; ++d) out[d] = 0.0;
  if (keys.empty()) {
    *max_logit = -kInf;
    return kInf;
  }
  std::vector<double> logits(keys.size());
  double m = -kInf;
  for (size_t k = 0; k < keys.size(); ++k) {
    logits[k] = sm_scale * dot(qv, keys[k]);
    if (logits[k] > m) m = logits[k];
  }
  double sum = 0.0;
  for (double s : logits) sum += std::exp(s - m);
  const double lse = m + std::log(sum);
  for (size_t k = 0; k < keys.size(); ++k) {
    const double p = std::exp(logits[k] - lse);
    for (int d = 0; d < d_v; ++d) out[d] += p * keys[k][d];
  }
  if (has_sink) {
    // NOTE: 1 / (1 + exp(sink - lse)): sink = -inf gives 1, sink = +inf gives exactly 0.
    const double factor = 1.0 / (1.0 + std::exp(sink - lse));
    for (int d = 0; d < d_v; ++d) out[d] *= factor;
  }
  *max_logit = m;
  return lse;
}

}  // namespace

std::vector<double> dequantize_token(const KvCacheView& cache, int64_t slot, int d_qk) {
  const int64_t P = cache.page_size;
  MODEL1_CHECK(P > 0, "kv.page_size", "page_size > 0", std::to_string(P));
  MODEL1_CHECK(slot >= 0 && slot < cache.num_slots(), "slot",
               "0 <= slot < " + std::to_string(cache.num_slots()), std::to_string(slot));
  MODEL1_CHECK(d_qk == cache_d_qk(cache), "d_qk", std::to_string(cache_d_qk(cache)),
               std::to_string(d_qk));
  const int64_t page = slot / P;
  const int64_t t = slot % P;
  const int64_t esize = element_bytes(cache.data.dtype);
  const uint8_t* page_base =
      static_cast<const uint8_t*>(cache.data.data) + page * cache.data.strides[0] * esize;
  std::vector<double> k(d_qk);
  switch (cache.format) {
    case KvFormat::kModel1Fp8: {
      using namespace model1_fp8;
      const uint8_t* row = page_base + data_row_offset(t);
      const uint8_t* scales = page_base + scale_row_offset(P, t);
      for (int d = 0; d < kNopeDims; ++d)
        k[d] = e4m3_to_double(row[d]) * ue8m0_to_double(scales[d / kTileDims]);
      for (int d = 0; d < kRopeDims; ++d) k[kNopeDims + d] = bf16_at(row + kNopeBytes + 2 * d);
      break;
    }
    case KvFormat::kV32Fp8: {
      using namespace v32_fp8;
      const uint8_t* row = page_base + token_offset(t);
      for (int d = 0; d < kNopeDims; ++d)
        k[d] = e4m3_to_double(row[d]) * f32_at(row + kScaleOffset + 4 * (d / kTileDims));
      for (int d = 0; d < kRopeDims; ++d) k[kNopeDims + d] = bf16_at(row + kRopeOffset + 2 * d);
      break;
    }
    case KvFormat::kBf16: {
      // [pages, P, d_qk] or [pages, P, 1, d_qk] bf16, strides in elements.
      const TensorView& v = cache.data;
      const int64_t row_stride = v.strides[1];
      const int64_t col_stride = v.strides[v.ndim - 1];
      const uint8_t* row = page_base + t * row_stride * 2;
      for (int d = 0; d < d_qk; ++d) k[d] = bf16_at(row + int64_t{d} * col_stride * 2);
      break;
    }
  }
  return k;
}

DecodeRef decode(const SparseDecodeArgs& args) {
  const TensorView& q = args.q;  // [b, s_q, h_q, d_qk]
  const int64_t b = q.shape[0], s_q = q.shape[1], h_q = q.shape[2];
  const int d_qk = int(q.shape[3]);
  constexpr int kDV = 512;
  const double sm_scale =
      std::isnan(args.sm_scale) ? 1.0 / std::sqrt(double(d_qk)) : double(args.sm_scale);
  const bool has_extra = args.extra_kv.data.defined() && args.extra_indices.defined();
  const bool has_sink = args.attn_sink.defined();
  const int64_t topk = args.indices.shape[2];
  const int64_t extra_topk = has_extra ? args.extra_indices.shape[2] : 0;

  DecodeRef ref;
  ref.out.assign(size_t(b * s_q * h_q * kDV), 0.0);
  ref.lse.assign(size_t(b * s_q * h_q), kInf);
  const auto* q_data = static_cast<const uint16_t*>(q.data);

  for (int64_t i = 0; i < b; ++i) {
    for (int64_t j = 0; j < s_q; ++j) {
      // Candidate keys of (i, j): main cache then extra cache; duplicates kept.
      std::vector<std::vector<double>> keys;
      const int64_t n_main = effective_length(args.topk_length, i, topk);
      for (int64_t k = 0; k < n_main; ++k) {
        const int64_t slot = index_at_3d(args.indices, i, j, k);
        if (slot >= 0 && slot < args.kv.num_slots())
          keys.push_back(dequantize_token(args.kv, slot, d_qk));
      }
      if (has_extra) {
        const int64_t n_extra = effective_length(args.extra_topk_length, i, extra_topk);
        for (int64_t k = 0; k < n_extra; ++k) {
          const int64_t slot = index_at_3d(args.extra_indices, i, j, k);
          if (slot >= 0 && slot < args.extra_kv.num_slots())
            keys.push_back(dequantize_token(args.extra_kv, slot, d_qk));
        }
      }
      for (int64_t h = 0; h < h_q; ++h) {
        std::vector<double> qv(d_qk);
        const int64_t q_off = i * q.strides[0] + j * q.strides[1] + h * q.strides[2];
        for (int d = 0; d < d_qk; ++d)
          qv[d] = bf16_bits_to_double(q_data[q_off + int64_t{d} * q.strides[3]]);
        const int64_t row = (i * s_q + j) * h_q + h;
        const double sink = has_sink ? f32_tensor_at(args.attn_sink, h) : 0.0;
        double max_logit;
        ref.lse[row] = attend(qv, keys, sm_scale, kDV, has_sink, sink, &ref.out[row * kDV],
                              &max_logit);
      }
    }
  }
  return ref;
}

PrefillRef prefill(const SparsePrefillArgs& args) {
  const TensorView& q = args.q;    // [s_q, h_q, d_qk]
  const TensorView& kv = args.kv;  // [s_kv, d_qk] or [s_kv, 1, d_qk]
  const TensorView& ind = args.indices;  // [s_q, topk] or [s_q, 1, topk]
  const int64_t s_q = q.shape[0], h_q = q.shape[1];
  const int d_qk = int(q.shape[2]);
  const int d_v = args.d_v;
  const int64_t s_kv = kv.shape[0];
  const int64_t topk = ind.shape[ind.ndim - 1];
  const double sm_scale =
      std::isnan(args.sm_scale) ? 1.0 / std::sqrt(double(d_qk)) : double(args.sm_scale);
  const bool has_sink = args.attn_sink.defined();
  MODEL1_CHECK(d_v > 0 && d_v <= d_qk, "d_v", "0 < d_v <= d_qk (" + std::to_string(d_qk) + ")",
               std::to_string(d_v));

  PrefillRef ref;
  ref.out.assign(size_t(s_q * h_q * d_v), 0.0);
  ref.max_logits.assign(size_t(s_q * h_q), -kInf);
  ref.lse.assign(size_t(s_q * h_q), kInf);
  const auto* q_data = static_cast<const uint16_t*>(q.data);
  const auto* kv_data = static_cast<const uint16_t*>(kv.data);
  const auto* ind_data = static_cast<const int32_t*>(ind.data);

  for (int64_t j = 0; j < s_q; ++j) {
    std::vector<std::vector<double>> keys;
    const int64_t n = effective_length(args.topk_length, j, topk);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t slot = ind_data[j * ind.strides[0] + k * ind.strides[ind.ndim - 1]];
      if (slot < 0 || slot >= s_kv) continue;
      std::vector<double> key(d_qk);
      for (int d = 0; d < d_qk; ++d)
        key[d] = bf16_bits_to_double(
            kv_data[slot * kv.strides[0] + int64_t{d} * kv.strides[kv.ndim - 1]]);
      keys.push_back(std::move(key));
    }
    for (int64_t h = 0; h < h_q; ++h) {
      std::vector<double> qv(d_qk);
      const int64_t q_off = j * q.strides[0] + h * q.strides[1];
      for (int d = 0; d < d_qk; ++d)
        qv[d] = bf16_bits_to_double(q_data[q_off + int64_t{d} * q.strides[2]]);
      const int64_t row = j * h_q + h;
      const double sink = has_sink ? f32_tensor_at(args.attn_sink, h) : 0.0;
      ref.lse[row] = attend(qv, keys, sm_scale, d_v, has_sink, sink, &ref.out[row * d_v],
                            &ref.max_logits[row]);
    }
  }
  return ref;
}

}  // namespace model1::oracle
