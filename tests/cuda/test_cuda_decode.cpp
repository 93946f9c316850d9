// model1 GPU tests: sparse decode on CUDA against the CPU backend (same inputs copied to the
// device) on a sampled hostile matrix, plus bitwise repeatability, batch invariance and
// CUDA-graph capture / replay. Skipped where no GPU exists.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cuda/common/decode_params.h"
#include "cuda_test_util.h"
#include "model1/model1.h"
#include "scoped_env.h"

namespace model1::cuda_test {
namespace {

using test_env::ScopedEnv;

constexpr int64_t kPageSizes[] = {1, 2, 61, 64, 69, 256, 576};
constexpr int kHeads[] = {8, 16, 32, 64, 128};
constexpr int kBatches[] = {1, 4, 74, 321};
constexpr int kTopks[] = {1, 37, 64, 129, 200, 600};
// NOTE: the CPU reference costs b * s_q * h_q * keys * 2 * (d_qk + d_v) flops; the sampled
// matrix keeps each case under this many (b * s_q * h_q * keys) so the suite stays fast.
constexpr double kCpuBudget = 1.2e6;

CacheSpec cache_spec(int64_t page_size, std::mt19937_64& rng) {
  CacheSpec s;
  s.page_size = page_size;
  // ~2000-4000 slots: big enough that random slots rarely repeat, small enough to copy fast.
  s.num_pages = std::max<int64_t>(2, (2048 + page_size - 1) / page_size + static_cast<int64_t>(rng() % 3));
  s.extra_stride = (rng() % 4 == 0) ? 16 * static_cast<int64_t>(1 + rng() % 3) : 0;
  return s;
}

double cpu_cost(const DecodeCase& c) {
  return double(c.b) * c.s_q * c.h_q * (c.topk + (c.has_extra ? c.extra_topk : 0));
}

/// The sampled hostile matrix: every value of every axis appears several times, cycling with
/// co-prime periods so pairs of axes mix; the matrix is fixed (its seed), the data is fresh.
std::vector<DecodeCase> hostile_cases() {
  std::vector<DecodeCase> cases;
  std::mt19937_64 rng(20261128);
  constexpr int kSampled = 44;
  for (int n = 0; n < kSampled; ++n) {
    DecodeCase c;
    switch (n % 4) {
      case 0: c.format = KvFormat::kModel1Fp8; break;
      case 1: c.format = KvFormat::kV32Fp8; break;
      case 2: c.format = KvFormat::kBf16; c.d_qk = 512; break;
      default: c.format = KvFormat::kBf16; c.d_qk = 576; break;
    }
    c.h_q = kHeads[n % 5];
    c.main = cache_spec(kPageSizes[n % 7], rng);
    c.s_q = 1 + static_cast<int>((n / 3) % 3);
    c.b = kBatches[(n / 2) % 4];
    c.topk = kTopks[(n / 4 + n) % 6];
    c.has_extra = n % 3 != 0;
    if (c.has_extra) {
      c.extra_topk = kTopks[(n * 5 + 1) % 6];
      c.extra = cache_spec(kPageSizes[(n * 3 + 2) % 7], rng);
      c.extra_topk_length = rng() % 2 == 0;
    }
    c.topk_length = rng() % 2 == 0;
    c.sink = static_cast<SinkMode>((n / 5) % 5);
    const double inv[] = {0.0, 0.1, 0.4};
    c.invalid_fraction = inv[n % 3];
    c.duplicate_fraction = (n % 4 == 1) ? 0.15 : 0.0;
    c.all_invalid_rows = (n % 6 == 5) ? 0.25 : 0.0;
    c.plant_nan = n % 8 != 7;
    c.q_head_pad = (n % 9 == 4) ? 4 : 0;
    if (n % 11 == 6) {  // unaligned cache: odd base and page stride -> byte-load path
      c.main.base_offset = 3;
      c.main.extra_stride = c.format == KvFormat::kBf16 ? 3 : 5;
    }
    if (n % 7 == 3) c.sm_scale = 0.02f + 0.01f * static_cast<float>(n % 5);
    // the plan's split size: the default and small ones (many splits, the combine kernel)
    constexpr int kSplitKeys[] = {0, 64, 128, 320, 640};
    c.split_keys = kSplitKeys[(n * 3 + 1) % 5];
    // Shrink to the CPU budget: batch first, then s_q, then lists.
    while (cpu_cost(c) > kCpuBudget && c.b > 1) c.b = c.b == 321 ? 74 : c.b == 74 ? 4 : 1;
    while (cpu_cost(c) > kCpuBudget && c.s_q > 1) --c.s_q;
    while (cpu_cost(c) > kCpuBudget && c.topk > 64) c.topk /= 2;
    cases.push_back(c);
  }
  // Split-KV cases (more than 1024 candidates and 512 or 640 keys per split: several splits,
  // the combine kernel), with lengths that mix single-split and multi-split requests inside one
  // batch.
  {
    DecodeCase c;
    c.format = KvFormat::kModel1Fp8;
    c.h_q = 64; c.b = 4; c.s_q = 2; c.topk = 600;
    c.main = cache_spec(64, rng);
    c.has_extra = true; c.extra_topk = 700; c.extra = cache_spec(2, rng);
    c.extra_topk_length = true; c.topk_length = true;
    c.sink = SinkMode::kMixed; c.invalid_fraction = 0.1; c.duplicate_fraction = 0.05;
    c.split_keys = 512;
    cases.push_back(c);
  }
  {
    DecodeCase c;
    c.format = KvFormat::kV32Fp8;
    c.h_q = 128; c.b = 3; c.s_q = 1; c.topk = 1500;
    c.main = cache_spec(61, rng);
    c.sink = SinkMode::kFinite; c.all_invalid_rows = 0.2; c.invalid_fraction = 0.1;
    c.split_keys = 640;
    cases.push_back(c);
  }
  {
    DecodeCase c;
    c.format = KvFormat::kBf16; c.d_qk = 512;
    c.h_q = 16; c.b = 37; c.s_q = 1; c.topk = 129;
    c.main = cache_spec(69, rng);
    c.has_extra = true; c.extra_topk = 1100; c.extra = cache_spec(576, rng);
    c.extra_topk_length = true; c.sink = SinkMode::kPlusInf; c.invalid_fraction = 0.4;
    c.split_keys = 512;
    cases.push_back(c);
  }
  {
    DecodeCase c;
    c.format = KvFormat::kModel1Fp8;
    c.h_q = 8; c.b = 74; c.s_q = 3; c.topk = 37;
    c.main = cache_spec(1, rng);
    c.has_extra = true; c.extra_topk = 1200; c.extra = cache_spec(256, rng);
    c.topk_length = true; c.extra_topk_length = true;
    c.sink = SinkMode::kMinusInf; c.duplicate_fraction = 0.2;
    c.split_keys = 640;
    cases.push_back(c);
  }
  {
    DecodeCase c;  // many splits (16 cap) for one request
    c.format = KvFormat::kBf16; c.d_qk = 576;
    c.h_q = 32; c.b = 1; c.s_q = 2; c.topk = 9000;
    c.main = CacheSpec{256, 48, 0, 0};
    c.topk_length = false; c.sink = SinkMode::kMixed;
    c.split_keys = 256;
    cases.push_back(c);
  }
  return cases;
}

class CudaDecodeMatrix : public ::testing::TestWithParam<int> {};

/// Case `index` of a matrix on fresh data: the GPU against the CPU backend, then twice more
/// bitwise equal to its first run. `check_kernel` (optional) sees the kernel family chosen.
template <class CheckKernel>
void check_case(const DecodeCase& cfg, int index, CheckKernel&& check_kernel) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("case " + std::to_string(index) + ": " + cfg.describe() + " seed=" + std::to_string(seed));
  DecodeProblem p = make_problem(cfg, seed);
  const DecodeResult ref = run_cpu(p);
  p.upload();
  {
    const SparseDecodeArgs a = p.args(true);
    check_kernel(decode_kernel_name(a, plan_decode(a)));
  }
  const DecodeResult first = run_gpu(p);
  EXPECT_TRUE(close_to(first, ref));
  for (int rep = 0; rep < 2; ++rep) {
    EXPECT_TRUE(bitwise_equal(first, run_gpu(p))) << "run " << rep + 2 << " differs bitwise";
  }
}

TEST_P(CudaDecodeMatrix, MatchesCpuAndRepeatsBitwise) {
  MODEL1_REQUIRE_GPU();
  check_case(hostile_cases()[GetParam()], GetParam(), [](const std::string&) {});
}

INSTANTIATE_TEST_SUITE_P(Hostile, CudaDecodeMatrix,
                         ::testing::Range(0, static_cast<int>(hostile_cases().size())),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return "case" + std::to_string(info.param);
                         });

// ---- the Hopper (sm_90a) kernels: FP8 caches at 8, 16, 32, 64 and 128 heads -----------------
// On an sm_90 GPU these cases run the wgmma kernels (asserted through decode_kernel_name,
// unless MODEL1_CUDA_DECODE_KERNEL=portable or MODEL1_CUDA_DECODE_CONFIG=compact force the
// portable ones); elsewhere they run the portable kernels and test those.

bool sm90_expected() {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    ADD_FAILURE() << "cannot query the current GPU";
    return false;
  }
  const char* kernel = std::getenv("MODEL1_CUDA_DECODE_KERNEL");
  const char* config = std::getenv("MODEL1_CUDA_DECODE_CONFIG");
  const bool forced_portable = (kernel != nullptr && std::string(kernel) == "portable") ||
                               (config != nullptr && std::string(config) == "compact");
  const std::vector<std::string> archs = cuda_archs_compiled();
  const bool built = std::find(archs.begin(), archs.end(), "sm_90a") != archs.end();
  return major == 9 && minor == 0 && !forced_portable && built;
}

std::vector<DecodeCase> hopper_cases() {
  std::vector<DecodeCase> cases;
  std::mt19937_64 rng(20261130);
  constexpr int kCount = 20;
  constexpr int kHopperTopks[] = {1, 37, 64, 129, 600, 1100};
  // every head count of an sm_90a kernel, each with both formats (two cases per pair)
  constexpr int kHopperHeads[] = {64, 128, 16, 8, 32};
  for (int n = 0; n < kCount; ++n) {
    DecodeCase c;
    c.format = n % 2 == 0 ? KvFormat::kModel1Fp8 : KvFormat::kV32Fp8;
    c.h_q = kHopperHeads[(n / 2) % 5];
    c.main = cache_spec(kPageSizes[n % 7], rng);
    c.main.extra_stride = 16 * (n % 3);  // aligned page strides only: the sm_90a path
    c.s_q = 1 + n % 3;
    c.b = n % 5 == 0 ? 74 : 1 + n % 4;
    c.topk = kHopperTopks[n % 6];
    c.has_extra = n % 4 != 3;
    if (c.has_extra) {
      c.extra_topk = kHopperTopks[(n * 5 + 2) % 6];
      c.extra = cache_spec(kPageSizes[(n * 3 + 1) % 7], rng);
      c.extra.extra_stride = 16 * ((n + 1) % 2);
      c.extra_topk_length = n % 3 == 1;
    }
    c.topk_length = n % 2 == 1;
    c.sink = static_cast<SinkMode>(n % 5);
    const double inv[] = {0.0, 0.1, 0.5};
    c.invalid_fraction = inv[n % 3];
    c.duplicate_fraction = n % 4 == 2 ? 0.2 : 0.0;
    c.all_invalid_rows = n % 6 == 5 ? 0.3 : 0.0;
    c.q_head_pad = n % 7 == 3 ? 4 : 0;  // unaligned q rows: the scalar Q load
    // out not 16-byte aligned: the epilogue's direct stores instead of the staged ones
    c.out_shift = n % 8 == 1 ? 2 : (n % 8 == 6 ? 1 : 0);
    if (n % 5 == 2) c.sm_scale = 0.03f;
    constexpr int kHopperSplitKeys[] = {0, 128, 640, 64};
    c.split_keys = kHopperSplitKeys[(n / 2) % 4];
    while (cpu_cost(c) > 2 * kCpuBudget && c.b > 1) c.b = c.b > 4 ? 4 : 1;
    while (cpu_cost(c) > 2 * kCpuBudget && c.topk > 64) c.topk /= 2;
    cases.push_back(c);
  }
  return cases;
}

class CudaDecodeHopper : public ::testing::TestWithParam<int> {};

// NOTE: the sm_90a kernels take 16-byte aligned q rows and out only; the cases with padded q
// heads or a shifted out run (and test) the portable kernels there.
TEST_P(CudaDecodeHopper, MatchesCpuAndRepeatsBitwise) {
  MODEL1_REQUIRE_GPU();
  const DecodeCase c = hopper_cases()[GetParam()];
  const bool aligned_io = c.q_head_pad % 8 == 0 && c.out_shift % 8 == 0;
  const bool sm90 = sm90_expected() && aligned_io;
  check_case(c, GetParam(), [sm90](const std::string& kernel) {
    if (sm90) {
      EXPECT_EQ(kernel, "sm90a");
    } else {
      EXPECT_NE(kernel, "sm90a");
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Sm90, CudaDecodeHopper, ::testing::Range(0, static_cast<int>(hopper_cases().size())),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return "case" + std::to_string(info.param);
                         });

TEST(CudaDecode, KernelNameFollowsShapes) {
  MODEL1_REQUIRE_GPU();
  DecodeCase c;
  c.format = KvFormat::kModel1Fp8;
  c.h_q = 16; c.b = 2; c.s_q = 1; c.topk = 64;
  c.main = CacheSpec{64, 8, 0, 0};
  DecodeProblem p = make_problem(c, fresh_seed());
  p.upload();
  const SparseDecodeArgs a = p.args(true);
  const DecodePlan plan = plan_decode(a);
  const std::string kernel = decode_kernel_name(a, plan);
  if (sm90_expected()) {
    EXPECT_EQ(kernel, "sm90a");  // the small-head kernel
  } else {
    EXPECT_TRUE(kernel == "portable" || kernel == "portable-compact") << kernel;
  }
  // BF16 caches always run the portable kernels.
  DecodeCase cb = c;
  cb.format = KvFormat::kBf16;
  DecodeProblem pb = make_problem(cb, fresh_seed());
  pb.upload();
  const SparseDecodeArgs ab = pb.args(true);
  const std::string kernel_b = decode_kernel_name(ab, plan_decode(ab));
  EXPECT_TRUE(kernel_b == "portable" || kernel_b == "portable-compact") << kernel_b;
  // A plan for other shapes is refused by name, as sparse_decode refuses it.
  DecodeCase c2 = c;
  c2.h_q = 64;
  DecodeProblem p2 = make_problem(c2, fresh_seed());
  p2.upload();
  // 16 and 64 heads: the sm_90a kernels for 16-byte aligned q rows and out; padded q heads or
  // an out shifted by 4 bytes run the portable kernels.
  for (const DecodeCase& ca : {c, c2}) {
    DecodeProblem pa = make_problem(ca, fresh_seed());
    pa.upload();
    const SparseDecodeArgs aa = pa.args(true);
    EXPECT_EQ(decode_kernel_name(aa, plan_decode(aa)) == "sm90a", sm90_expected()) << ca.h_q << " heads";
    for (const auto& [pad, shift] : {std::pair{4, 0}, std::pair{0, 2}}) {
      DecodeCase cu = ca;
      cu.q_head_pad = pad;
      cu.out_shift = shift;
      DecodeProblem pu = make_problem(cu, fresh_seed());
      pu.upload();
      const SparseDecodeArgs au = pu.args(true);
      const std::string ku = decode_kernel_name(au, plan_decode(au));
      EXPECT_TRUE(ku == "portable" || ku == "portable-compact")
          << ku << " h_q=" << ca.h_q << " q_pad=" << pad << " out_shift=" << shift;
    }
  }
  try {
    (void)decode_kernel_name(p2.args(true), plan);
    ADD_FAILURE() << "a mismatched plan was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "plan");
  }
}

/// Args for requests [first, first + count) of `p`'s device tensors (views, no copies), with
/// their own outputs.
SparseDecodeArgs sub_batch(const DecodeProblem& p, int first, int count, DeviceBuffer& out,
                           DeviceBuffer& lse) {
  SparseDecodeArgs a = p.args(true);
  const int64_t b = count, s = p.cfg.s_q, h = p.cfg.h_q;
  auto shift = [&](TensorView& t, int64_t elem_bytes) {
    if (!t.defined()) return;
    t.data = static_cast<uint8_t*>(t.data) + first * t.strides[0] * elem_bytes;
    t.shape[0] = b;
  };
  shift(a.q, 2);
  shift(a.indices, 4);
  shift(a.topk_length, 4);
  shift(a.extra_indices, 4);
  shift(a.extra_topk_length, 4);
  out = DeviceBuffer(static_cast<size_t>(b * s * h * 512 * 2));
  lse = DeviceBuffer(static_cast<size_t>(b * s * h * 4));
  out.fill(0xff);
  lse.fill(0xff);
  a.out = TensorView::contiguous(out.get(), DType::kBF16, {b, s, h, 512}, Device::kCUDA);
  a.lse = TensorView::contiguous(lse.get(), DType::kF32, {b, s, h}, Device::kCUDA);
  return a;
}

/// Rows [first, first + count) of a full result.
DecodeResult rows_of(const DecodeResult& full, const DecodeCase& c, int first, int count) {
  const size_t per_req = static_cast<size_t>(c.s_q) * c.h_q;
  DecodeResult r;
  r.out.assign(full.out.begin() + first * per_req * 512, full.out.begin() + (first + count) * per_req * 512);
  r.lse.assign(full.lse.begin() + first * per_req, full.lse.begin() + (first + count) * per_req);
  return r;
}

DecodeCase invariance_case(int h_q) {
  DecodeCase c;
  c.format = KvFormat::kModel1Fp8;
  c.h_q = h_q; c.b = 321; c.s_q = 2; c.topk = 129;
  c.main = CacheSpec{64, 40, 0, 0};
  c.has_extra = true; c.extra_topk = 1100; c.extra = CacheSpec{2, 1200, 0, 0};
  c.topk_length = true; c.extra_topk_length = true;
  c.sink = SinkMode::kMixed; c.invalid_fraction = 0.05; c.all_invalid_rows = 0.02;
  return c;
}

TEST(CudaDecode, BatchInvariance) {
  MODEL1_REQUIRE_GPU();
  // (heads, split_keys): the default split size and a small one (every request split)
  for (const auto& [h_q, split_keys] : {std::pair{16, 0}, std::pair{64, 0}, std::pair{64, 192}}) {
    const uint64_t seed = fresh_seed();
    DecodeCase cfg = invariance_case(h_q);
    cfg.split_keys = split_keys;
    DecodeOptions options;
    options.split_keys = split_keys;
    SCOPED_TRACE(cfg.describe() + " seed=" + std::to_string(seed));
    DecodeProblem p = make_problem(cfg, seed);
    p.upload();
    const DecodeResult full = run_gpu(p);

    // Inside b = 74 (the first 74 requests) and alone.
    DeviceBuffer out, lse;
    const SparseDecodeArgs a74 = sub_batch(p, 0, 74, out, lse);
    sparse_decode(a74, plan_decode(a74, options));
    const DecodeResult got74{out.download<uint16_t>(), lse.download<float>()};
    EXPECT_TRUE(bitwise_equal(got74, rows_of(full, cfg, 0, 74))) << "b=74 rows differ from b=321";
    for (int r : {0, 7, 73, 150, 320}) {
      const SparseDecodeArgs a1 = sub_batch(p, r, 1, out, lse);
      sparse_decode(a1, plan_decode(a1, options));
      const DecodeResult alone{out.download<uint16_t>(), lse.download<float>()};
      EXPECT_TRUE(bitwise_equal(alone, rows_of(full, cfg, r, 1))) << "request " << r << " alone differs";
    }

    // Permuted batch: request perm[k] of the original sits at position k.
    std::vector<int> perm(cfg.b);
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
    std::shuffle(perm.begin(), perm.end(), rng);
    DecodeProblem q = make_problem(cfg, seed);  // same data (same seed), then permuted
    auto permute = [&](auto& v, size_t per_req) {
      auto orig = v;
      for (int k = 0; k < cfg.b; ++k) {
        std::copy(orig.begin() + perm[k] * per_req, orig.begin() + (perm[k] + 1) * per_req,
                  v.begin() + k * per_req);
      }
    };
    permute(q.q, static_cast<size_t>(cfg.s_q) * cfg.h_q * q.q_row());
    permute(q.indices, static_cast<size_t>(cfg.s_q) * cfg.topk);
    permute(q.extra_indices, static_cast<size_t>(cfg.s_q) * cfg.extra_topk);
    permute(q.topk_length, 1);
    permute(q.extra_topk_length, 1);
    q.upload();
    const DecodeResult permuted = run_gpu(q);
    int mismatches = 0;
    for (int k = 0; k < cfg.b; ++k) {
      if (!bitwise_equal(rows_of(permuted, cfg, k, 1), rows_of(full, cfg, perm[k], 1))) ++mismatches;
    }
    EXPECT_EQ(mismatches, 0) << "requests whose output changed under a batch permutation";
  }
}

/// The split a kLatencySplitKeys plan for `c` takes on this GPU: latency_split_keys(), or where
/// its kernel (decode_kernel_name) runs half-head CTAs, the half-head rule's split
/// (latency_half_head_chunks) unless MODEL1_CUDA_DECODE_HALF_HEADS overrides the rule.
int expected_latency_split(const DecodeCase& c, const std::string& kernel) {
  int sms = 0;
  cuda_ok(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "cudaDeviceGetAttribute");
  const int64_t keys = c.topk + (c.has_extra ? c.extra_topk : 0);
  const int whole = latency_split_keys(c.b, c.s_q, c.h_q, keys, sms);
  const char* env = std::getenv("MODEL1_CUDA_DECODE_HALF_HEADS");
  const bool rule = env == nullptr || *env == '\0' || std::string(env) == "auto";
  if (kernel == "portable-compact" || !rule) return whole;
  const int half = cuda::latency_half_head_chunks(c.b, c.s_q, c.h_q, keys, sms, whole / cuda::kChunkKeys,
                                                  cuda::kMaxSplitChunks);
  return half > 0 ? half * cuda::kChunkKeys : whole;
}

/// The split and half-head rules of a latency plan (no GPU needed): whole-head chunks per split
/// (one wave of whole-head CTAs), then half-head CTAs where the doubled grid fits one wave at
/// the same split (16, 32, 64 heads) or, for 64 heads, at one chunk more (0: whole heads).
TEST(CudaDecode, LatencyHalfHeadsRule) {
  struct Case {
    int64_t b, s_q, h_q, keys;
    int whole, half;
    const char* what;
  };
  const Case cases[] = {
      {2, 2, 64, 640, 1, 1, "model1-c1 b = 2: 40 whole CTAs, 80 half"},
      {2, 2, 32, 640, 1, 1, "model1-tp-h32 b = 2"},
      {2, 2, 16, 640, 1, 1, "model1-tp-h16 b = 2"},
      {3, 2, 32, 640, 1, 1, "model1-tp-h32 b = 3: 120 half CTAs"},
      {4, 2, 64, 640, 1, 2, "model1-c1 b = 4: 64 heads, one chunk more (80 half CTAs)"},
      {6, 2, 64, 640, 1, 2, "model1-c1 b = 6: 120 whole CTAs of 1 chunk, 120 half of 2"},
      {8, 2, 64, 640, 2, 3, "model1-c1 b = 8: 80 whole CTAs, 128 half"},
      {12, 2, 64, 640, 2, 0, "model1-c1 b = 12: half heads would need 5 chunks"},
      {16, 2, 64, 640, 3, 0, "model1-c1 b = 16: half heads would need 5 chunks"},
      {4, 2, 32, 640, 1, 0, "model1-tp-h32 b = 4: one chunk more is not for 32 heads"},
      {4, 2, 16, 640, 1, 0, "model1-tp-h16 b = 4"},
      {4, 2, 64, 1152, 2, 3, "model1-c3 b = 4: 18 chunks, 64-key splits over the 16-split cap"},
      {6, 2, 64, 1152, 2, 0, "model1-c3 b = 6: half heads would need 4 chunks"},
      {66, 1, 64, 64, 1, 1, "exactly one wave doubled"},
      {67, 1, 64, 64, 1, 0, "one CTA past it"},
      {2, 2, 128, 640, 1, 0, "128 heads: never"},
      {2, 2, 8, 640, 1, 0, "8 heads: nothing to halve"},
      {148, 2, 64, 16384, 0, 0, "a full batch: no latency split"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const int whole = cuda::latency_split_chunks(c.b, c.s_q, c.h_q, c.keys, 132, cuda::kMaxSplitChunks);
    EXPECT_EQ(whole, c.whole);
    EXPECT_EQ(cuda::latency_half_head_chunks(c.b, c.s_q, c.h_q, c.keys, 132, whole, cuda::kMaxSplitChunks), c.half);
  }
}

/// A latency-plan case: b requests of s_q tokens, 640 + 200 candidate keys (main cache P 64,
/// extra cache P 64), topk_length, a mixed sink and 10% invalid indices.
DecodeCase latency_case(KvFormat format, int h_q, int b, int s_q) {
  DecodeCase c;
  c.format = format;
  c.h_q = h_q; c.b = b; c.s_q = s_q; c.topk = 640;
  c.main = CacheSpec{64, 24, 0, 0};
  c.has_extra = true; c.extra_topk = 200; c.extra = CacheSpec{64, 6, 0, 0};
  c.topk_length = true; c.sink = SinkMode::kMixed; c.invalid_fraction = 0.1;
  return c;
}

/// Runs `c` with a kLatencySplitKeys plan on fresh data: matches the CPU reference and repeats
/// bitwise; with `check_split`, the plan's split is the rule's for its kernel family.
void check_latency_plan(const DecodeCase& c, bool check_split) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(c.describe() + " split_keys=latency seed=" + std::to_string(seed));
  DecodeProblem p = make_problem(c, seed);
  const DecodeResult ref = run_cpu(p);
  p.upload();
  if (check_split) {
    DecodeOptions latency;
    latency.split_keys = kLatencySplitKeys;
    const DecodePlan plan = plan_decode(p.args(true), latency);
    EXPECT_EQ(plan.split_keys(), expected_latency_split(c, decode_kernel_name(p.args(true), plan)));
  }
  p.cfg.split_keys = kLatencySplitKeys;
  const DecodeResult first = run_gpu(p);
  EXPECT_TRUE(close_to(first, ref));
  EXPECT_TRUE(bitwise_equal(run_gpu(p), first));
}

/// A latency plan whose grid still fits one wave when doubled runs 16, 32 or 64 heads as two CTAs
/// of half the heads (CudaPlanState::half_heads; b = 2, one token, 640 + 200 keys: 14 splits of
/// 64 keys, 56 CTAs): the small-head kernel on sm_90, the portable configuration for half the
/// heads elsewhere (32 and 64 heads; the compact configuration is unchanged). Both FP8 formats,
/// every feature on, match the CPU reference and repeat bitwise.
TEST(CudaDecode, LatencyPlanRunsHalfHeadCtas) {
  MODEL1_REQUIRE_GPU();
  for (const auto& [h_q, format] : {std::pair{16, KvFormat::kModel1Fp8}, std::pair{32, KvFormat::kModel1Fp8},
                                     std::pair{64, KvFormat::kModel1Fp8}, std::pair{16, KvFormat::kV32Fp8},
                                     std::pair{32, KvFormat::kV32Fp8}, std::pair{64, KvFormat::kV32Fp8}}) {
    check_latency_plan(latency_case(format, h_q, 2, 1), false);
  }
}

/// 64 heads at b = 4 and 6 (two tokens, 640 + 200 keys): on an H200 the whole-head latency
/// split is 64 / 128 keys, and the plan takes 128 / 192-key splits of half-head CTAs instead
/// (the doubled grid fits one wave with one chunk more a split), on the sm_90a kernels and,
/// under MODEL1_CUDA_DECODE_KERNEL=portable, the portable ones. Both FP8 formats, every feature
/// on (extra_topk_length too): the plan reports the split, the outputs match the CPU reference
/// and repeat bitwise.
TEST(CudaDecode, LatencyPlanHalfHeadsTakeOneChunkMore) {
  MODEL1_REQUIRE_GPU();
  for (const auto& [b, format] : {std::pair{4, KvFormat::kModel1Fp8}, std::pair{6, KvFormat::kV32Fp8}}) {
    DecodeCase c = latency_case(format, 64, b, 2);
    c.extra_topk_length = true;
    check_latency_plan(c, true);
  }
}

/// DecodeOptions::split_keys: every legal extreme matches the CPU reference on both kernel
/// families (64 heads: sm90a on Hopper; bf16: portable), the plan reports its value, and bad
/// values are refused naming the option.
TEST(CudaDecode, SplitKeysOption) {
  MODEL1_REQUIRE_GPU();
  DecodeCase fp8;
  fp8.format = KvFormat::kModel1Fp8;
  fp8.h_q = 64; fp8.b = 3; fp8.s_q = 2; fp8.topk = 700;
  fp8.main = CacheSpec{64, 40, 0, 0};
  fp8.has_extra = true; fp8.extra_topk = 900; fp8.extra = CacheSpec{256, 6, 0, 0};
  fp8.topk_length = true; fp8.sink = SinkMode::kMixed; fp8.invalid_fraction = 0.1;
  DecodeCase bf16 = fp8;
  bf16.format = KvFormat::kBf16; bf16.h_q = 16;
  for (const DecodeCase& base : {fp8, bf16}) {
    const uint64_t seed = fresh_seed();
    DecodeProblem p = make_problem(base, seed);
    const DecodeResult ref = run_cpu(p);
    p.upload();
    for (int split_keys : {64, 320, 1152, 1600, 16384}) {
      SCOPED_TRACE(base.describe() + " split_keys=" + std::to_string(split_keys) +
                   " seed=" + std::to_string(seed));
      p.cfg.split_keys = split_keys;
      EXPECT_TRUE(close_to(run_gpu(p), ref));
      DecodeOptions options;
      options.split_keys = split_keys;
      EXPECT_EQ(plan_decode(p.args(true), options).split_keys(), split_keys);
    }
    // kLatencySplitKeys: the plan takes latency_split_keys() of its shapes and this GPU (the
    // half-head rule's split for 64 heads where the kernel runs half-head CTAs).
    DecodeOptions latency;
    latency.split_keys = kLatencySplitKeys;
    const DecodePlan plan = plan_decode(p.args(true), latency);
    const int want = expected_latency_split(base, decode_kernel_name(p.args(true), plan));
    SCOPED_TRACE(base.describe() + " split_keys=latency (" + std::to_string(want) + ") seed=" +
                 std::to_string(seed));
    EXPECT_EQ(plan.split_keys(), want);
    p.cfg.split_keys = kLatencySplitKeys;
    EXPECT_TRUE(close_to(run_gpu(p), ref));
  }
  DecodeProblem p = make_problem(fp8, fresh_seed());
  p.upload();
  const char* env = std::getenv("MODEL1_CUDA_SPLIT_CHUNKS");
  if (env == nullptr || *env == '\0') {
    EXPECT_EQ(plan_decode(p.args(true)).split_keys(), kDefaultSplitKeys);
  }
  for (int bad : {-64, 1, 63, 100, 16384 + 64}) {
    DecodeOptions options;
    options.split_keys = bad;
    try {
      (void)plan_decode(p.args(true), options);
      ADD_FAILURE() << "split_keys=" << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), "options.split_keys") << e.what();
    }
  }
}

/// The longest-first request order (request_order_kernel): with per-request lengths and more
/// split CTAs than SMs it runs; every output bit equals the batch order's (MODEL1_CUDA_DECODE_ORDER=0)
/// and both match the CPU reference, for the small-head, 64-head and 128-head kernels, with one
/// split per request and with several. A bad value of the variable is refused, naming it.
TEST(CudaDecode, LongestFirstOrderChangesNoBit) {
  MODEL1_REQUIRE_GPU();
  for (const auto& [h_q, split_keys] : {std::pair{16, 0}, std::pair{64, 0}, std::pair{128, 0}, std::pair{64, 256}}) {
    DecodeCase c;
    c.format = KvFormat::kModel1Fp8;
    c.h_q = h_q; c.b = sanitizer_small() ? 150 : 300; c.s_q = 1; c.topk = 129;
    c.main = CacheSpec{64, 40, 0, 0};
    c.has_extra = true; c.extra_topk = 700; c.extra = CacheSpec{2, 800, 0, 0};
    c.topk_length = true; c.extra_topk_length = true;
    c.sink = SinkMode::kMixed; c.invalid_fraction = 0.05; c.all_invalid_rows = 0.02;
    c.split_keys = split_keys;
    const uint64_t seed = fresh_seed();
    SCOPED_TRACE(c.describe() + " seed=" + std::to_string(seed));
    DecodeProblem p = make_problem(c, seed);
    const DecodeResult ref = run_cpu(p);
    p.upload();
    DecodeResult batch_order, longest_first;
    {
      ScopedEnv off("MODEL1_CUDA_DECODE_ORDER", "0");
      batch_order = run_gpu(p);
    }
    {
      ScopedEnv on("MODEL1_CUDA_DECODE_ORDER", "1");
      longest_first = run_gpu(p);
    }
    EXPECT_TRUE(close_to(longest_first, ref));
    EXPECT_TRUE(bitwise_equal(longest_first, batch_order)) << "the request order changed a result";
  }
  DecodeCase c = invariance_case(64);
  c.b = 4;
  DecodeProblem p = make_problem(c, fresh_seed());
  p.upload();
  const SparseDecodeArgs a = p.args(true);
  DecodePlan plan = plan_decode(a);
  ScopedEnv bad("MODEL1_CUDA_DECODE_ORDER", "yes");
  try {
    sparse_decode(a, plan);
    ADD_FAILURE() << "MODEL1_CUDA_DECODE_ORDER=yes was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "MODEL1_CUDA_DECODE_ORDER") << e.what();
  }
}

/// Captures one sparse_decode call of `a` on `stream` into *graph and instantiates it as *exec.
void capture_decode(const SparseDecodeArgs& a, const DecodePlan& plan, cudaStream_t stream, cudaGraph_t* graph,
                    cudaGraphExec_t* exec) {
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  sparse_decode(a, plan, stream);
  CUDA_OK(cudaStreamEndCapture(stream, graph));
  CUDA_OK(cudaGraphInstantiate(exec, *graph, 0));
}

/// Destroys what capture_decode made, and the stream.
void destroy_captured(cudaGraphExec_t exec, cudaGraph_t graph, cudaStream_t stream) {
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  CUDA_OK(cudaStreamDestroy(stream));
}

/// Captures one sparse_decode call of `cfg` (fresh data; after a warm-up call outside the
/// capture when `warm_up`) in a CUDA graph, then replays it `rounds` times with new lengths, each
/// against the CPU reference: the lengths are read on the device at every replay.
void expect_graph_replays_match_cpu(DecodeCase cfg, bool warm_up, int rounds) {
  cfg.topk_length = true;
  cfg.extra_topk_length = cfg.has_extra;
  cfg.plant_nan = false;  // lengths change after the cache is built
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(cfg.describe() + " seed=" + std::to_string(seed));
  DecodeProblem p = make_problem(cfg, seed);
  p.upload();
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const SparseDecodeArgs a = p.args(true);
  const DecodePlan plan = plan_decode(a, stream);
  if (warm_up) {
    sparse_decode(a, plan, stream);
    CUDA_OK(cudaStreamSynchronize(stream));
  }
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ASSERT_NO_FATAL_FAILURE(capture_decode(a, plan, stream, &graph, &exec));
  for (int round = 0; round < rounds; ++round) {
    std::mt19937_64 rng(seed + 100 + round);
    p.topk_length = make_lengths(cfg.b, cfg.topk, rng);
    p.d_topk_length.upload(p.topk_length);
    if (cfg.has_extra) {
      p.extra_topk_length = make_lengths(cfg.b, cfg.extra_topk, rng);
      p.d_extra_topk_length.upload(p.extra_topk_length);
    }
    poison(p);
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    EXPECT_TRUE(close_to(download(p), run_cpu(p))) << "round " << round;
  }
  destroy_captured(exec, graph, stream);
}

/// The longest-first order under CUDA-graph capture: the order kernel and the split kernel
/// (on sm_90 its programmatic dependent) are captured once and replayed with new lengths, so the
/// order is recomputed at every replay; each replay matches the CPU reference.
TEST(CudaDecode, LongestFirstOrderInGraphReplay) {
  MODEL1_REQUIRE_GPU();
  for (int h_q : {64, 128}) {
    DecodeCase cfg;
    cfg.format = KvFormat::kModel1Fp8;
    cfg.h_q = h_q; cfg.b = 300; cfg.s_q = 1; cfg.topk = 129;
    cfg.main = CacheSpec{64, 40, 0, 0};
    cfg.has_extra = true; cfg.extra_topk = 700; cfg.extra = CacheSpec{2, 800, 0, 0};
    expect_graph_replays_match_cpu(cfg, false, 2);
  }
}

/// The combine with more splits than a warp has lanes (35 splits of 64 keys), in both of its
/// configurations: 2112 rows (one split at a time) against the CPU reference, and requests
/// alone (64 rows: 8 splits in flight) bit-identical to their rows in the batch.
TEST(CudaDecode, CombineManySplits) {
  MODEL1_REQUIRE_GPU();
  DecodeCase c;
  c.format = KvFormat::kModel1Fp8;
  c.h_q = 64; c.b = 33; c.s_q = 1; c.topk = 200;
  c.main = CacheSpec{64, 8, 0, 0};
  c.has_extra = true; c.extra_topk = 2000; c.extra = CacheSpec{2, 1100, 0, 0};
  c.sink = SinkMode::kMixed; c.invalid_fraction = 0.05;
  c.split_keys = 64;
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(c.describe() + " seed=" + std::to_string(seed));
  DecodeProblem p = make_problem(c, seed);
  const DecodeResult ref = run_cpu(p);
  p.upload();
  const DecodeResult full = run_gpu(p);
  EXPECT_TRUE(close_to(full, ref));
  DecodeOptions options;
  options.split_keys = c.split_keys;
  DeviceBuffer out, lse;
  for (int r : {0, 17, 32}) {
    const SparseDecodeArgs a1 = sub_batch(p, r, 1, out, lse);
    sparse_decode(a1, plan_decode(a1, options));
    const DecodeResult alone{out.download<uint16_t>(), lse.download<float>()};
    EXPECT_TRUE(bitwise_equal(alone, rows_of(full, c, r, 1))) << "request " << r << " alone differs";
  }
}

TEST(CudaDecode, GraphCaptureReplay) {
  MODEL1_REQUIRE_GPU();
  DecodeCase cfg;
  cfg.format = KvFormat::kModel1Fp8;
  cfg.h_q = 64; cfg.b = 8; cfg.s_q = 2; cfg.topk = 128;
  cfg.main = CacheSpec{256, 12, 0, 0};
  cfg.has_extra = true; cfg.extra_topk = 1024; cfg.extra = CacheSpec{64, 40, 0, 0};
  cfg.topk_length = true; cfg.extra_topk_length = true; cfg.sink = SinkMode::kFinite;
  cfg.plant_nan = false;  // the lengths change below, so the referenced set changes too
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(cfg.describe() + " seed=" + std::to_string(seed));
  DecodeProblem p = make_problem(cfg, seed);
  p.upload();

  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const SparseDecodeArgs a = p.args(true);
  const DecodePlan plan = plan_decode(a, stream);
  sparse_decode(a, plan, stream);  // warm-up outside the capture
  CUDA_OK(cudaStreamSynchronize(stream));
  const DecodeResult direct = download(p);

  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ASSERT_NO_FATAL_FAILURE(capture_decode(a, plan, stream, &graph, &exec));

  poison(p);
  CUDA_OK(cudaGraphLaunch(exec, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  EXPECT_TRUE(bitwise_equal(download(p), direct)) << "graph replay differs from the direct call";

  // New length values under the same plan and graph: the schedule is re-evaluated on device.
  std::mt19937_64 rng(seed + 1);
  p.extra_topk_length = make_lengths(cfg.b, cfg.extra_topk, rng);
  p.topk_length = make_lengths(cfg.b, cfg.topk, rng);
  p.d_extra_topk_length.upload(p.extra_topk_length);
  p.d_topk_length.upload(p.topk_length);
  poison(p);
  CUDA_OK(cudaGraphLaunch(exec, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  const DecodeResult replayed = download(p);
  poison(p);
  sparse_decode(a, plan, stream);
  CUDA_OK(cudaStreamSynchronize(stream));
  const DecodeResult direct2 = download(p);
  EXPECT_TRUE(bitwise_equal(replayed, direct2)) << "replay with new lengths differs from a direct call";

  destroy_captured(exec, graph, stream);
}

TEST(CudaDecode, GraphReplayNewLengthsMatchesCpu) {
  MODEL1_REQUIRE_GPU();
  DecodeCase cfg;
  cfg.format = KvFormat::kV32Fp8;
  cfg.h_q = 32; cfg.b = 5; cfg.s_q = 1; cfg.topk = 700;
  cfg.main = CacheSpec{64, 40, 0, 0};
  cfg.has_extra = true; cfg.extra_topk = 600; cfg.extra = CacheSpec{2, 1000, 0, 0};
  expect_graph_replays_match_cpu(cfg, true, 3);
}

TEST(CudaDecode, PlanReuseAcrossCallsAndStreams) {
  MODEL1_REQUIRE_GPU();
  DecodeCase cfg;
  cfg.format = KvFormat::kModel1Fp8;
  cfg.h_q = 128; cfg.b = 3; cfg.s_q = 2; cfg.topk = 128;
  cfg.main = CacheSpec{256, 10, 0, 0};
  cfg.has_extra = true; cfg.extra_topk = 1024; cfg.extra = CacheSpec{2, 1100, 0, 0};
  cfg.extra_topk_length = true; cfg.sink = SinkMode::kFinite;
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(cfg.describe() + " seed=" + std::to_string(seed));
  DecodeProblem p = make_problem(cfg, seed);
  const DecodeResult ref = run_cpu(p);
  p.upload();
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const SparseDecodeArgs a = p.args(true);
  const DecodePlan plan = plan_decode(a, stream);
  for (int layer = 0; layer < 4; ++layer) {
    poison(p);
    sparse_decode(a, plan, layer % 2 ? stream : nullptr);
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_TRUE(close_to(download(p), ref)) << "layer " << layer;
  }
  CUDA_OK(cudaStreamDestroy(stream));
}

/// Crafted cache bytes: every e4m3 code (zeros, subnormals, the largest values; NaN codes in a
/// few tokens only), UE8M0 / float scales over a wide range including ones outside the fast
/// path, bf16 RoPE values including subnormals.
HostCache crafted_cache(KvFormat format, int64_t page_size, int64_t num_pages, std::mt19937_64& rng) {
  HostCache c;
  c.format = format;
  c.d_qk = kv_format_d_qk(format);
  c.page_size = page_size;
  c.num_pages = num_pages;
  c.page_stride = kv_min_page_stride(format, page_size, c.d_qk);
  c.bytes.assign(static_cast<size_t>(num_pages * c.page_stride), 0xff);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> sane_exp(100, 150);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t slot = 0; slot < c.num_slots(); ++slot) {
    const auto ranges = token_byte_ranges(c, slot);
    uint8_t* data = c.bytes.data() + ranges[0].first;
    const bool keep_nan = slot % 16 == 5;
    const int nope = format == KvFormat::kModel1Fp8 ? model1_fp8::kNopeDims : v32_fp8::kNopeDims;
    for (int d = 0; d < nope; ++d) {
      int code = byte(rng);
      if (!keep_nan && (code & 0x7f) == 0x7f) code -= 1;
      data[d] = static_cast<uint8_t>(code);
    }
    const int k = static_cast<int>(slot % 7);
    const int scale_exp = k == 0 ? 0 : k == 1 ? 3 : k == 2 ? 247 : sane_exp(rng);  // 0..2: slow path
    uint8_t* rope;
    if (format == KvFormat::kModel1Fp8) {
      uint8_t* scales = c.bytes.data() + ranges[1].first;
      for (int t = 0; t < model1_fp8::kNumTiles; ++t) scales[t] = static_cast<uint8_t>(t == 0 ? scale_exp : sane_exp(rng));
      scales[model1_fp8::kNumTiles] = 0;
      rope = data + model1_fp8::kNopeBytes;
    } else {
      for (int t = 0; t < v32_fp8::kNumTiles; ++t) {
        // 1.5 * 2^k on one tile: not a power of two (float path), still one bf16 rounding.
        const float sc = std::ldexp(t == 1 ? 1.5f : 1.0f, (t == 0 ? scale_exp : sane_exp(rng)) - 127);
        std::memcpy(data + v32_fp8::kScaleOffset + 4 * t, &sc, 4);
      }
      rope = data + v32_fp8::kRopeOffset;
    }
    for (int d = 0; d < 64; ++d) {
      const uint16_t v = d % 9 == 0 ? static_cast<uint16_t>(byte(rng) & 0x7f) : to_bf16(normal(rng));  // subnormals
      std::memcpy(rope + 2 * d, &v, 2);
    }
  }
  return c;
}

TEST(CudaDecode, SingleKeyOutIsExactlyTheDequantizedKey) {
  MODEL1_REQUIRE_GPU();
  const uint64_t seed = fresh_seed();
  for (KvFormat format : {KvFormat::kModel1Fp8, KvFormat::kV32Fp8}) {
    for (int h_q : {16, 64}) {
      SCOPED_TRACE(std::string(kv_format_name(format)) + " h_q=" + std::to_string(h_q) +
                   " seed=" + std::to_string(seed));
      std::mt19937_64 rng(seed + h_q);
      DecodeProblem p;
      p.cfg.format = format;
      p.cfg.b = 40;
      p.cfg.s_q = 2;
      p.cfg.h_q = h_q;
      p.cfg.topk = 4;
      p.kv = crafted_cache(format, 61, 3, rng);
      p.cfg.d_qk = p.kv.d_qk;
      // q = 0: every logit is 0, so the single valid key gets weight exactly 1 and out must be
      // that key's dequantized first 512 dims, bit for bit (NaN where the key holds NaN).
      p.q.assign(static_cast<size_t>(p.cfg.b) * p.cfg.s_q * h_q * p.q_row(), 0);
      const int32_t num_slots = static_cast<int32_t>(p.kv.num_slots());
      for (int r = 0; r < p.cfg.b * p.cfg.s_q; ++r) {
        const int32_t valid = r % num_slots;
        const int32_t row[4] = {-1, valid, num_slots, std::numeric_limits<int32_t>::max()};
        p.indices.insert(p.indices.end(), row, row + 4);
      }
      const DecodeResult ref = run_cpu(p);
      p.upload();
      const DecodeResult got = run_gpu(p);
      // NOTE: values compare as numbers (+0 == -0: the mma accumulator starts at +0, the CPU's
      // sum may keep a -0); for every non-zero value that is bit equality.
      size_t diffs = 0, first = 0;
      for (size_t k = 0; k < ref.out.size(); ++k) {
        const float g = from_bf16(got.out[k]), r = from_bf16(ref.out[k]);
        const bool same = (std::isnan(g) && std::isnan(r)) || g == r;
        if (!same && diffs++ == 0) first = k;
      }
      EXPECT_EQ(diffs, 0u) << "first at row " << first / 512 << " dim " << first % 512 << ": gpu "
                           << from_bf16(got.out[first]) << " cpu " << from_bf16(ref.out[first]);
      for (size_t k = 0; k < ref.lse.size(); ++k) {
        const bool both_nan = std::isnan(got.lse[k]) && std::isnan(ref.lse[k]);
        if (!both_nan) {
          ASSERT_EQ(got.lse[k], ref.lse[k]) << "lse " << k;
        }
      }
    }
  }
}

TEST(CudaDecode, LateMaximumStillNormalisesExactly) {
  // Two valid keys per row, in chunks 0 and 2 of one split: the first (dim 0 = v) has logit
  // c v sm_scale < 0, the second (dim 0 = 0) logit 0, and every other dim of both is v. Exact
  // weights sum to 1, so out must be exactly v in dims 1..511 whatever reference the softmax
  // kept on the way: a kernel that kept the first key's logit as its reference (the second
  // passes it by less than 2^8; its P = 2^g lies half-way between two bf16 values) and divided
  // by the unrounded sum fails this (docs/experiments/2026-12-01-lazy-rowsum-wgmma.patch).
  MODEL1_REQUIRE_GPU();
  const float v = 1.875f;  // e4m3 0x3f at scale 2^0, and exact in bf16
  const float sm_scale = 1.0f / std::sqrt(512.0f);
  // q's dim 0: P = 2^g, g = -c v sm_scale log2(e), in [128, 192) and nearest to k + 1/2.
  const float c = from_bf16(stale_reference_q(v, sm_scale));
  ASSERT_LT(c, 0.0f);
  for (int h_q : {64, 128}) {
    SCOPED_TRACE("h_q=" + std::to_string(h_q) + " c=" + std::to_string(c));
    DecodeProblem p;
    p.cfg.format = KvFormat::kModel1Fp8;
    p.cfg.b = 3;
    p.cfg.s_q = 2;
    p.cfg.h_q = h_q;
    p.cfg.topk = 192;
    p.cfg.sm_scale = sm_scale;
    p.cfg.split_keys = 16384;  // one split: both keys meet in one softmax
    HostCache& kv = p.kv;
    kv.format = KvFormat::kModel1Fp8;
    kv.d_qk = kv_format_d_qk(kv.format);
    kv.page_size = 64;
    kv.num_pages = 2;
    kv.page_stride = kv_min_page_stride(kv.format, kv.page_size, kv.d_qk);
    kv.bytes.assign(static_cast<size_t>(kv.num_pages * kv.page_stride), 0);
    const uint16_t v_bits = to_bf16(v);
    for (int64_t slot = 0; slot < kv.num_slots(); ++slot) {
      const auto ranges = token_byte_ranges(kv, slot);
      uint8_t* data = kv.bytes.data() + ranges[0].first;
      std::fill_n(data, model1_fp8::kNopeBytes, uint8_t{0x3f});
      for (int d = 0; d < 64; ++d) std::memcpy(data + model1_fp8::kNopeBytes + 2 * d, &v_bits, 2);
      uint8_t* scales = kv.bytes.data() + ranges[1].first;
      std::fill_n(scales, model1_fp8::kNumTiles, uint8_t{127});
      if (slot == 20) data[0] = 0;  // the second key: dim 0 = 0
    }
    p.cfg.d_qk = kv.d_qk;
    p.q.assign(static_cast<size_t>(p.cfg.b) * p.cfg.s_q * h_q * p.q_row(), 0);
    for (size_t r = 0; r < p.q.size(); r += static_cast<size_t>(p.q_row())) p.q[r] = to_bf16(c);
    for (int r = 0; r < p.cfg.b * p.cfg.s_q; ++r) {
      std::vector<int32_t> row(192, -1);
      row[3] = 10;
      row[150] = 20;
      p.indices.insert(p.indices.end(), row.begin(), row.end());
    }
    const DecodeResult ref = run_cpu(p);
    p.upload();
    const DecodeResult got = run_gpu(p);
    EXPECT_TRUE(close_to(got, ref));
    size_t diffs = 0;
    for (size_t k = 0; k < got.out.size(); ++k) diffs += k % 512 != 0 && got.out[k] != v_bits;
    EXPECT_EQ(diffs, 0u) << "outputs not exactly " << v;
  }
}

// ---- the reduced matrix for compute-sanitizer (gtest filter CudaSmall.*) ----------------------

void run_small(const DecodeCase& cfg) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(cfg.describe() + " seed=" + std::to_string(seed));
  DecodeProblem p = make_problem(cfg, seed);
  const DecodeResult ref = run_cpu(p);
  p.upload();
  EXPECT_TRUE(close_to(run_gpu(p), ref));
}

TEST(CudaSmall, DecodeModel1WithExtraAndSplits) {
  MODEL1_REQUIRE_GPU();
  DecodeCase c;
  c.format = KvFormat::kModel1Fp8;
  c.h_q = 64; c.b = 2; c.s_q = 2; c.topk = 37;
  c.main = CacheSpec{61, 20, 16, 0};
  c.has_extra = true; c.extra_topk = 1100; c.extra = CacheSpec{2, 700, 0, 0};
  c.topk_length = true; c.extra_topk_length = true; c.sink = SinkMode::kMixed;
  c.split_keys = 512;  // several splits (the default, 4096, would run one)
  c.invalid_fraction = 0.2; c.duplicate_fraction = 0.1;
  run_small(c);
}

TEST(CudaSmall, DecodeV32Heads128) {
  MODEL1_REQUIRE_GPU();
  DecodeCase c;
  c.format = KvFormat::kV32Fp8;
  c.h_q = 128; c.b = 1; c.s_q = 1; c.topk = 129;
  c.main = CacheSpec{69, 10, 0, 0};
  c.sink = SinkMode::kFinite; c.invalid_fraction = 0.3;
  run_small(c);
}

TEST(CudaSmall, DecodeBf16SmallHeadsUnaligned) {
  MODEL1_REQUIRE_GPU();
  for (int h_q : {8, 16, 32}) {
    DecodeCase c;
    c.format = KvFormat::kBf16; c.d_qk = h_q == 16 ? 576 : 512;
    c.h_q = h_q; c.b = 3; c.s_q = 3; c.topk = 1 + 36 * (h_q / 8);
    c.main = CacheSpec{1, 300, h_q == 32 ? 3 : 0, h_q == 32 ? 2 : 0};
    c.q_head_pad = h_q == 8 ? 4 : 0;
    c.all_invalid_rows = 0.3; c.invalid_fraction = 0.2;
    run_small(c);
  }
}

TEST(CudaSmall, DecodeModel1Unaligned) {
  MODEL1_REQUIRE_GPU();
  DecodeCase c;
  c.format = KvFormat::kModel1Fp8;
  c.h_q = 16; c.b = 2; c.s_q = 1; c.topk = 64;
  c.main = CacheSpec{2, 200, 5, 3};
  c.has_extra = true; c.extra_topk = 37; c.extra = CacheSpec{576, 2, 0, 1};
  c.sink = SinkMode::kPlusInf;
  run_small(c);
}

// NOTE: the sm_90a kernels on an sm_90 GPU (aligned FP8 caches, 64 / 128 heads): pipeline
// stages wrap several times (a split of 10 chunks), several splits, invalid keys, both caches.
TEST(CudaSmall, DecodeHopperModel1Heads128) {
  MODEL1_REQUIRE_GPU();
  DecodeCase c;
  c.format = KvFormat::kModel1Fp8;
  c.h_q = 128; c.b = 2; c.s_q = 2; c.topk = 300;
  c.main = CacheSpec{64, 12, 0, 0};
  c.has_extra = true; c.extra_topk = 900; c.extra = CacheSpec{2, 600, 16, 0};
  c.extra_topk_length = true; c.sink = SinkMode::kMixed;
  c.split_keys = 640;  // several splits (the default, 4096, would run one)
  c.invalid_fraction = 0.1;
  run_small(c);
}

// NOTE: 128 heads run as 2-CTA clusters on sm_90 (each CTA converts half of every chunk's keys
// and copies them into the partner's tile): V3.2 records, invalid keys and all-invalid rows,
// topk_length, a split request (stages reused across both CTAs' pair barriers).
TEST(CudaSmall, DecodeHopperV32Heads128) {
  MODEL1_REQUIRE_GPU();
  DecodeCase c;
  c.format = KvFormat::kV32Fp8;
  c.h_q = 128; c.b = 2; c.s_q = 2; c.topk = 700;
  c.main = CacheSpec{64, 24, 0, 0};
  c.has_extra = true; c.extra_topk = 500; c.extra = CacheSpec{2, 600, 16, 0};
  c.topk_length = true; c.sink = SinkMode::kFinite;
  c.split_keys = 640;  // several splits (the default, 4096, would run one)
  c.invalid_fraction = 0.2; c.all_invalid_rows = 0.3;
  run_small(c);
}

TEST(CudaSmall, DecodeHopperV32Heads64) {
  MODEL1_REQUIRE_GPU();
  DecodeCase c;
  c.format = KvFormat::kV32Fp8;
  c.h_q = 64; c.b = 3; c.s_q = 1; c.topk = 200;
  c.main = CacheSpec{61, 20, 32, 0};
  c.topk_length = true; c.sink = SinkMode::kFinite;
  c.invalid_fraction = 0.2; c.all_invalid_rows = 0.3;
  run_small(c);
}

// NOTE: the small-head sm_90a kernel (8, 16, 32 heads): 4-key producer warps, stages wrapping,
// several splits (1100 + 300 keys: 22 chunks), invalid keys and all-invalid rows, both caches.
TEST(CudaSmall, DecodeHopperSmallHeads) {
  MODEL1_REQUIRE_GPU();
  for (int h_q : {8, 16, 32}) {
    DecodeCase c;
    c.format = h_q == 16 ? KvFormat::kV32Fp8 : KvFormat::kModel1Fp8;
    c.h_q = h_q; c.b = 2; c.s_q = 2; c.topk = 300;
    c.main = CacheSpec{64, 12, 0, 0};
    c.has_extra = true; c.extra_topk = 1100; c.extra = CacheSpec{2, 800, 16, 0};
    c.extra_topk_length = h_q != 32; c.topk_length = h_q == 8;
    c.sink = h_q == 8 ? SinkMode::kMixed : SinkMode::kFinite;
    c.invalid_fraction = 0.1; c.all_invalid_rows = h_q == 32 ? 0.3 : 0.0;
    c.split_keys = 512;  // several splits (the default, 4096, would run one)
    run_small(c);
  }
}

// NOTE: V32 records through the byte-load path at 64 heads with a split request: under
// MODEL1_CUDA_DECODE_CONFIG=compact (and on GPUs below the default configuration's shared
// memory) this is the compact kernel's unaligned path over 4 head groups.
TEST(CudaSmall, DecodeV32UnalignedHeads64Splits) {
  MODEL1_REQUIRE_GPU();
  DecodeCase c;
  c.format = KvFormat::kV32Fp8;
  c.h_q = 64; c.b = 2; c.s_q = 1; c.topk = 700;
  c.main = CacheSpec{61, 40, 5, 3};
  c.has_extra = true; c.extra_topk = 64; c.extra = CacheSpec{2, 100, 0, 1};
  c.topk_length = true; c.sink = SinkMode::kMixed;
  c.split_keys = 384;  // several splits (the default, 4096, would run one)
  c.invalid_fraction = 0.1; c.duplicate_fraction = 0.1;
  run_small(c);
}

}  // namespace
}  // namespace model1::cuda_test
