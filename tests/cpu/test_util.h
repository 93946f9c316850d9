// model1 CPU tests: shared helpers. bf16 / e4m3 conversions written from their definitions,
// the reference quantization rule of MODEL1.md section 2 (computed independently of the
// library), a test-owned paged cache buffer, output poisoning and tolerance comparisons that
// report max / mean errors.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "model1/model1.h"

namespace model1::test {

inline constexpr double kInf = std::numeric_limits<double>::infinity();
inline constexpr uint16_t kBf16PoisonBits = 0xFFFF;  // a negative NaN
inline constexpr uint16_t kBf16NaNBits = 0x7FC0;
inline constexpr uint8_t kE4m3NaN = 0x7F;
inline constexpr uint8_t kUe8m0NaN = 0xFF;

// ---------------------------------------------------------------------------------------------
// bfloat16
inline float bf16_to_float(uint16_t bits) {
  const uint32_t u = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

/// float -> bf16 with round-to-nearest-even (NaN stays a quiet NaN).
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if (std::isnan(f)) return kBf16NaNBits;
  const uint32_t rounding = 0x7FFF + ((u >> 16) & 1);
  return uint16_t((u + rounding) >> 16);
}

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// ---------------------------------------------------------------------------------------------
// Random data: N(0, sigma^2) clipped to [-clip, clip], rounded to bf16.
inline float random_value(std::mt19937& rng, float sigma = 0.1f, float clip = 1.0f) {
  std::normal_distribution<float> dist(0.0f, sigma);
  return std::clamp(dist(rng), -clip, clip);
}

inline std::vector<uint16_t> random_bf16(size_t n, std::mt19937& rng, float sigma = 0.1f,
                                         float clip = 1.0f) {
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = float_to_bf16(random_value(rng, sigma, clip));
  return v;
}

// ---------------------------------------------------------------------------------------------
// float8 e4m3fn (bias 7, no infinities, S.1111.111 = NaN, largest finite 448).
inline double e4m3_value(uint8_t code) {
  const int e = (code >> 3) & 0xF, m = code & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? m / 8.0 * std::ldexp(1.0, -6) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7);
  return (code & 0x80) ? -mag : mag;
}

/// Round-to-nearest-even of an exact value |v| <= 448 to e4m3fn. The sign is kept (a negative
/// value that rounds to zero gives 0x80, as IEEE conversions do).
inline uint8_t e4m3_rne(double v) {
  const uint8_t sign = std::signbit(v) ? 0x80 : 0x00;
  const double a = std::fabs(v);
  // Quantum: 2^-9 in the subnormal range [0, 2^-6), else 2^(floor(log2 a) - 3).
  int e = 0;
  std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1) -> floor(log2 a) = e - 1
  const int q_exp = a < std::ldexp(1.0, -6) ? -9 : (e - 1) - 3;
  const double r = std::nearbyint(a / std::ldexp(1.0, q_exp));  // ties to even
  const double mag = r * std::ldexp(1.0, q_exp);
  if (mag == 0.0) return sign;
  if (mag < std::ldexp(1.0, -6)) return uint8_t(sign | int(r));  // subnormal: m = r
  int e2 = 0;
  std::frexp(mag, &e2);
  const int exponent = e2 - 1;  // mag in [2^exponent, 2^(exponent+1))
  const int mantissa = int(mag / std::ldexp(1.0, exponent) * 8.0) - 8;
  return uint8_t(sign | ((exponent + 7) << 3) | mantissa);
}

/// The scale exponent of MODEL1.md's rule: s = 2^ceil(log2(max(amax / 448, 1e-4))), in float32.
inline int rule_scale_exponent(float amax) {
  const float ratio = amax / 448.0f;
  const float v = ratio > 1e-4f ? ratio : 1e-4f;
  int e = 0;
  const float m = std::frexp(v, &e);  // v = m 2^e with m in [0.5, 1)
  return m == 0.5f ? e - 1 : e;        // exact powers of two: log2 is an integer
}

/// Reference encoders of one token (bf16 bits in, cache bytes out).
inline void encode_model1_token(const uint16_t* x, uint8_t* data_row, uint8_t* scale_row) {
  using namespace model1_fp8;
  for (int tile = 0; tile < kNumTiles; ++tile) {
    float amax = 0.0f;
    for (int d = 0; d < kTileDims; ++d)
      amax = std::max(amax, std::fabs(bf16_to_float(x[tile * kTileDims + d])));
    const int e = rule_scale_exponent(amax);
    scale_row[tile] = uint8_t(e + 127);
    for (int d = 0; d < kTileDims; ++d) {
      const int dim = tile * kTileDims + d;
      data_row[dim] = e4m3_rne(double(bf16_to_float(x[dim])) / std::ldexp(1.0, e));
    }
  }
  scale_row[kNumTiles] = 0;
  std::memcpy(data_row + kNopeBytes, x + kNopeDims, kRopeBytes);
}

inline void encode_v32_token(const uint16_t* x, uint8_t* row) {
  using namespace v32_fp8;
  for (int tile = 0; tile < kNumTiles; ++tile) {
    float amax = 0.0f;
    for (int d = 0; d < kTileDims; ++d)
      amax = std::max(amax, std::fabs(bf16_to_float(x[tile * kTileDims + d])));
    const int e = rule_scale_exponent(amax);
    const float scale = std::ldexp(1.0f, e);
    std::memcpy(row + kScaleOffset + 4 * tile, &scale, 4);
    for (int d = 0; d < kTileDims; ++d) {
      const int dim = tile * kTileDims + d;
      row[dim] = e4m3_rne(double(bf16_to_float(x[dim])) / std::ldexp(1.0, e));
    }
  }
  std::memcpy(row + kRopeOffset, x + kNopeDims, kRopeBytes);
}

/// What dequantize(quantize(x)) must give, per the rule (exact doubles).
inline std::vector<double> rule_dequantized(const uint16_t* x, KvFormat format) {
  const bool m1 = format == KvFormat::kModel1Fp8;
  const int nope = m1 ? model1_fp8::kNopeDims : v32_fp8::kNopeDims;
  const int tile_dims = m1 ? model1_fp8::kTileDims : v32_fp8::kTileDims;
  const int d_qk = m1 ? model1_fp8::kDQk : v32_fp8::kDQk;
  std::vector<double> out(d_qk);
  for (int t0 = 0; t0 < nope; t0 += tile_dims) {
    float amax = 0.0f;
    for (int d = 0; d < tile_dims; ++d) amax = std::max(amax, std::fabs(bf16_to_float(x[t0 + d])));
    const double s = std::ldexp(1.0, rule_scale_exponent(amax));
    for (int d = 0; d < tile_dims; ++d)
      out[t0 + d] = e4m3_value(e4m3_rne(bf16_to_float(x[t0 + d]) / s)) * s;
  }
  for (int d = nope; d < d_qk; ++d) out[d] = bf16_to_float(x[d]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// A paged cache owned by a test, living inside a larger buffer (lead and tail bytes around it).
struct CacheSpec {
  KvFormat format = KvFormat::kModel1Fp8;
  int64_t page_size = 64;
  int64_t num_pages = 4;
  int64_t extra_stride = 0;  ///< added to the minimum page stride (bytes; elements for Bf16)
  bool rank4 = false;        ///< FlashMLA's [pages, P, 1, bytes_per_token] view
  bool fp8_dtype = false;    ///< view the bytes as fp8_e4m3 instead of uint8
  int bf16_d_qk = 512;

  int d_qk() const {
    return format == KvFormat::kModel1Fp8 ? 512 : format == KvFormat::kV32Fp8 ? 576 : bf16_d_qk;
  }
  int64_t num_slots() const { return page_size * num_pages; }
  std::string describe() const {
    std::ostringstream s;
    s << kv_format_name(format) << (format == KvFormat::kBf16 ? std::to_string(bf16_d_qk) : "")
      << " P=" << page_size << " pages=" << num_pages << " +stride=" << extra_stride
      << (rank4 ? " rank4" : " rank2/3");
    return s.str();
  }
};

class CacheBuffer {
 public:
  static constexpr int64_t kLead = 192;  // bytes before page 0 (the cache is a slice)
  static constexpr int64_t kTail = 192;

  CacheBuffer() = default;
  explicit CacheBuffer(const CacheSpec& spec, uint8_t fill = 0xA5) : spec_(spec) {
    if (spec.format == KvFormat::kBf16) {
      stride_elems_ = spec.page_size * spec.bf16_d_qk + spec.extra_stride;
      stride_bytes_ = stride_elems_ * 2;
    } else {
      const int64_t min = spec.format == KvFormat::kModel1Fp8
                              ? model1_fp8::min_page_stride(spec.page_size)
                              : v32_fp8::min_page_stride(spec.page_size);
      stride_bytes_ = min + spec.extra_stride;
      stride_elems_ = stride_bytes_;
    }
    bytes_.assign(size_t(kLead + stride_bytes_ * spec.num_pages + kTail), fill);
  }

  const CacheSpec& spec() const { return spec_; }
  int64_t page_stride_bytes() const { return stride_bytes_; }
  int64_t num_slots() const { return spec_.num_slots(); }
  uint8_t* page(int64_t p) { return bytes_.data() + kLead + p * stride_bytes_; }
  const uint8_t* page(int64_t p) const { return bytes_.data() + kLead + p * stride_bytes_; }
  std::vector<uint8_t>& raw() { return bytes_; }
  const std::vector<uint8_t>& raw() const { return bytes_; }

  KvCacheView view() const {
    KvCacheView v;
    v.format = spec_.format;
    v.page_size = spec_.page_size;
    void* base = const_cast<uint8_t*>(page(0));
    const int64_t pages = spec_.num_pages, P = spec_.page_size;
    if (spec_.format == KvFormat::kBf16) {
      const int64_t d = spec_.bf16_d_qk;
      v.data = spec_.rank4 ? TensorView::strided(base, DType::kBF16, {pages, P, 1, d},
                                                 {stride_elems_, d, d, 1})
                           : TensorView::strided(base, DType::kBF16, {pages, P, d},
                                                 {stride_elems_, d, 1});
    } else {
      const DType dt = spec_.fp8_dtype ? DType::kFP8E4M3 : DType::kU8;
      const int64_t bpt = kv_bytes_per_token(spec_.format);
      v.data = spec_.rank4 ? TensorView::strided(base, dt, {pages, P, 1, bpt},
                                                 {stride_bytes_, bpt, bpt, 1})
                           : TensorView::strided(base, dt, {pages, stride_bytes_},
                                                 {stride_bytes_, 1});
    }
    return v;
  }

  /// Writes token `slot` with the test's reference encoder (or a copy for Bf16).
  void write_token(int64_t slot, const uint16_t* x) {
    const int64_t P = spec_.page_size, t = slot % P;
    uint8_t* pg = page(slot / P);
    switch (spec_.format) {
      case KvFormat::kModel1Fp8:
        encode_model1_token(x, pg + model1_fp8::data_row_offset(t),
                            pg + model1_fp8::scale_row_offset(P, t));
        break;
      case KvFormat::kV32Fp8: encode_v32_token(x, pg + v32_fp8::token_offset(t)); break;
      case KvFormat::kBf16:
        std::memcpy(pg + t * spec_.bf16_d_qk * 2, x, size_t(spec_.bf16_d_qk) * 2);
        break;
    }
  }

  /// Fills every slot from bf16 tokens `[num_slots, d_qk]`.
  void fill(const std::vector<uint16_t>& tokens) {
    const int d = spec_.d_qk();
    for (int64_t s = 0; s < num_slots(); ++s) write_token(s, tokens.data() + s * d);
  }

  /// Plants NaN in every byte that belongs to token `slot`: e4m3 0x7F, NaN scales, NaN RoPE.
  void poison_slot(int64_t slot) {
    const int64_t P = spec_.page_size, t = slot % P;
    uint8_t* pg = page(slot / P);
    auto put_bf16_nan = [](uint8_t* p, int n) {
      for (int i = 0; i < n; ++i) std::memcpy(p + 2 * i, &kBf16NaNBits, 2);
    };
    switch (spec_.format) {
      case KvFormat::kModel1Fp8: {
        using namespace model1_fp8;
        uint8_t* row = pg + data_row_offset(t);
        std::memset(row, kE4m3NaN, kNopeBytes);
        put_bf16_nan(row + kNopeBytes, kRopeDims);
        std::memset(pg + scale_row_offset(P, t), kUe8m0NaN, kScaleRowBytes);
        break;
      }
      case KvFormat::kV32Fp8: {
        using namespace v32_fp8;
        uint8_t* row = pg + token_offset(t);
        std::memset(row, kE4m3NaN, kNopeBytes);
        const float nan = std::numeric_limits<float>::quiet_NaN();
        for (int i = 0; i < kNumTiles; ++i) std::memcpy(row + kScaleOffset + 4 * i, &nan, 4);
        put_bf16_nan(row + kRopeOffset, kRopeDims);
        break;
      }
      case KvFormat::kBf16: put_bf16_nan(pg + t * spec_.bf16_d_qk * 2, spec_.bf16_d_qk); break;
    }
  }

  /// Plants NaN / 0xFF in page padding, the lead and the tail (bytes no token owns).
  void poison_padding() {
    std::memset(bytes_.data(), 0xFF, kLead);
    std::memset(bytes_.data() + bytes_.size() - kTail, 0xFF, kTail);
    const int64_t used = spec_.format == KvFormat::kBf16
                             ? spec_.page_size * spec_.bf16_d_qk * 2
                             : spec_.page_size * kv_bytes_per_token(spec_.format);
    for (int64_t p = 0; p < spec_.num_pages; ++p)
      std::memset(page(p) + used, 0xFF, size_t(stride_bytes_ - used));
  }

 private:
  CacheSpec spec_;
  int64_t stride_bytes_ = 0;
  int64_t stride_elems_ = 0;
  std::vector<uint8_t> bytes_;
};

// ---------------------------------------------------------------------------------------------
// Poisoning and comparisons.
inline void poison_bf16(std::vector<uint16_t>& v) { std::fill(v.begin(), v.end(), kBf16PoisonBits); }
inline void poison_f32(std::vector<float>& v) {
  std::fill(v.begin(), v.end(), std::numeric_limits<float>::quiet_NaN());
}

inline std::vector<double> bf16_to_doubles(const std::vector<uint16_t>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_float(v[i]);
  return out;
}
inline std::vector<double> f32_to_doubles(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

/// Elementwise tolerance. additive: |d| <= abs + rel |ref|; otherwise |d| <= abs or
/// |d| <= rel |ref| (FlashMLA's "abs or rel" form). Infinite references must match exactly.
/// NaN never passes.
struct Tol {
  double abs = 0.0;
  double rel = 0.0;
  bool additive = true;
};

inline bool within(double ans, double ref, const Tol& tol) {
  if (std::isnan(ans) || std::isnan(ref)) return false;
  if (std::isinf(ans) || std::isinf(ref)) return ans == ref;
  const double d = std::fabs(ans - ref);
  return tol.additive ? d <= tol.abs + tol.rel * std::fabs(ref)
                      : (d <= tol.abs || d <= tol.rel * std::fabs(ref));
}

/// Compares `ans` with `ref` elementwise; with `row_len` > 0 also per row: rows whose
/// reference is all zero must be exactly zero, other rows need FlashMLA's cosine difference
/// 1 - 2 sum(xy) / sum(x^2 + y^2) < cos_tol. Reports count, worst element, max / mean errors.
inline ::testing::AssertionResult check_close(const std::string& what,
                                              const std::vector<double>& ans,
                                              const std::vector<double>& ref, const Tol& tol,
                                              int64_t row_len = 0, double cos_tol = 0.0) {
  if (ans.size() != ref.size())
    return ::testing::AssertionFailure()
           << what << ": size " << ans.size() << " vs reference " << ref.size();
  int64_t bad = 0, nan_count = 0, worst = -1;
  double max_abs = 0.0, sum_abs = 0.0, max_rel = 0.0, worst_excess = -1.0;
  int64_t finite_pairs = 0;
  for (size_t i = 0; i < ans.size(); ++i) {
    if (std::isnan(ans[i])) ++nan_count;
    if (std::isfinite(ans[i]) && std::isfinite(ref[i])) {
      const double d = std::fabs(ans[i] - ref[i]);
      max_abs = std::max(max_abs, d);
      sum_abs += d;
      ++finite_pairs;
      if (ref[i] != 0.0) max_rel = std::max(max_rel, d / std::fabs(ref[i]));
    }
    if (!within(ans[i], ref[i], tol)) {
      ++bad;
      const double excess = std::isfinite(ans[i] - ref[i])
                                ? std::fabs(ans[i] - ref[i]) - tol.rel * std::fabs(ref[i])
                                : kInf;
      if (worst < 0 || excess > worst_excess) {
        worst = int64_t(i);
        worst_excess = excess;
      }
    }
  }
  int64_t bad_rows = 0, worst_row = -1;
  double worst_cos = 0.0;
  if (row_len > 0) {
    for (size_t r = 0; r * row_len < ref.size(); ++r) {
      double xy = 0.0, xx_yy = 0.0, ref_norm = 0.0, ans_norm = 0.0;
      for (int64_t d = 0; d < row_len; ++d) {
        const double x = ans[r * row_len + d], y = ref[r * row_len + d];
        xy += x * y;
        xx_yy += x * x + y * y;
        ref_norm += y * y;
        ans_norm += std::fabs(x);
      }
      double cos_diff;
      if (ref_norm == 0.0) {
        cos_diff = ans_norm == 0.0 ? 0.0 : kInf;  // must be exactly zero
      } else {
        cos_diff = 1.0 - 2.0 * xy / xx_yy;
        if (std::isnan(cos_diff)) cos_diff = kInf;
      }
      if (!(cos_diff < cos_tol) && !(ref_norm == 0.0 && cos_diff == 0.0)) {
        ++bad_rows;
        if (worst_row < 0 || cos_diff > worst_cos) worst_row = int64_t(r);
      }
      if (cos_diff > worst_cos) worst_cos = cos_diff;
    }
  }
  std::ostringstream msg;
  msg << what << ": max abs err " << max_abs << ", mean abs err "
      << (finite_pairs ? sum_abs / double(finite_pairs) : 0.0) << ", max rel err " << max_rel;
  if (row_len > 0) msg << ", worst row cos diff " << worst_cos;
  if (bad == 0 && bad_rows == 0) return ::testing::AssertionSuccess() << msg.str();
  msg << "\n  " << bad << " of " << ans.size() << " elements out of tolerance (abs " << tol.abs
      << (tol.additive ? " + " : " or ") << "rel " << tol.rel << "), " << nan_count << " NaN";
  if (worst >= 0)
    msg << "; worst at flat index " << worst << ": got " << ans[size_t(worst)] << ", expected "
        << ref[size_t(worst)];
  if (bad_rows > 0)
    msg << "\n  " << bad_rows << " rows fail the cosine / zero-row check (tol " << cos_tol
        << "); worst row " << worst_row;
  return ::testing::AssertionFailure() << msg.str();
}

/// Count of elements still holding the poison bit pattern (0xFFFF bf16 / NaN f32).
inline int64_t count_poison(const std::vector<uint16_t>& v) {
  return std::count(v.begin(), v.end(), kBf16PoisonBits);
}
inline int64_t count_nan(const std::vector<float>& v) {
  return std::count_if(v.begin(), v.end(), [](float x) { return std::isnan(x); });
}

}  // namespace model1::test
