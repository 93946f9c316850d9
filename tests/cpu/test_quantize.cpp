// model1 CPU tests: the cache quantizer (MODEL1.md sections 2 and 5) must be bit-exact.
#include <climits>

#include "test_util.h"

namespace model1::test {
namespace {

// Describes the first differing byte of two cache buffers (page, offset inside the page).
::testing::AssertionResult same_bytes(const CacheBuffer& got, const CacheBuffer& want) {
  const auto& a = got.raw();
  const auto& b = want.raw();
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "buffer sizes differ";
  int64_t diffs = 0, first = -1;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) {
      if (first < 0) first = int64_t(i);
      ++diffs;
    }
  if (diffs == 0) return ::testing::AssertionSuccess();
  std::ostringstream s;
  const int64_t rel = first - CacheBuffer::kLead;
  s << diffs << " bytes differ; first at buffer byte " << first;
  if (rel < 0) {
    s << " (before page 0)";
  } else {
    const int64_t page = rel / got.page_stride_bytes(), off = rel % got.page_stride_bytes();
    s << " = page " << page << " offset " << off;
    if (page >= got.spec().num_pages) s << " (past the last page)";
  }
  s << ": got 0x" << std::hex << int(a[size_t(first)]) << ", want 0x" << int(b[size_t(first)]);
  return ::testing::AssertionFailure() << s.str();
}

TensorView tokens_view(std::vector<uint16_t>& v, int64_t n, int64_t d, int64_t row_stride = 0) {
  return TensorView::strided(v.data(), DType::kBF16, {n, d}, {row_stride ? row_stride : d, 1});
}

// One MODEL1 token laid out through quantize_cache into a single-token page.
struct OneToken {
  KvFormat format;
  std::vector<uint16_t> x;  // [d_qk]
  CacheBuffer cache;
  explicit OneToken(KvFormat f)
      : format(f), x(size_t(f == KvFormat::kModel1Fp8 ? 512 : 576), 0),
        cache(CacheSpec{f, 1, 1, 0, false, false, 512}, 0xA5) {}
  void set(int dim, float v) {
    x[size_t(dim)] = float_to_bf16(v);
    ASSERT_EQ(bf16_to_float(x[size_t(dim)]), v) << "test value not representable in bf16";
  }
  void run() {
    const int d = int(x.size());
    quantize_cache(tokens_view(x, 1, d), cache.view());
  }
  uint8_t code(int dim) const { return cache.page(0)[dim]; }
  uint8_t ue8m0(int tile) const { return cache.page(0)[model1_fp8::scale_row_offset(1, 0) + tile]; }
  float v32_scale(int tile) const {
    float f;
    std::memcpy(&f, cache.page(0) + v32_fp8::kScaleOffset + 4 * tile, 4);
    return f;
  }
};

// ---------------------------------------------------------------------------------------------
// The test's own reference pieces, checked first so the library is judged by a correct rule.
TEST(QuantRule, E4m3NearestEvenMatchesExhaustiveSearch) {
  // Every bf16 value with |v| <= 448 and every midpoint between adjacent e4m3 values.
  std::vector<double> values;
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float f = bf16_to_float(uint16_t(bits));
    if (std::isfinite(f) && std::fabs(f) <= 448.0f) values.push_back(f);
  }
  for (int c = 0; c < 0x7E; ++c) {
    values.push_back((e4m3_value(uint8_t(c)) + e4m3_value(uint8_t(c + 1))) / 2);
    values.push_back(-(e4m3_value(uint8_t(c)) + e4m3_value(uint8_t(c + 1))) / 2);
  }
  for (double v : values) {
    // Nearest finite code by exhaustive search; ties go to the even code (mantissa LSB 0).
    int best = 0;
    double best_d = kInf;
    for (int c = 0; c <= 0x7E; ++c) {
      const double dist = std::fabs(std::fabs(v) - e4m3_value(uint8_t(c)));
      if (dist < best_d || (dist == best_d && (c & 1) == 0)) {
        best = c;
        best_d = dist;
      }
    }
    const uint8_t want = uint8_t(best | (std::signbit(v) ? 0x80 : 0));
    ASSERT_EQ(int(e4m3_rne(v)), int(want)) << "v = " << v;
  }
}

TEST(QuantRule, ScaleExponentHandValues) {
  EXPECT_EQ(rule_scale_exponent(0.0f), -13);       // floor: 2^ceil(log2 1e-4) = 2^-13
  EXPECT_EQ(rule_scale_exponent(0.0448f), -13);    // amax / 448 ~ 1e-4
  EXPECT_EQ(rule_scale_exponent(1e-30f), -13);
  EXPECT_EQ(rule_scale_exponent(448.0f), 0);
  EXPECT_EQ(rule_scale_exponent(450.0f), 1);
  EXPECT_EQ(rule_scale_exponent(1.0f), -8);        // 1/448 = 2^-8.8
  EXPECT_EQ(rule_scale_exponent(1.75f), -8);       // 448 * 2^-8 exactly
  for (int k = -13; k <= 20; ++k) EXPECT_EQ(rule_scale_exponent(std::ldexp(448.0f, k)), k);
  EXPECT_EQ(rule_scale_exponent(std::ldexp(448.0f, -14)), -13);
}

// ---------------------------------------------------------------------------------------------
// Hand-computed vectors through the library.
TEST(Quantize, Model1HandComputedBytes) {
  OneToken t(KvFormat::kModel1Fp8);
  // Tile 0: all zeros -> scale 2^-13 (UE8M0 114), codes 0.
  // Tile 1: amax 0.0100098 (bf16 of 0.01), below the floor -> s = 2^-13, 82 -> RNE 80 = 0x6A.
  t.set(64, bf16_to_float(float_to_bf16(0.01f)));
  t.set(65, -bf16_to_float(float_to_bf16(0.01f)));
  // Tile 2: amax exactly 448 -> s = 1 (UE8M0 127).
  const float tie_vals[] = {448.0f, 1.0625f, 1.1875f, -1.0625f, std::ldexp(1.0f, -9),
                            3 * std::ldexp(1.0f, -10), std::ldexp(1.0f, -10),
                            -std::ldexp(1.0f, -10), 5 * std::ldexp(1.0f, -10),
                            7 * std::ldexp(1.0f, -10), 15 * std::ldexp(1.0f, -10), 17.0f, 19.0f,
                            7 * std::ldexp(1.0f, -9), -448.0f};
  const uint8_t tie_codes[] = {0x7E, 0x38, 0x3A, 0xB8, 0x01, 0x02, 0x00, 0x80,
                               0x02, 0x04, 0x08, 0x58, 0x5A, 0x07, 0xFE};
  for (int i = 0; i < 15; ++i) t.set(128 + i, tie_vals[i]);
  // Tile 3: amax = 448 * 2^-3 = 56 -> s = 2^-3 (UE8M0 124); 56 -> 0x7E, 7 -> 56/... = 0x66.
  t.set(192, 56.0f);
  t.set(193, 7.0f);
  // Tile 4: amax = 448 * 2^2 = 1792 -> s = 4 (UE8M0 129); 4 -> 1.0 = 0x38.
  t.set(256, -1792.0f);
  t.set(257, 4.0f);
  // Tile 5: amax 450 (just above 448) -> s = 2 (UE8M0 128); 450/2 = 225 -> 224 = 0x76.
  t.set(320, 450.0f);
  // Tile 6: amax = 448 * 2^-14, below the floor -> s = 2^-13 (UE8M0 114): 224 = 0x76.
  t.set(384, std::ldexp(448.0f, -14));
  // RoPE dims are copied as bf16.
  t.set(448, 3.5f);
  t.set(511, -0.125f);
  ASSERT_NO_THROW(t.run());

  const uint8_t want_scales[7] = {114, 114, 127, 124, 129, 128, 114};
  for (int j = 0; j < 7; ++j) EXPECT_EQ(int(t.ue8m0(j)), int(want_scales[j])) << "tile " << j;
  EXPECT_EQ(int(t.ue8m0(7)), 0) << "scale-row pad byte";
  for (int d = 0; d < 64; ++d) EXPECT_EQ(int(t.code(d)), 0) << "dim " << d;
  EXPECT_EQ(int(t.code(64)), 0x6A);
  EXPECT_EQ(int(t.code(65)), 0xEA);
  for (int i = 0; i < 15; ++i)
    EXPECT_EQ(int(t.code(128 + i)), int(tie_codes[i])) << "value " << tie_vals[i];
  EXPECT_EQ(int(t.code(192)), 0x7E);
  EXPECT_EQ(int(t.code(193)), 0x66);
  EXPECT_EQ(int(t.code(256)), 0xFE);
  EXPECT_EQ(int(t.code(257)), 0x38);
  EXPECT_EQ(int(t.code(320)), 0x76);
  EXPECT_EQ(int(t.code(384)), 0x76);
  uint16_t rope0, rope63;
  std::memcpy(&rope0, t.cache.page(0) + 448, 2);
  std::memcpy(&rope63, t.cache.page(0) + 448 + 126, 2);
  EXPECT_EQ(rope0, float_to_bf16(3.5f));
  EXPECT_EQ(rope63, float_to_bf16(-0.125f));
  // The single-token page: 584 payload bytes, stride 1152; bytes 584.. stay untouched.
  for (int64_t i = 584; i < 1152; ++i) ASSERT_EQ(int(t.cache.page(0)[i]), 0xA5) << "byte " << i;
}

TEST(Quantize, V32HandComputedBytes) {
  OneToken t(KvFormat::kV32Fp8);
  // Tile 0 (dims 0..127): zeros -> 2^-13. Tile 1: amax 448 -> 1. Tile 2: 56 -> 2^-3.
  // Tile 3: amax 0.0100098 -> 2^-13.
  t.set(128, 448.0f);
  t.set(129, 1.0625f);
  t.set(130, 1.1875f);
  t.set(131, 3 * std::ldexp(1.0f, -10));
  t.set(132, -std::ldexp(1.0f, -10));
  t.set(256, 56.0f);
  t.set(257, 7.0f);
  t.set(384, bf16_to_float(float_to_bf16(0.01f)));
  t.set(512, 2.0f);
  ASSERT_NO_THROW(t.run());
  EXPECT_EQ(t.v32_scale(0), std::ldexp(1.0f, -13));
  EXPECT_EQ(t.v32_scale(1), 1.0f);
  EXPECT_EQ(t.v32_scale(2), 0.125f);
  EXPECT_EQ(t.v32_scale(3), std::ldexp(1.0f, -13));
  for (int d = 0; d < 128; ++d) EXPECT_EQ(int(t.code(d)), 0);
  EXPECT_EQ(int(t.code(128)), 0x7E);
  EXPECT_EQ(int(t.code(129)), 0x38);
  EXPECT_EQ(int(t.code(130)), 0x3A);
  EXPECT_EQ(int(t.code(131)), 0x02);
  EXPECT_EQ(int(t.code(132)), 0x80);
  EXPECT_EQ(int(t.code(256)), 0x7E);
  EXPECT_EQ(int(t.code(257)), 0x66);
  EXPECT_EQ(int(t.code(384)), 0x6A);
  uint16_t rope0;
  std::memcpy(&rope0, t.cache.page(0) + v32_fp8::kRopeOffset, 2);
  EXPECT_EQ(rope0, float_to_bf16(2.0f));
  // The token fills exactly 656 bytes: nothing after it is touched.
  for (int64_t i = 656; i < 656 + CacheBuffer::kTail; ++i)
    ASSERT_EQ(int(t.cache.page(0)[i]), 0xA5) << "byte " << i;
}

TEST(Quantize, PowerOfTwoAmaxSweep) {
  for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8}) {
    for (int k = -16; k <= 12; ++k) {
      SCOPED_TRACE(std::string(kv_format_name(f)) + " k=" + std::to_string(k));
      OneToken t(f);
      const float amax = std::ldexp(448.0f, k);
      t.set(5, amax);
      t.set(6, -amax / 2);
      ASSERT_NO_THROW(t.run());
      const int e = std::max(k, -13);
      if (f == KvFormat::kModel1Fp8)
        EXPECT_EQ(int(t.ue8m0(0)), e + 127);
      else
        EXPECT_EQ(t.v32_scale(0), std::ldexp(1.0f, e));
      const uint8_t want5 = k >= -13 ? 0x7E : e4m3_rne(std::ldexp(448.0, k - e));
      EXPECT_EQ(int(t.code(5)), int(want5));
      EXPECT_EQ(int(t.code(6)), int(e4m3_rne(-std::ldexp(224.0, k - e))));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Layout: every byte where kv_format.h says, nothing else touched, for many page sizes.
struct LayoutParam {
  KvFormat format;
  int64_t P;
  int64_t extra_stride;
  bool rank4;
  bool fp8_dtype;
};

class QuantizeLayout : public ::testing::TestWithParam<LayoutParam> {};

TEST_P(QuantizeLayout, BytesMatchReferenceEncoder) {
  const LayoutParam lp = GetParam();
  CacheSpec spec{lp.format, lp.P, lp.P >= 256 ? 2 : 3, lp.extra_stride, lp.rank4, lp.fp8_dtype,
                 512};
  const int d = spec.d_qk();
  std::mt19937 rng(uint32_t(lp.P * 7 + int(lp.format)));
  const int64_t n = spec.num_slots();
  // Source rows with a stride of d + 8 (last dim contiguous), NaN between rows.
  std::vector<uint16_t> src(size_t(n * (d + 8)), kBf16NaNBits);
  std::vector<uint16_t> dense(size_t(n * d));
  for (int64_t s = 0; s < n; ++s) {
    // Some tokens of larger magnitude, some tiny, some all-zero tiles.
    const float sigma = s % 5 == 1 ? 30.0f : s % 5 == 2 ? 1e-3f : 0.1f;
    for (int x = 0; x < d; ++x) {
      uint16_t v = float_to_bf16(random_value(rng, sigma, 200.0f * sigma));
      if (s % 7 == 3 && x < 64) v = 0;
      src[size_t(s * (d + 8) + x)] = v;
      dense[size_t(s * d + x)] = v;
    }
  }
  CacheBuffer got(spec, 0xA5), want(spec, 0xA5);
  want.fill(dense);
  ASSERT_NO_THROW(quantize_cache(tokens_view(src, n, d, d + 8), got.view()));
  EXPECT_TRUE(same_bytes(got, want)) << spec.describe();

  // Also explicitly: scale-row pad bytes are 0, page padding untouched.
  if (lp.format == KvFormat::kModel1Fp8) {
    for (int64_t p = 0; p < spec.num_pages; ++p) {
      for (int64_t t = 0; t < lp.P; ++t)
        ASSERT_EQ(int(got.page(p)[model1_fp8::scale_row_offset(lp.P, t) + 7]), 0);
      for (int64_t b = 584 * lp.P; b < got.page_stride_bytes(); ++b)
        ASSERT_EQ(int(got.page(p)[b]), 0xA5) << "page padding byte " << b;
    }
    EXPECT_EQ(got.page_stride_bytes() - lp.extra_stride,
              (584 * lp.P + 575) / 576 * 576);  // ceil(584 P / 576) * 576
  }
}

std::vector<LayoutParam> layout_params() {
  std::vector<LayoutParam> v;
  for (int64_t P : {1, 2, 61, 64, 256, 576}) {
    v.push_back({KvFormat::kModel1Fp8, P, 0, false, false});
    v.push_back({KvFormat::kV32Fp8, P, 0, false, false});
  }
  v.push_back({KvFormat::kModel1Fp8, 61, 1152, true, false});
  v.push_back({KvFormat::kModel1Fp8, 2, 576, false, true});
  v.push_back({KvFormat::kModel1Fp8, 64, 0, true, true});
  v.push_back({KvFormat::kV32Fp8, 61, 656, true, false});
  v.push_back({KvFormat::kV32Fp8, 2, 32, false, true});
  v.push_back({KvFormat::kBf16, 61, 0, false, false});
  v.push_back({KvFormat::kBf16, 2, 40, true, false});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Pages, QuantizeLayout, ::testing::ValuesIn(layout_params()),
                         [](const auto& info) {
                           const LayoutParam& p = info.param;
                           return std::string(kv_format_name(p.format)) + "_P" +
                                  std::to_string(p.P) + "_pad" + std::to_string(p.extra_stride) +
                                  (p.rank4 ? "_rank4" : "") + (p.fp8_dtype ? "_fp8" : "");
                         });

// ---------------------------------------------------------------------------------------------
// dequantize(quantize(x)) is exactly the rule, in bf16 and float32.
TEST(Quantize, RoundTripEqualsRule) {
  for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8}) {
    for (float sigma : {0.1f, 1e-3f, 20.0f}) {
      SCOPED_TRACE(std::string(kv_format_name(f)) + " sigma=" + std::to_string(sigma));
      CacheSpec spec{f, 61, 2, 0, false, false, 512};
      const int d = spec.d_qk();
      const int64_t n = spec.num_slots();
      std::mt19937 rng(uint32_t(sigma * 1000) + int(f));
      auto x = random_bf16(size_t(n * d), rng, sigma, 100 * sigma);
      CacheBuffer cache(spec);
      ASSERT_NO_THROW(quantize_cache(tokens_view(x, n, d), cache.view()));
      // bf16 destination contiguous; f32 destination with a row stride of d + 8.
      std::vector<uint16_t> back16(size_t(n * d), kBf16PoisonBits);
      std::vector<float> back32(size_t(n * (d + 8)), NAN);
      ASSERT_NO_THROW(dequantize_cache(cache.view(), tokens_view(back16, n, d)));
      ASSERT_NO_THROW(dequantize_cache(
          cache.view(), TensorView::strided(back32.data(), DType::kF32, {n, d}, {d + 8, 1})));
      for (int64_t s = 0; s < n; ++s)
        for (int k = d; k < d + 8; ++k)
          ASSERT_TRUE(std::isnan(back32[size_t(s * (d + 8) + k)])) << "row gap written";
      int64_t bad16 = 0, bad32 = 0;
      for (int64_t s = 0; s < n; ++s) {
        const auto want = rule_dequantized(x.data() + s * d, f);
        for (int k = 0; k < d; ++k) {
          const size_t i = size_t(s * d + k);
          const size_t i32 = size_t(s * (d + 8) + k);
          const bool ok16 = double(bf16_to_float(back16[i])) == want[k];
          const bool ok32 = double(back32[i32]) == want[k];
          if ((!ok16 || !ok32) && bad16 + bad32 == 0)
            ADD_FAILURE() << "first mismatch slot " << s << " dim " << k << ": want " << want[k]
                          << ", bf16 " << bf16_to_float(back16[i]) << ", f32 " << back32[i32];
          bad16 += !ok16;
          bad32 += !ok32;
        }
      }
      EXPECT_EQ(bad16, 0);
      EXPECT_EQ(bad32, 0);
    }
  }
}

TEST(Quantize, Bf16CacheIsACopy) {
  CacheSpec spec{KvFormat::kBf16, 3, 4, 10, false, false, 576};
  const int64_t n = spec.num_slots();
  std::mt19937 rng(3);
  auto x = random_bf16(size_t(n * 576), rng);
  CacheBuffer cache(spec, 0xA5), want(spec, 0xA5);
  want.fill(x);
  ASSERT_NO_THROW(quantize_cache(tokens_view(x, n, 576), cache.view()));
  EXPECT_TRUE(same_bytes(cache, want));
  std::vector<float> back(size_t(n * 576));
  ASSERT_NO_THROW(
      dequantize_cache(cache.view(), TensorView::contiguous(back.data(), DType::kF32, {n, 576})));
  for (size_t i = 0; i < back.size(); ++i) ASSERT_EQ(back[i], bf16_to_float(x[i])) << i;
}

// ---------------------------------------------------------------------------------------------
// store_tokens: negative slots skipped, other slots untouched, same bytes as quantize_cache.
class StoreTokens : public ::testing::TestWithParam<KvFormat> {};

TEST_P(StoreTokens, WritesOnlyNamedSlotsSkippingNegative) {
  CacheSpec spec{GetParam(), 61, 3, 0, false, false, 512};
  const int d = spec.d_qk();
  std::mt19937 rng(11);
  const int32_t slots_in[] = {5, -1, 183 - 1, INT_MIN, 60, 61, -7, 0, 100};
  const int64_t n = 9;
  std::vector<int32_t> slots(slots_in, slots_in + n);
  // Token rows with a stride of d + 4 (last dim contiguous).
  auto tokens = random_bf16(size_t(n * (d + 4)), rng, 0.5f, 4.0f);
  CacheBuffer got(spec, 0x5A), want(spec, 0x5A);
  for (int64_t r = 0; r < n; ++r)
    if (slots[r] >= 0) want.write_token(slots[r], tokens.data() + r * (d + 4));
  ASSERT_NO_THROW(store_tokens(tokens_view(tokens, n, d, d + 4),
                               TensorView::contiguous(slots.data(), DType::kI32, {n}),
                               got.view()));
  EXPECT_TRUE(same_bytes(got, want));
}

TEST_P(StoreTokens, EqualsQuantizeCacheBytes) {
  for (int64_t P : {1, 2, 61, 64}) {
    CacheSpec spec{GetParam(), P, P == 1 ? 5 : 3, 0, false, false, 576};
    SCOPED_TRACE(spec.describe());
    const int d = spec.d_qk();
    const int64_t n = spec.num_slots();
    std::mt19937 rng(static_cast<uint32_t>(P));
    auto x = random_bf16(size_t(n * d), rng);
    // Store in a shuffled order, with padding rows (slot -1) mixed in.
    std::vector<int32_t> order(static_cast<size_t>(n));
    for (int64_t s = 0; s < n; ++s) order[s] = int32_t(s);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<int32_t> slots;
    std::vector<uint16_t> rows;
    for (int64_t r = 0; r < n; ++r) {
      if (r % 4 == 0) {
        slots.push_back(-1);
        auto junk = random_bf16(size_t(d), rng, 50.0f, 400.0f);
        rows.insert(rows.end(), junk.begin(), junk.end());
      }
      slots.push_back(order[r]);
      rows.insert(rows.end(), x.begin() + order[r] * d, x.begin() + (order[r] + 1) * d);
    }
    const int64_t m = int64_t(slots.size());
    CacheBuffer by_store(spec, 0xC3), by_quantize(spec, 0xC3);
    ASSERT_NO_THROW(store_tokens(tokens_view(rows, m, d),
                                 TensorView::contiguous(slots.data(), DType::kI32, {m}),
                                 by_store.view()));
    ASSERT_NO_THROW(quantize_cache(tokens_view(x, n, d), by_quantize.view()));
    EXPECT_TRUE(same_bytes(by_store, by_quantize));
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, StoreTokens,
                         ::testing::Values(KvFormat::kModel1Fp8, KvFormat::kV32Fp8,
                                           KvFormat::kBf16),
                         [](const auto& info) { return std::string(kv_format_name(info.param)); });

}  // namespace
}  // namespace model1::test
