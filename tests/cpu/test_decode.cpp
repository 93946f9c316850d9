// model1 CPU tests: sparse decode (MODEL1.md section 3) against the float64 oracle, plan reuse,
// determinism and batch invariance.
#include <cstring>

#include "test_problems.h"

namespace model1::test {
namespace {

CacheSpec cache_spec(KvFormat f, int64_t P = 64, int64_t pages = 4, int bf16_d_qk = 512) {
  CacheSpec s;
  s.format = f;
  s.page_size = P;
  s.num_pages = pages;
  s.bf16_d_qk = bf16_d_qk;
  return s;
}

DecodeCase base_case(const CacheSpec& kv, int h_q = 16, uint32_t seed = 1) {
  DecodeCase c;
  c.kv = kv;
  c.b = 3;
  c.s_q = 2;
  c.h_q = h_q;
  c.topk = 48;
  c.seed = seed;
  return c;
}

void add_extra(DecodeCase& c, const CacheSpec& extra, int extra_topk) {
  c.extra = true;
  c.extra_kv = extra;
  c.extra_topk = extra_topk;
}

// The four cache flavours decode accepts (MODEL1, V3.2, bf16 with d_qk 512 and 576).
std::vector<CacheSpec> all_formats(int64_t P = 64, int64_t pages = 4) {
  return {cache_spec(KvFormat::kModel1Fp8, P, pages), cache_spec(KvFormat::kV32Fp8, P, pages),
          cache_spec(KvFormat::kBf16, P, pages, 512), cache_spec(KvFormat::kBf16, P, pages, 576)};
}

// ---------------------------------------------------------------------------------------------
// The oracle itself on cases with closed-form answers.
TEST(Oracle, DequantizeTokenMatchesRule) {
  for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8}) {
    CacheSpec spec = cache_spec(f, 3, 2);
    spec.rank4 = f == KvFormat::kV32Fp8;
    CacheBuffer cache(spec);
    std::mt19937 rng(5);
    const int d = spec.d_qk();
    auto x = random_bf16(size_t(spec.num_slots() * d), rng, 2.0f, 50.0f);
    cache.fill(x);
    for (int64_t s = 0; s < spec.num_slots(); ++s) {
      const auto got = oracle::dequantize_token(cache.view(), s, d);
      const auto want = rule_dequantized(x.data() + s * d, f);
      for (int k = 0; k < d; ++k) ASSERT_EQ(got[k], want[k]) << "slot " << s << " dim " << k;
    }
  }
}

TEST(Oracle, ClosedFormSingleAndRepeatedKey) {
  // One bf16 key named once, then three times: out = K[0:512], lse = s (+ ln 3).
  CacheSpec spec = cache_spec(KvFormat::kBf16, 4, 1, 576);
  CacheBuffer cache(spec);
  std::mt19937 rng(9);
  auto x = random_bf16(size_t(4 * 576), rng);
  cache.fill(x);
  auto q = random_bf16(8 * 576, rng);
  std::vector<int32_t> idx = {2, -1, 7, 2, 2, 2};  // two requests of topk 3 (s_q 1)
  std::vector<float> sink(8, -std::numeric_limits<float>::infinity());
  sink[1] = 0.5f;
  std::vector<uint16_t> out(2 * 8 * 512);
  std::vector<float> lse(2 * 8);
  SparseDecodeArgs a;
  a.q = TensorView::strided(q.data(), DType::kBF16, {2, 1, 8, 576}, {0, 8 * 576, 576, 1});
  a.kv = cache.view();
  a.indices = TensorView::contiguous(idx.data(), DType::kI32, {2, 1, 3});
  a.attn_sink = TensorView::contiguous(sink.data(), DType::kF32, {8});
  a.sm_scale = 0.25f;
  const auto ref = oracle::decode(a);
  for (int h = 0; h < 8; ++h) {
    double s = 0;
    for (int d = 0; d < 576; ++d) s += double(bf16_to_float(q[h * 576 + d])) * bf16_to_float(x[2 * 576 + d]);
    s *= 0.25;
    EXPECT_NEAR(ref.lse[h], s, 1e-12);
    EXPECT_NEAR(ref.lse[8 + h], s + std::log(3.0), 1e-12);
    const double factor = h == 1 ? 1.0 / (1.0 + std::exp(0.5 - s)) : 1.0;
    const double factor2 = h == 1 ? 1.0 / (1.0 + std::exp(0.5 - s - std::log(3.0))) : 1.0;
    for (int d = 0; d < 512; ++d) {
      EXPECT_NEAR(ref.out[h * 512 + d], factor * bf16_to_float(x[2 * 576 + d]), 1e-12);
      EXPECT_NEAR(ref.out[(8 + h) * 512 + d], factor2 * bf16_to_float(x[2 * 576 + d]), 1e-12);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Against the oracle.
TEST(Decode, EveryFormat) {
  for (const CacheSpec& kv : all_formats()) run_decode_case(base_case(kv));
  for (const CacheSpec& kv : all_formats(61, 2)) {  // topk 1 on both caches
    DecodeCase c = base_case(kv, 64, 2);
    c.topk = 1;
    CacheSpec extra = kv;
    extra.page_size = 1;
    extra.num_pages = 9;
    add_extra(c, extra, 1);
    run_decode_case(c);
  }
}

TEST(Decode, EveryHeadCount) {
  for (int h_q : {8, 16, 32, 64, 128}) {
    for (const CacheSpec& kv : all_formats(16, 6)) {
      DecodeCase c = base_case(kv, h_q, uint32_t(h_q));
      c.b = 2;
      c.s_q = 1;
      c.topk = h_q == 128 ? 12 : 24;
      run_decode_case(c);
    }
  }
}

TEST(Decode, QueryTokensPerRequest) {
  for (int s_q : {1, 2, 3}) {
    for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8}) {
      DecodeCase c = base_case(cache_spec(f, 64, 3), 64, uint32_t(10 + s_q));
      c.s_q = s_q;
      c.topk = 40;
      c.topk_length = {40, 13, 27};
      run_decode_case(c);
    }
  }
}

TEST(Decode, TopkLengthZeroPartialFullAboveNegative) {
  for (const CacheSpec& kv : all_formats(61, 3)) {
    DecodeCase c = base_case(kv, 16, 21);
    c.b = 6;
    c.topk = 40;
    c.topk_length = {0, 17, 40, 90, -3, 1};
    run_decode_case(c);
  }
}

TEST(Decode, TopkLengthsOnBothCaches) {
  for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8}) {
    DecodeCase c = base_case(cache_spec(f, 64, 3), 32, 22);
    c.b = 6;
    c.topk = 32;
    c.topk_length = {32, 0, 5, -1, 1000, 31};
    add_extra(c, cache_spec(f, 2, 40), 56);
    c.extra_topk_length = {5, 56, 0, -7, 33, 1000};
    run_decode_case(c);
  }
}

TEST(Decode, ExtraCacheWithItsOwnPageSize) {
  struct Pair {
    CacheSpec main, extra;
    int extra_topk;
  };
  CacheSpec m61 = cache_spec(KvFormat::kModel1Fp8, 61, 2);
  CacheSpec e1 = cache_spec(KvFormat::kModel1Fp8, 1, 90);
  e1.rank4 = true;
  CacheSpec e2 = cache_spec(KvFormat::kModel1Fp8, 2, 50);
  e2.extra_stride = 576;
  CacheSpec v256 = cache_spec(KvFormat::kV32Fp8, 256, 1);
  CacheSpec v2 = cache_spec(KvFormat::kV32Fp8, 2, 50);
  v2.fp8_dtype = true;
  const Pair pairs[] = {{cache_spec(KvFormat::kModel1Fp8, 64, 3), e2, 64},
                        {m61, e1, 40},
                        {v256, v2, 72},
                        {cache_spec(KvFormat::kBf16, 64, 2), cache_spec(KvFormat::kBf16, 3, 20), 20}};
  uint32_t seed = 30;
  for (const Pair& pr : pairs) {
    DecodeCase c = base_case(pr.main, 64, seed++);
    add_extra(c, pr.extra, pr.extra_topk);
    run_decode_case(c);
  }
}

TEST(Decode, ExtraCacheAloneOrMainAlone) {
  // Request 0: main all invalid, extra valid. Request 1: the reverse. Request 2: neither.
  DecodeCase c = base_case(cache_spec(KvFormat::kModel1Fp8, 64, 2), 64, 40);
  add_extra(c, cache_spec(KvFormat::kModel1Fp8, 2, 30), 24);
  c.all_invalid = {0, 2};
  c.extra_all_invalid = {1, 2};
  c.gen.flavours = all_bad();
  c.sink = Sink::kFinite;
  const auto ref = run_decode_case(c);
  // Request 2 has no valid key: out 0, lse +inf (checked against the oracle above).
  for (int j = 0; j < c.s_q; ++j)
    for (int h = 0; h < c.h_q; ++h) EXPECT_EQ(ref.lse[(2 * c.s_q + j) * c.h_q + h], kInf);
}

TEST(Decode, AttentionSink) {
  for (Sink s : {Sink::kFinite, Sink::kPosInf, Sink::kNegInf, Sink::kMixed}) {
    for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8}) {
      DecodeCase c = base_case(cache_spec(f, 64, 3), 32, 50 + int(s));
      c.sink = s;
      c.topk_length = {48, 0, 7};
      run_decode_case(c);
    }
  }
}

TEST(Decode, EachInvalidIndexFlavour) {
  for (Bad bad : all_bad()) {
    for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8}) {
      DecodeCase c = base_case(cache_spec(f, 61, 3), 16, 60 + int(bad));
      c.gen.invalid_frac = 0.35;
      c.gen.flavours = {bad};
      add_extra(c, cache_spec(f, 2, 20), 16);
      run_decode_case(c);
    }
  }
}

TEST(Decode, AllInvalidRows) {
  for (const CacheSpec& kv : all_formats(64, 2)) {
    DecodeCase c = base_case(kv, 32, 70);
    c.b = 4;
    c.all_invalid = {1, 3};
    c.gen.flavours = all_bad();
    c.gen.invalid_frac = 0.2;
    c.sink = Sink::kMixed;
    run_decode_case(c);
  }
  // Every flavour alone fills a whole request; topk_length 0 empties another.
  for (Bad bad : all_bad()) {
    DecodeCase c = base_case(cache_spec(KvFormat::kModel1Fp8, 2, 8), 8, 75 + int(bad));
    c.b = 2;
    c.topk = 5;
    c.all_invalid = {0};
    c.gen.flavours = {bad};
    c.topk_length = {5, 0};
    run_decode_case(c);
  }
}

TEST(Decode, DuplicateIndices) {
  for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8, KvFormat::kBf16}) {
    DecodeCase c = base_case(cache_spec(f, 64, 2), 16, 80);
    c.gen.dup_frac = 0.6;
    run_decode_case(c);
    // A single usable slot: every candidate is the same key.
    DecodeCase one = base_case(cache_spec(f, 2, 6), 16, 81);
    one.used_frac = 1e-9;
    one.topk = 9;
    run_decode_case(one);
  }
}

TEST(Decode, NaNInUnreferencedSlotsAndPastTopkLength) {
  // Few referenced slots; the entries past topk_length name NaN-filled slots on purpose.
  for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8, KvFormat::kBf16}) {
    DecodeCase c = base_case(cache_spec(f, 64, 3), 64, 90);
    c.used_frac = 0.15;
    c.topk_length = {3, 0, 20};
    add_extra(c, cache_spec(f, 1, 64), 32);
    c.extra_topk_length = {32, 4, -2};
    run_decode_case(c);
  }
}

TEST(Decode, NonContiguousQueryAndIndices) {
  for (const CacheSpec& kv : all_formats(64, 3)) {
    DecodeCase c = base_case(kv, 32, 100);
    c.strided_q = true;
    c.strided_indices = true;
    c.s_q = 3;
    CacheSpec extra = kv;
    extra.page_size = 2;
    extra.num_pages = 30;
    add_extra(c, extra, 20);
    c.topk_length = {48, 11, 0};
    run_decode_case(c);
  }
}

TEST(Decode, PageSizes) {
  for (int64_t P : {1, 2, 61, 64, 256, 576}) {
    for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8}) {
      CacheSpec kv = cache_spec(f, P, P >= 256 ? 1 : P == 1 ? 150 : 3);
      kv.rank4 = P % 2 == 0;
      kv.extra_stride = P == 61 ? (f == KvFormat::kModel1Fp8 ? 576 : 100) : 0;
      DecodeCase c = base_case(kv, 16, uint32_t(110 + P));
      c.topk = 40;
      run_decode_case(c);
    }
  }
}

TEST(Decode, LargerMagnitudes) {
  for (float sigma : {1.0f, 4.0f}) {
    for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8, KvFormat::kBf16}) {
      DecodeCase c = base_case(cache_spec(f, 64, 3), 64, 120);
      c.sigma = sigma;
      c.clip = 10 * sigma;
      c.sink = Sink::kFinite;
      run_decode_case(c);
    }
  }
}

TEST(Decode, ExtremeLogits) {
  // Logits in the hundreds: exp() overflows float32 unless the softmax subtracts its max.
  for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8, KvFormat::kBf16}) {
    DecodeCase c = base_case(cache_spec(f, 64, 3), 16, 125);
    c.sigma = 20.0f;
    c.clip = 300.0f;
    c.sink = Sink::kFinite;
    add_extra(c, cache_spec(f, 2, 20), 16);
    run_decode_case(c);
  }
}

TEST(Decode, OddBatchSizes) {
  for (int b : {1, 37}) {
    DecodeCase c = base_case(cache_spec(KvFormat::kModel1Fp8, 61, 3), 8, uint32_t(126 + b));
    c.b = b;
    c.s_q = 1;
    c.topk = 16;
    c.topk_length.clear();
    for (int i = 0; i < b; ++i) c.topk_length.push_back((i * 7) % 21 - 2);
    run_decode_case(c);
  }
}

TEST(Decode, SinglePageCacheWithAnyPageStride) {
  // With one page the page stride addresses nothing (PyTorch may report anything for it).
  for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8}) {
    DecodeCase c = base_case(cache_spec(f, 64, 1), 16, 128);
    DecodeProblem p(c);
    SparseDecodeArgs a = p.args();
    a.kv.data.strides[0] = 0;
    const auto ref = oracle::decode(a);
    p.poison_outputs();
    ASSERT_NO_THROW(sparse_decode(a));
    EXPECT_TRUE(check_decode(p.out(), p.lse(), ref)) << kv_format_name(f);
  }
}

TEST(Decode, ExplicitSmScale) {
  for (float scale : {0.3f, 0.01f}) {
    DecodeCase c = base_case(cache_spec(KvFormat::kModel1Fp8, 64, 3), 16, 130);
    c.sm_scale = scale;
    add_extra(c, cache_spec(KvFormat::kModel1Fp8, 2, 20), 8);
    run_decode_case(c);
  }
}

// ---------------------------------------------------------------------------------------------
// Plans.
bool same_bits(const void* a, const void* b, size_t bytes) { return std::memcmp(a, b, bytes) == 0; }

DecodeCase plan_case(uint32_t seed) {
  DecodeCase c = base_case(cache_spec(KvFormat::kModel1Fp8, 64, 3), 32, seed);
  c.topk_length = {48, 20, 0};
  add_extra(c, cache_spec(KvFormat::kModel1Fp8, 2, 30), 24);
  c.extra_topk_length = {24, 3, 24};
  c.sink = Sink::kFinite;
  return c;
}

TEST(Plan, ReuseMatchesConvenienceOverloadBitwise) {
  DecodeProblem p(plan_case(140));
  DecodePlan plan;
  ASSERT_NO_THROW(plan = plan_decode(p.args()));
  ASSERT_TRUE(plan.valid());
  p.poison_outputs();
  ASSERT_NO_THROW(sparse_decode(p.args(), plan));
  const auto out1 = p.out();
  const auto lse1 = p.lse();
  EXPECT_TRUE(check_decode(out1, lse1, oracle::decode(p.args())));
  p.poison_outputs();
  ASSERT_NO_THROW(sparse_decode(p.args()));
  EXPECT_TRUE(same_bits(out1.data(), p.out().data(), out1.size() * 2));
  EXPECT_TRUE(same_bits(lse1.data(), p.lse().data(), lse1.size() * 4));
}

TEST(Plan, ReusedWithNewValuesOfTheSameShapes) {
  DecodeProblem a(plan_case(141));
  DecodePlan plan;
  ASSERT_NO_THROW(plan = plan_decode(a.args()));
  // Same shapes, other data, other lengths, other indices: the plan serves every layer.
  DecodeCase other = plan_case(142);
  other.topk_length = {7, 48, 30};
  other.extra_topk_length = {0, 24, 11};
  DecodeProblem b(other);
  for (DecodeProblem* p : {&b, &a}) {
    p->poison_outputs();
    ASSERT_NO_THROW(sparse_decode(p->args(), plan));
    EXPECT_TRUE(check_decode(p->out(), p->lse(), oracle::decode(p->args())));
  }
}

TEST(Plan, SplitKeysOptionIsValidatedAndReported) {
  DecodeProblem p(plan_case(143));
  DecodePlan plan;
  ASSERT_NO_THROW(plan = plan_decode(p.args()));
  EXPECT_EQ(plan.split_keys(), kDefaultSplitKeys);  // the CPU backend ignores the variable
  EXPECT_EQ(DecodePlan().split_keys(), 0);
  DecodeOptions options;
  options.split_keys = 192;
  ASSERT_NO_THROW(plan = plan_decode(p.args(), options));
  EXPECT_EQ(plan.split_keys(), 192);
  // The CPU backend has no splits: any legal split size gives the same bits.
  p.poison_outputs();
  ASSERT_NO_THROW(sparse_decode(p.args(), plan));
  const auto out1 = p.out();
  p.poison_outputs();
  ASSERT_NO_THROW(sparse_decode(p.args()));
  EXPECT_TRUE(same_bits(out1.data(), p.out().data(), out1.size() * 2));
  // The convenience overload with options plans the same way.
  options.split_keys = 640;
  p.poison_outputs();
  ASSERT_NO_THROW(sparse_decode(p.args(), options));
  EXPECT_TRUE(same_bits(out1.data(), p.out().data(), out1.size() * 2));
  options.split_keys = 100;
  p.poison_outputs();
  const auto poisoned = p.out();
  EXPECT_THROW(sparse_decode(p.args(), options), Error);
  EXPECT_TRUE(same_bits(poisoned.data(), p.out().data(), poisoned.size() * 2));  // untouched
  // kLatencySplitKeys: accepted; the CPU backend (no splits) resolves it to the default.
  options.split_keys = kLatencySplitKeys;
  ASSERT_NO_THROW(plan = plan_decode(p.args(), options));
  EXPECT_EQ(plan.split_keys(), kDefaultSplitKeys);
  for (int bad : {-2, -64, 1, 65, 16448, 1 << 30}) {
    SCOPED_TRACE("split_keys=" + std::to_string(bad));
    options.split_keys = bad;
    try {
      (void)plan_decode(p.args(), options);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), "options.split_keys");
      EXPECT_EQ(e.actual(), std::to_string(bad));
      EXPECT_NE(std::string(e.what()).find("multiple of 64"), std::string::npos) << e.what();
    }
  }
}

// The latency rule, on the shapes it was measured on (H200, 132 SMs; docs/PERF.md, ninth
// session: each of these was the fastest split size measured, or within 7% of it).
TEST(Plan, LatencySplitKeys) {
  struct Case {
    int64_t b, s_q, h_q, keys;
    int sms, want;
  };
  const Case cases[] = {
      {2, 2, 64, 640, 132, 64},      // model1-c1 b = 2: 40 CTAs
      {8, 2, 64, 640, 132, 128},     // c1 b = 8
      {16, 2, 64, 640, 132, 192},    // c1 b = 16
      {32, 2, 64, 640, 132, 320},    // c1 b = 32
      {64, 2, 64, 640, 132, 640},    // c1 b = 64: one split a request, 128 CTAs
      {128, 2, 64, 640, 132, kDefaultSplitKeys},  // fills the GPU: the default
      {2, 2, 128, 1152, 132, 128},   // model1-c2 b = 2: 64-key splits would hit the 16-split cap
      {4, 2, 128, 1152, 132, 192},   // c2 b = 4
      {16, 2, 128, 1152, 132, 576},  // c2 b = 16
      {64, 2, 128, 1152, 132, kDefaultSplitKeys},
      {8, 2, 128, 2048, 132, 512},   // v32-h128 b = 8
      {16, 2, 128, 2048, 132, 1024}, // v32-h128 b = 16 (512 would take two waves)
      {2, 2, 64, 16384, 132, 1024},  // 256 chunks: at most 16 splits
      {2, 2, 16, 640, 132, 64},      // small heads: one CTA a split
      {1, 1, 64, 100, 132, 64},      // a partial chunk
      {2, 2, 64, 640, 8, 320},       // a small GPU
      {1, 1, 8, 1, 1, 64},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("b=" + std::to_string(c.b) + " s_q=" + std::to_string(c.s_q) + " h_q=" + std::to_string(c.h_q) +
                 " keys=" + std::to_string(c.keys) + " sms=" + std::to_string(c.sms));
    EXPECT_EQ(latency_split_keys(c.b, c.s_q, c.h_q, c.keys, c.sms), c.want);
  }
  const auto expect_error = [](const char* argument, auto&& call) {
    try {
      (void)call();
      ADD_FAILURE() << argument << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), argument) << e.what();
    }
  };
  expect_error("b", [] { return latency_split_keys(0, 1, 64, 640, 132); });
  expect_error("s_q", [] { return latency_split_keys(1, 0, 64, 640, 132); });
  expect_error("h_q", [] { return latency_split_keys(1, 1, -64, 640, 132); });
  expect_error("keys_per_request", [] { return latency_split_keys(1, 1, 64, 0, 132); });
  expect_error("num_sms", [] { return latency_split_keys(1, 1, 64, 640, 0); });
}

void expect_plan_error(DecodeProblem& p, const DecodePlan& plan, const std::string& what) {
  SCOPED_TRACE(what);
  p.poison_outputs();
  const auto out_before = p.out();
  const auto lse_before = p.lse();
  try {
    sparse_decode(p.args(), plan);
    ADD_FAILURE() << "no error for a plan used with " << what;
  } catch (const Error& e) {
    EXPECT_TRUE(e.argument() == "plan" || e.argument().rfind("plan.", 0) == 0)
        << "argument " << e.argument() << " (" << e.what() << ")";
    EXPECT_FALSE(e.expected().empty());
    EXPECT_FALSE(e.actual().empty());
  }
  EXPECT_TRUE(same_bits(out_before.data(), p.out().data(), out_before.size() * 2));
  EXPECT_TRUE(same_bits(lse_before.data(), p.lse().data(), lse_before.size() * 4));
}

TEST(Plan, MismatchedShapesAreRejected) {
  DecodeProblem made_for(plan_case(150));
  DecodePlan plan;
  ASSERT_NO_THROW(plan = plan_decode(made_for.args()));
  {
    DecodeCase c = plan_case(151);
    c.b = 4;
    c.topk_length.push_back(5);
    c.extra_topk_length.push_back(5);
    DecodeProblem p(c);
    expect_plan_error(p, plan, "another batch size");
  }
  {
    DecodeCase c = plan_case(152);
    c.s_q = 1;
    DecodeProblem p(c);
    expect_plan_error(p, plan, "another s_q");
  }
  {
    DecodeCase c = plan_case(153);
    c.h_q = 64;
    DecodeProblem p(c);
    expect_plan_error(p, plan, "another h_q");
  }
  {
    DecodeCase c = plan_case(154);
    c.topk = 40;
    c.topk_length = {40, 20, 0};
    DecodeProblem p(c);
    expect_plan_error(p, plan, "another topk");
  }
  {
    DecodeCase c = plan_case(155);
    c.extra_topk = 20;
    c.extra_topk_length = {20, 3, 20};
    DecodeProblem p(c);
    expect_plan_error(p, plan, "another extra_topk");
  }
  {
    DecodeCase c = plan_case(156);
    c.extra = false;
    c.extra_topk_length.clear();
    DecodeProblem p(c);
    expect_plan_error(p, plan, "no extra cache");
  }
  {
    DecodeCase c = plan_case(157);
    c.topk_length.clear();
    DecodeProblem p(c);
    expect_plan_error(p, plan, "no topk_length");
  }
  {
    DecodeCase c = plan_case(158);
    c.kv = cache_spec(KvFormat::kV32Fp8, 64, 3);
    c.extra_kv = cache_spec(KvFormat::kV32Fp8, 2, 30);
    DecodeProblem p(c);
    expect_plan_error(p, plan, "another format");
  }
  {
    DecodeProblem p(plan_case(159));
    const DecodePlan empty;
    expect_plan_error(p, empty, "a default-constructed plan");
  }
}

// ---------------------------------------------------------------------------------------------
// Determinism and batch invariance.
TEST(Decode, RepeatedRunsAreBitwiseEqual) {
  for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8}) {
    DecodeCase c = plan_case(160);
    c.kv = cache_spec(f, 64, 3);
    c.extra_kv = cache_spec(f, 2, 30);
    c.b = 5;
    c.h_q = 64;
    c.topk_length = {48, 20, 0, 33, 48};
    c.extra_topk_length = {24, 3, 24, 0, 17};
    DecodeProblem p(c);
    p.poison_outputs();
    ASSERT_NO_THROW(sparse_decode(p.args()));
    const auto out1 = p.out();
    const auto lse1 = p.lse();
    for (int rep = 0; rep < 2; ++rep) {
      p.poison_outputs();
      ASSERT_NO_THROW(sparse_decode(p.args()));
      EXPECT_TRUE(same_bits(out1.data(), p.out().data(), out1.size() * 2)) << "rep " << rep;
      EXPECT_TRUE(same_bits(lse1.data(), p.lse().data(), lse1.size() * 4)) << "rep " << rep;
    }
  }
}

// Narrows a [b, ...] view to request i.
TensorView request_slice(TensorView t, int64_t i, int64_t elem_bytes) {
  if (!t.defined()) return t;
  t.data = static_cast<uint8_t*>(t.data) + i * t.strides[0] * elem_bytes;
  t.shape[0] = 1;
  return t;
}

TEST(Decode, BatchInvariance) {
  for (KvFormat f : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8}) {
    DecodeCase c = plan_case(170);
    c.kv = cache_spec(f, 64, 4);
    c.extra_kv = cache_spec(f, 2, 60);
    c.b = 7;
    c.h_q = 64;
    c.topk = 64;
    c.extra_topk = 96;
    c.topk_length = {64, 1, 0, 40, 64, 17, 63};
    c.extra_topk_length = {96, 0, 50, 96, 3, 80, 1};
    c.strided_q = true;
    c.all_invalid = {4};
    DecodeProblem p(c);
    p.poison_outputs();
    ASSERT_NO_THROW(sparse_decode(p.args()));
    const int64_t row_out = int64_t(c.s_q) * c.h_q * 512, row_lse = int64_t(c.s_q) * c.h_q;
    for (int64_t i = 0; i < c.b; ++i) {
      SparseDecodeArgs a = p.args();
      a.q = request_slice(a.q, i, 2);
      a.indices = request_slice(a.indices, i, 4);
      a.topk_length = request_slice(a.topk_length, i, 4);
      a.extra_indices = request_slice(a.extra_indices, i, 4);
      a.extra_topk_length = request_slice(a.extra_topk_length, i, 4);
      std::vector<uint16_t> out(size_t(row_out), kBf16PoisonBits);
      std::vector<float> lse(size_t(row_lse), NAN);
      a.out = TensorView::contiguous(out.data(), DType::kBF16, {1, c.s_q, c.h_q, 512});
      a.lse = TensorView::contiguous(lse.data(), DType::kF32, {1, c.s_q, c.h_q});
      ASSERT_NO_THROW(sparse_decode(a));
      EXPECT_TRUE(same_bits(out.data(), p.out().data() + i * row_out, out.size() * 2))
          << kv_format_name(f) << " request " << i;
      EXPECT_TRUE(same_bits(lse.data(), p.lse().data() + i * row_lse, lse.size() * 4))
          << kv_format_name(f) << " request " << i;
    }
  }
}

}  // namespace
}  // namespace model1::test
