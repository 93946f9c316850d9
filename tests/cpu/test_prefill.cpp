// model1 CPU tests: sparse prefill (MODEL1.md section 4) against the float64 oracle.
#include <cstring>

#include "test_problems.h"

namespace model1::test {
namespace {

PrefillCase base_case(int d_qk = 512, int h_q = 16, uint32_t seed = 1) {
  PrefillCase c;
  c.d_qk = d_qk;
  c.h_q = h_q;
  c.s_q = 5;
  c.s_kv = 160;
  c.topk = 40;
  c.seed = seed;
  return c;
}

TEST(PrefillOracle, ClosedFormSingleKey) {
  // One valid key: out = K[0:512], lse = max_logits = sm_scale q.K; none: -inf / +inf / 0.
  std::mt19937 rng(3);
  auto q = random_bf16(2 * 8 * 576, rng);
  auto kv = random_bf16(10 * 576, rng);
  std::vector<int32_t> idx = {-1, 4, 10, INT_MIN, -1, 99};
  std::vector<uint16_t> out(2 * 8 * 512);
  std::vector<float> ml(16), lse(16);
  SparsePrefillArgs a;
  a.q = TensorView::contiguous(q.data(), DType::kBF16, {2, 8, 576});
  a.kv = TensorView::contiguous(kv.data(), DType::kBF16, {10, 576});
  a.indices = TensorView::contiguous(idx.data(), DType::kI32, {2, 3});
  const auto ref = oracle::prefill(a);
  const double scale = 1.0 / std::sqrt(576.0);
  for (int h = 0; h < 8; ++h) {
    double s = 0;
    for (int d = 0; d < 576; ++d) s += double(bf16_to_float(q[h * 576 + d])) * bf16_to_float(kv[4 * 576 + d]);
    EXPECT_NEAR(ref.lse[h], s * scale, 1e-12);
    EXPECT_NEAR(ref.max_logits[h], s * scale, 1e-12);
    EXPECT_EQ(ref.lse[8 + h], kInf);
    EXPECT_EQ(ref.max_logits[8 + h], -kInf);
    for (int d = 0; d < 512; ++d) {
      EXPECT_EQ(ref.out[h * 512 + d], double(bf16_to_float(kv[4 * 576 + d])));
      EXPECT_EQ(ref.out[(8 + h) * 512 + d], 0.0);
    }
  }
}

TEST(Prefill, BothHeadDims) {
  for (int d : {512, 576}) run_prefill_case(base_case(d, 16, uint32_t(d)));
}

TEST(Prefill, EveryHeadCount) {
  for (int h_q : {8, 16, 32, 64, 128}) {
    for (int d : {512, 576}) {
      PrefillCase c = base_case(d, h_q, uint32_t(h_q + d));
      c.s_q = 3;
      c.topk = h_q == 128 ? 16 : 32;
      run_prefill_case(c);
    }
  }
}

TEST(Prefill, TopkLengthZeroPartialFullAboveNegative) {
  for (int d : {512, 576}) {
    PrefillCase c = base_case(d, 32, 10);
    c.s_q = 6;
    c.topk_length = {0, 17, 40, 90, -3, 1};
    run_prefill_case(c);
  }
}

TEST(Prefill, AttentionSink) {
  for (Sink s : {Sink::kFinite, Sink::kPosInf, Sink::kNegInf, Sink::kMixed}) {
    PrefillCase c = base_case(512, 64, 20 + int(s));
    c.sink = s;
    c.all_invalid = {2};
    run_prefill_case(c);
  }
}

TEST(Prefill, EachInvalidIndexFlavour) {
  for (Bad bad : all_bad()) {
    PrefillCase c = base_case(576, 16, 30 + int(bad));
    c.gen.invalid_frac = 0.4;
    c.gen.flavours = {bad};
    c.all_invalid = {4};
    run_prefill_case(c);
  }
}

TEST(Prefill, AllInvalidRows) {
  PrefillCase c = base_case(512, 32, 40);
  c.all_invalid = {0, 3};
  c.gen.flavours = all_bad();
  c.topk_length = {40, 40, 0, 40, -5};
  c.sink = Sink::kFinite;
  const auto ref = run_prefill_case(c);
  for (int j : {0, 2, 3, 4})
    for (int h = 0; h < c.h_q; ++h) {
      EXPECT_EQ(ref.max_logits[j * c.h_q + h], -kInf);
      EXPECT_EQ(ref.lse[j * c.h_q + h], kInf);
    }
}

TEST(Prefill, DuplicatesAndNaNInUnreferencedRows) {
  PrefillCase c = base_case(512, 64, 50);
  c.gen.dup_frac = 0.5;
  c.used_frac = 0.1;
  c.topk_length = {40, 3, 20, 39, 0};
  run_prefill_case(c);
  PrefillCase one = base_case(576, 16, 51);
  one.used_frac = 1e-9;  // every candidate is the same row
  run_prefill_case(one);
}

TEST(Prefill, NonContiguousViews) {
  for (int d : {512, 576}) {
    PrefillCase c = base_case(d, 32, 60);
    c.strided_q = true;
    c.strided_kv = true;
    c.strided_indices = true;
    c.topk_length = {40, 12, 0, 40, 7};
    run_prefill_case(c);
    c.rank3_views = true;
    c.seed = 61;
    run_prefill_case(c);
  }
}

TEST(Prefill, LargerMagnitudesAndExplicitScale) {
  for (float sigma : {1.0f, 4.0f}) {
    PrefillCase c = base_case(512, 64, 70);
    c.sigma = sigma;
    c.clip = 10 * sigma;
    c.sink = Sink::kFinite;
    run_prefill_case(c);
  }
  PrefillCase c = base_case(576, 16, 71);
  c.sm_scale = 0.2f;
  run_prefill_case(c);
}

TEST(Prefill, ExtremeLogits) {
  for (int d : {512, 576}) {
    PrefillCase c = base_case(d, 16, 75);
    c.sigma = 20.0f;
    c.clip = 300.0f;
    c.sink = Sink::kFinite;
    run_prefill_case(c);
  }
}

TEST(Prefill, LongerSequence) {
  PrefillCase c = base_case(512, 64, 80);
  c.s_q = 33;
  c.s_kv = 600;
  c.topk = 128;
  c.gen.invalid_frac = 0.1;
  c.gen.flavours = all_bad();
  run_prefill_case(c);
}

TEST(Prefill, RepeatedRunsAreBitwiseEqual) {
  PrefillCase c = base_case(512, 64, 90);
  c.sink = Sink::kFinite;
  c.topk_length = {40, 12, 0, 40, 7};
  PrefillProblem p(c);
  p.poison_outputs();
  ASSERT_NO_THROW(sparse_prefill(p.args()));
  const auto out1 = p.out();
  const auto ml1 = p.max_logits();
  const auto lse1 = p.lse();
  p.poison_outputs();
  ASSERT_NO_THROW(sparse_prefill(p.args()));
  EXPECT_EQ(std::memcmp(out1.data(), p.out().data(), out1.size() * 2), 0);
  EXPECT_EQ(std::memcmp(ml1.data(), p.max_logits().data(), ml1.size() * 4), 0);
  EXPECT_EQ(std::memcmp(lse1.data(), p.lse().data(), lse1.size() * 4), 0);
}

TEST(Prefill, KernelNameOnTheCpu) {
  PrefillCase c = base_case(512, 64, 90);
  PrefillProblem p(c);
  p.poison_outputs();
  EXPECT_EQ(prefill_kernel_name(p.args()), "cpu");
  // The same validation as sparse_prefill.
  SparsePrefillArgs bad = p.args();
  bad.d_v = 256;
  try {
    prefill_kernel_name(bad);
    FAIL() << "no error for d_v 256";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "d_v");
  }
}

}  // namespace
}  // namespace model1::test
