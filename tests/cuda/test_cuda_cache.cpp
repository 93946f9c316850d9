// model1 GPU tests: quantize_cache / store_tokens / dequantize_cache on CUDA write and read
// exactly the bytes and values of the CPU backend (MODEL1.md sections 2 and 5).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "model1/model1.h"

namespace model1::cuda_test {
namespace {

struct FormatCase {
  KvFormat format;
  int d_qk;
};
constexpr FormatCase kFormats[] = {{KvFormat::kModel1Fp8, 512},
                                   {KvFormat::kV32Fp8, 576},
                                   {KvFormat::kBf16, 512},
                                   {KvFormat::kBf16, 576}};

/// Source tokens that hit the corners of the quantization rule: all-zero tiles (amax floor),
/// tiles whose amax / 448 is an exact power of two, tiny values (e4m3 subnormals), large
/// values, negative zeros, and the odd NaN / infinity; the rest random bf16 (whose 8-bit
/// mantissas make e4m3 rounding ties common).
std::vector<uint16_t> hostile_tokens(int64_t n, int d_qk, std::mt19937_64& rng, bool specials) {
  std::vector<uint16_t> src(static_cast<size_t>(n * d_qk));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> mag(-6.0f, 4.0f);
  for (int64_t t = 0; t < n; ++t) {
    uint16_t* x = src.data() + t * d_qk;
    const float scale = std::pow(10.0f, mag(rng));
    for (int d = 0; d < d_qk; ++d) x[d] = to_bf16(normal(rng) * scale);
    switch (t % 8) {
      case 0:
        for (int d = 0; d < 64; ++d) x[d] = 0;  // zero tile
        break;
      case 1:
        x[3] = to_bf16(14.0f);  // amax 448 * 2^-5 exactly when it is the tile max
        for (int d = 0; d < 64; ++d) if (d != 3) x[d] = to_bf16(std::fmod(from_bf16(x[d]), 14.0f));
        break;
      case 2:
        for (int d = 0; d < 128; ++d) x[d] = to_bf16(normal(rng) * 1e-7f);  // below the floor
        break;
      case 3:
        x[5] = 0x8000;  // -0
        x[200] = to_bf16(3.0e4f);
        break;
      case 4:
        if (specials) x[70] = to_bf16(NAN);
        break;
      case 5:
        if (specials) x[130] = to_bf16(-INFINITY);
        break;
      default:
        break;
    }
  }
  return src;
}

TEST(CudaCache, QuantizeBytesMatchCpu) {
  MODEL1_REQUIRE_GPU();
  const uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  for (const FormatCase& f : kFormats) {
    for (int64_t P : {1, 2, 61, 64, 69, 256, 576}) {
      for (int64_t extra : {0, 48}) {
        if (sanitizer_small() && (P > 64 || extra)) continue;
        SCOPED_TRACE(std::string(kv_format_name(f.format)) + " d_qk=" + std::to_string(f.d_qk) +
                     " P=" + std::to_string(P) + " +stride=" + std::to_string(extra) +
                     " seed=" + std::to_string(seed));
        HostCache c;
        c.format = f.format;
        c.d_qk = f.d_qk;
        c.page_size = P;
        c.num_pages = std::max<int64_t>(2, 700 / P);
        c.page_stride = kv_min_page_stride(f.format, P, f.d_qk) + (f.format == KvFormat::kBf16 ? 2 * extra : extra);
        c.bytes.resize(static_cast<size_t>(c.num_pages * c.page_stride));
        for (auto& b : c.bytes) b = static_cast<uint8_t>(rng());
        c.device = DeviceBuffer::from(c.bytes);  // same garbage: padding must stay as it is

        const int64_t n = c.num_slots();
        const std::vector<uint16_t> src = hostile_tokens(n, f.d_qk, rng, true);
        DeviceBuffer d_src = DeviceBuffer::from(src);
        quantize_cache(TensorView::contiguous(const_cast<uint16_t*>(src.data()), DType::kBF16, {n, f.d_qk}),
                       c.view(false));
        quantize_cache(TensorView::contiguous(d_src.get(), DType::kBF16, {n, f.d_qk}, Device::kCUDA),
                       c.view(true));
        CUDA_OK(cudaDeviceSynchronize());
        const std::vector<uint8_t> got = c.device.download<uint8_t>();
        size_t diffs = 0, first = 0;
        for (size_t k = 0; k < got.size(); ++k) {
          if (got[k] != c.bytes[k] && diffs++ == 0) first = k;
        }
        EXPECT_EQ(diffs, 0u) << "first differing byte " << first << ": gpu " << int(got[first])
                             << " cpu " << int(c.bytes[first]);
      }
    }
  }
}

TEST(CudaCache, StoreTokensBytesMatchCpu) {
  MODEL1_REQUIRE_GPU();
  const uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  for (const FormatCase& f : kFormats) {
    for (int64_t P : {1, 61, 64, 576}) {
      SCOPED_TRACE(std::string(kv_format_name(f.format)) + " d_qk=" + std::to_string(f.d_qk) +
                   " P=" + std::to_string(P) + " seed=" + std::to_string(seed));
      HostCache c;
      c.format = f.format;
      c.d_qk = f.d_qk;
      c.page_size = P;
      c.num_pages = std::max<int64_t>(2, 1200 / P);
      c.page_stride = kv_min_page_stride(f.format, P, f.d_qk);
      c.bytes.resize(static_cast<size_t>(c.num_pages * c.page_stride));
      for (auto& b : c.bytes) b = static_cast<uint8_t>(rng());
      c.device = DeviceBuffer::from(c.bytes);
      const int64_t num_slots = c.num_slots();

      // Distinct slots (a permutation prefix) with padding rows (-1, INT_MIN) mixed in.
      const int64_t n = std::min<int64_t>(300, num_slots);
      std::vector<int32_t> perm(static_cast<size_t>(num_slots));
      for (int64_t s = 0; s < num_slots; ++s) perm[s] = static_cast<int32_t>(s);
      std::shuffle(perm.begin(), perm.end(), rng);
      std::vector<int32_t> slots(perm.begin(), perm.begin() + n);
      for (int64_t r = 0; r < n; r += 7) slots[r] = r % 2 ? -1 : std::numeric_limits<int32_t>::min();
      const std::vector<uint16_t> tokens = hostile_tokens(n, f.d_qk, rng, false);

      store_tokens(TensorView::contiguous(const_cast<uint16_t*>(tokens.data()), DType::kBF16, {n, f.d_qk}),
                   TensorView::contiguous(slots.data(), DType::kI32, {n}), c.view(false));
      DeviceBuffer d_tokens = DeviceBuffer::from(tokens), d_slots = DeviceBuffer::from(slots);
      store_tokens(TensorView::contiguous(d_tokens.get(), DType::kBF16, {n, f.d_qk}, Device::kCUDA),
                   TensorView::contiguous(d_slots.get(), DType::kI32, {n}, Device::kCUDA), c.view(true));
      CUDA_OK(cudaDeviceSynchronize());
      EXPECT_TRUE(c.device.download<uint8_t>() == c.bytes) << "bytes differ after store_tokens";

      // On CUDA a slot past the end is skipped (the CPU rejects it up front).
      std::vector<int32_t> bad = {static_cast<int32_t>(num_slots), std::numeric_limits<int32_t>::max()};
      DeviceBuffer d_bad = DeviceBuffer::from(bad);
      store_tokens(TensorView::contiguous(d_tokens.get(), DType::kBF16, {2, f.d_qk}, Device::kCUDA),
                   TensorView::contiguous(d_bad.get(), DType::kI32, {2}, Device::kCUDA), c.view(true));
      CUDA_OK(cudaDeviceSynchronize());
      EXPECT_TRUE(c.device.download<uint8_t>() == c.bytes) << "an out-of-range slot wrote bytes";
    }
  }
}

TEST(CudaCache, DequantizeMatchesCpu) {
  MODEL1_REQUIRE_GPU();
  const uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  for (const FormatCase& f : kFormats) {
    for (int64_t P : {2, 69, 256}) {
      SCOPED_TRACE(std::string(kv_format_name(f.format)) + " P=" + std::to_string(P) +
                   " seed=" + std::to_string(seed));
      CacheSpec spec{P, std::max<int64_t>(2, 800 / P), 32, 0};
      HostCache c = make_cache(f.format, f.d_qk, spec, rng, /*wide=*/true);
      c.device = DeviceBuffer::from(c.bytes);
      const int64_t n = c.num_slots();
      for (DType dt : {DType::kF32, DType::kBF16}) {
        const size_t elem = dt == DType::kF32 ? 4 : 2;
        std::vector<uint8_t> host(static_cast<size_t>(n * c.d_qk) * elem, 0xab);
        dequantize_cache(c.view(false), TensorView::contiguous(host.data(), dt, {n, c.d_qk}));
        DeviceBuffer d(host.size());
        d.fill(0xcd);
        dequantize_cache(c.view(true), TensorView::contiguous(d.get(), dt, {n, c.d_qk}, Device::kCUDA));
        CUDA_OK(cudaDeviceSynchronize());
        EXPECT_TRUE(d.download<uint8_t>() == host) << "dequantized values differ (" << dtype_name(dt) << ")";
      }
    }
  }
}

TEST(CudaSmall, QuantizeStoreDequantize) {
  MODEL1_REQUIRE_GPU();
  const uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  for (const FormatCase& f : kFormats) {
    SCOPED_TRACE(std::string(kv_format_name(f.format)) + " seed=" + std::to_string(seed));
    HostCache c;
    c.format = f.format;
    c.d_qk = f.d_qk;
    c.page_size = 61;
    c.num_pages = 3;
    c.page_stride = kv_min_page_stride(f.format, 61, f.d_qk) + 16;
    c.bytes.assign(static_cast<size_t>(c.num_pages * c.page_stride), 0x5a);
    c.device = DeviceBuffer::from(c.bytes);
    const int64_t n = c.num_slots();
    const std::vector<uint16_t> src = hostile_tokens(n, f.d_qk, rng, true);
    DeviceBuffer d_src = DeviceBuffer::from(src);
    quantize_cache(TensorView::contiguous(const_cast<uint16_t*>(src.data()), DType::kBF16, {n, f.d_qk}), c.view(false));
    quantize_cache(TensorView::contiguous(d_src.get(), DType::kBF16, {n, f.d_qk}, Device::kCUDA), c.view(true));
    std::vector<int32_t> slots = {5, -1, 100, 182};
    std::vector<uint16_t> tok(src.begin(), src.begin() + 4 * f.d_qk);
    DeviceBuffer d_slots = DeviceBuffer::from(slots), d_tok = DeviceBuffer::from(tok);
    store_tokens(TensorView::contiguous(tok.data(), DType::kBF16, {4, f.d_qk}),
                 TensorView::contiguous(slots.data(), DType::kI32, {4}), c.view(false));
    store_tokens(TensorView::contiguous(d_tok.get(), DType::kBF16, {4, f.d_qk}, Device::kCUDA),
                 TensorView::contiguous(d_slots.get(), DType::kI32, {4}, Device::kCUDA), c.view(true));
    DeviceBuffer d_f32(static_cast<size_t>(n * f.d_qk) * 4);
    dequantize_cache(c.view(true), TensorView::contiguous(d_f32.get(), DType::kF32, {n, f.d_qk}, Device::kCUDA));
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_TRUE(c.device.download<uint8_t>() == c.bytes);
    std::vector<float> host(static_cast<size_t>(n * f.d_qk));
    dequantize_cache(c.view(false), TensorView::contiguous(host.data(), DType::kF32, {n, f.d_qk}));
    const std::vector<float> got = d_f32.download<float>();
    size_t diffs = 0;
    for (size_t k = 0; k < host.size(); ++k) {
      const bool both_nan = std::isnan(got[k]) && std::isnan(host[k]);
      if (!both_nan && std::memcmp(&got[k], &host[k], 4) != 0) ++diffs;
    }
    EXPECT_EQ(diffs, 0u) << "dequantized values differ (NaN matches NaN)";
  }
}

TEST(CudaInfo, GpusFoundAndArchs) {
  MODEL1_REQUIRE_GPU();
  const std::vector<GpuInfo> gpus = gpus_found();
  ASSERT_FALSE(gpus.empty());
  EXPECT_GE(gpus[0].sm_major, 8);
  EXPECT_GT(gpus[0].num_sms, 0);
  const std::vector<std::string> archs = cuda_archs_compiled();
  ASSERT_FALSE(archs.empty());
  EXPECT_EQ(archs[0], "sm_80");
}

}  // namespace
}  // namespace model1::cuda_test
