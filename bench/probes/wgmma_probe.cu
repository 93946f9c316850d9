// wgmma_probe: cycles per wgmma.mma_async instruction on this GPU, by shape and operand source,
// in the loop shapes of the sm_90a decode consumers.
//
// One CTA per SM, one or two warpgroups, nothing but wgmma in the timed loop. Per iteration a
// warpgroup issues the 32 k-steps of one 64-key chunk (512 dims, 128-byte swizzled tiles as the
// kernels lay them out) and waits for them:
//   S  ss  : S^T = K Q^T as the small-head kernel computes it, A = the 64 x 512 key tile
//            (K-major), B = an N x 512 tile; all 32 k-steps into one accumulator (one chain),
//            or round-robin into `chains` accumulators;
//   S  rs  : the same with A from registers (a fixed fragment, no shared-memory A reads);
//   PV ss  : O^T += V^T P^T as the small-head kernel computes it, A = the key tile read MN-major
//            (its 64 dims of a key contiguous), eight m64 tiles of O^T, B = P^T (N x 64 keys).
// Prints cycles per instruction (clock64 on each warpgroup's first thread, averaged over the
// CTAs) and the operand bytes per cycle read from shared memory.
//
// Build: part of the CUDA build (target model1_wgmma_probe, sm_90a). Run on an sm_90 GPU:
//   build/model1_wgmma_probe [--iters N]
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "probe_check.h"

#include "cuda/ptx/wgmma.cuh"

namespace {

namespace ptx = model1::cuda::ptx;

constexpr const char* kProbeName = "wgmma_probe";

constexpr int kKeyBlock = 64 * 128;  // one 64-dim column block of the 64-key tile
constexpr int kTile = 8 * kKeyBlock; // 64 keys x 512 dims, bf16

enum Form { kSS = 0, kRS = 1, kPV = 2 };

template <int kN>
__device__ __forceinline__ void mma_ss(float (&d)[kN / 2], uint64_t da, uint64_t db, int trans_a) {
  if constexpr (kN == 16) {
    if (trans_a) ptx::wgmma_m64n16k16_bf16_f32_ss<0, 1>(d, da, db, 1);
    else ptx::wgmma_m64n16k16_bf16_f32_ss<0, 0>(d, da, db, 1);
  } else if constexpr (kN == 32) {
    if (trans_a) ptx::wgmma_m64n32k16_bf16_f32_ss<0, 1>(d, da, db, 1);
    else ptx::wgmma_m64n32k16_bf16_f32_ss<0, 0>(d, da, db, 1);
  } else if constexpr (kN == 64) {
    ptx::wgmma_m64n64k16_bf16_f32_ss<0, 0>(d, da, db, 1);
  } else {
    static_assert(kN == 128, "N 16, 32, 64 or 128");
    ptx::wgmma_m64n128k16_bf16_f32_ss<0, 0>(d, da, db, 1);
  }
}

template <int kN>
__device__ __forceinline__ void mma_rs(float (&d)[kN / 2], const uint32_t (&a)[4], uint64_t db) {
  if constexpr (kN == 16) ptx::wgmma_m64n16k16_bf16_f32_rs<0>(d, a, db, 1);
  else if constexpr (kN == 32) ptx::wgmma_m64n32k16_bf16_f32_rs<0>(d, a, db, 1);
  else if constexpr (kN == 64) ptx::wgmma_m64n64k16_bf16_f32_rs<0>(d, a, db, 1);
  else ptx::wgmma_m64n128k16_bf16_f32_rs<0>(d, a, db, 1);
}

enum Busy { kQuiet = 0, kAlu = 1, kSmem = 2, kAluSmem = 3 };

/// Warpgroups 1..4 when `busy`: the producers' kind of work beside one wgmma warpgroup, until it
/// is done (`*stop`): FP8 -> bf16 conversions on registers (kAlu), 16-byte shared-memory stores
/// and loads (kSmem), or both.
template <int kBusy>
__device__ void busy_loop(uint8_t* region, const volatile int* stop) {
  uint32_t r[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) r[i] = 0x3c3c3c3cu + threadIdx.x + i;
  uint4* st = reinterpret_cast<uint4*>(region);
  const int t = threadIdx.x - 128;
  for (int it = 0; *stop == 0; ++it) {
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      if constexpr ((kBusy & kAlu) != 0) {
#pragma unroll
        for (int i = 0; i < 8; ++i) r[i] = ptx::mul_bf16x2(ptx::cvt_e4m3x2_f16x2(r[i]), 0x3f803f80u) ^ r[(i + 1) % 8];
      }
      if constexpr ((kBusy & kSmem) != 0) {
        const int slot = (t + 512 * (it * 4 + u)) % 2048;  // 32 KiB region, consecutive lanes
        st[slot] = make_uint4(r[0], r[1], r[2], r[3]);
        const uint4 v = st[(slot + 1024) % 2048];
        r[0] ^= v.x;
        r[1] ^= v.w;
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) ptx::keep_alive(r[i]);
  if (r[0] == 0x12345678u) st[0] = make_uint4(r[1], r[2], r[3], r[4]);
}

/// kAcc accumulators of N/2 floats; S forms use chains (<= kAcc) of them, PV all 8.
template <int kN, int kForm, int kChains, int kBusy = kQuiet>
__global__ void __launch_bounds__(kBusy != kQuiet ? 640 : 256, 1) probe_kernel(int iters, int smem_bytes, unsigned long long* cycles, float* sink) {
  extern __shared__ __align__(1024) uint8_t smem[];
  constexpr int kAcc = kForm == kPV ? 8 : kChains;
  __shared__ int stop;
  if (threadIdx.x == 0) stop = 0;
  if constexpr (kBusy != kQuiet) {
    __syncthreads();
    if (threadIdx.x >= 128) {
      busy_loop<kBusy>(smem + smem_bytes - 32768, &stop);
      return;
    }
  }
  const int wg = threadIdx.x / 128;
  uint8_t* tile = smem;                      // A: the key tile (shared by the warpgroups)
  uint8_t* b_tile = smem + kTile + wg * 8 * kN * 128;  // B: N x 512 (S) or N x 64 keys (PV)
  const int fillers = kBusy != kQuiet ? 128 : static_cast<int>(blockDim.x);
  for (int i = threadIdx.x; i < smem_bytes / 4; i += fillers)
    reinterpret_cast<uint32_t*>(smem)[i] = 0x3c003c00u ^ (i & 0x00ff00ffu);  // small bf16 values
  ptx::fence_proxy_async_smem();
  if constexpr (kBusy != kQuiet) ptx::named_barrier_sync(1, 128);
  else __syncthreads();
  float acc[kAcc][kN / 2];
#pragma unroll
  for (int c = 0; c < kAcc; ++c) {
#pragma unroll
    for (int e = 0; e < kN / 2; ++e) acc[c][e] = 0.0f;
  }
  const uint32_t a_addr = ptx::smem_addr(tile), b_addr = ptx::smem_addr(b_tile);
  uint32_t afrag[4] = {0x3c003c00u, 0x3c003c01u, 0x3c003c02u, 0x3c003c03u};
  const long long t0 = clock64();
  for (int it = 0; it < iters; ++it) {
    ptx::wgmma_fence();
    if constexpr (kForm == kPV) {
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
        for (int mt = 0; mt < 8; ++mt) {
          const uint64_t dv = ptx::smem_desc_sw128(ptx::opaque(a_addr) + mt * kKeyBlock + kk * 16 * 128, kKeyBlock, 1024);
          const uint64_t dp = ptx::smem_desc_sw128(ptx::opaque(b_addr) + kk * 32, 16, 1024);
          mma_ss<kN>(acc[mt], dv, dp, 1);
        }
      }
    } else {
      uint64_t da = ptx::smem_desc_sw128(ptx::opaque(a_addr), 16, 1024);
      uint64_t db = ptx::smem_desc_sw128(ptx::opaque(b_addr), 16, 1024);
#pragma unroll
      for (int cb = 0; cb < 8; ++cb) {
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          const int step = cb * 4 + kk;
          if constexpr (kForm == kSS) mma_ss<kN>(acc[step % kChains], da, db, 0);
          else mma_rs<kN>(acc[step % kChains], afrag, db);
          da = ptx::opaque64(ptx::desc_advance(da, kk < 3 ? 32 : kKeyBlock - 3 * 32));
          db = ptx::opaque64(ptx::desc_advance(db, kk < 3 ? 32 : kN * 128 - 3 * 32));
        }
      }
    }
    ptx::wgmma_commit();
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int c = 0; c < kAcc; ++c) {
#pragma unroll
      for (int e = 0; e < kN / 2; ++e) ptx::fence_operand(acc[c][e]);
    }
    ptx::keep_alive(afrag[0]);
  }
  const long long t1 = clock64();
  if constexpr (kBusy != kQuiet) {
    if (threadIdx.x == 0) *static_cast<volatile int*>(&stop) = 1;
  }
  if (threadIdx.x % 128 == 0) cycles[blockIdx.x * 2 + wg] = static_cast<unsigned long long>(t1 - t0);
  float v = 0.0f;
#pragma unroll
  for (int c = 0; c < kAcc; ++c) v += acc[c][0];
  if (v == 1.2345f) sink[0] = v;  // keeps the accumulators alive
}

template <int kN, int kForm, int kChains, int kBusy = kQuiet>
void run(const char* name, int wgs, int sms, int iters, unsigned long long* d_cycles, float* sink) {
  auto kernel = probe_kernel<kN, kForm, kChains, kBusy>;
  const int smem = kTile + wgs * 8 * kN * 128 + (kBusy != kQuiet ? 32768 : 0);
  PROBE_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  PROBE_CHECK(cudaMemset(d_cycles, 0, sizeof(unsigned long long) * 2 * sms));
  kernel<<<sms, kBusy != kQuiet ? 640 : 128 * wgs, smem>>>(iters, smem, d_cycles, sink);
  PROBE_CHECK(cudaGetLastError());
  PROBE_CHECK(cudaDeviceSynchronize());
  std::vector<unsigned long long> c(size_t(2 * sms));
  PROBE_CHECK(cudaMemcpy(c.data(), d_cycles, c.size() * sizeof(c[0]), cudaMemcpyDeviceToHost));
  double sum = 0;
  int n = 0;
  for (int i = 0; i < sms; ++i) {
    for (int w = 0; w < wgs; ++w) {
      sum += double(c[size_t(2 * i + w)]);
      ++n;
    }
  }
  const double per = sum / n / (double(iters) * 32.0);
  // operand bytes a warpgroup reads from shared memory per instruction: A (64 x 16) unless rs,
  // B (N x 16)
  const double bytes = (kForm == kRS ? 0.0 : 64.0 * 32.0) + kN * 32.0;
  std::printf("| %-34s | %d | %7.1f | %6.1f | %5.1f |\n", name, wgs, per, bytes * wgs / per,
              2.0 * 64 * kN * 16 * wgs / per / 4096.0 * 100.0);
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 2000;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--iters" && i + 1 < argc) {
      iters = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: wgmma_probe [--iters N]\n");
      return 2;
    }
  }
  if (iters < 1) {
    std::fprintf(stderr, "wgmma_probe: --iters: expected >= 1, got %d\n", iters);
    return 2;
  }
  cudaDeviceProp prop{};
  PROBE_CHECK(cudaGetDeviceProperties(&prop, 0));
  if (prop.major != 9) {
    std::fprintf(stderr, "wgmma_probe: needs an sm_90 GPU (this is sm_%d%d)\n", prop.major, prop.minor);
    return 2;
  }
  const int sms = prop.multiProcessorCount;
  unsigned long long* d_cycles = nullptr;
  float* sink = nullptr;
  PROBE_CHECK(cudaMalloc(&d_cycles, sizeof(unsigned long long) * 2 * sms));
  PROBE_CHECK(cudaMalloc(&sink, sizeof(float)));
  std::printf("wgmma_probe on %s (%d SMs), %d iterations of 32 instructions per warpgroup\n", prop.name, sms, iters);
  std::printf("| loop | warpgroups | cycles / instr | smem B/clk | %% of dense peak |\n|---|---|---|---|---|\n");
  run<16, kSS, 1>("S  ss m64n16k16, 1 chain", 1, sms, iters, d_cycles, sink);
  run<16, kSS, 4>("S  ss m64n16k16, 4 chains", 1, sms, iters, d_cycles, sink);
  run<16, kRS, 1>("S  rs m64n16k16, 1 chain", 1, sms, iters, d_cycles, sink);
  run<32, kSS, 1>("S  ss m64n32k16, 1 chain", 1, sms, iters, d_cycles, sink);
  run<32, kRS, 1>("S  rs m64n32k16, 1 chain", 1, sms, iters, d_cycles, sink);
  run<64, kSS, 1>("S  ss m64n64k16, 1 chain", 1, sms, iters, d_cycles, sink);
  run<64, kRS, 1>("S  rs m64n64k16, 1 chain", 1, sms, iters, d_cycles, sink);
  run<128, kSS, 1>("S  ss m64n128k16, 1 chain", 1, sms, iters, d_cycles, sink);
  run<16, kPV, 8>("PV ss m64n16k16 MN-major A, 8 acc", 1, sms, iters, d_cycles, sink);
  run<32, kPV, 8>("PV ss m64n32k16 MN-major A, 8 acc", 1, sms, iters, d_cycles, sink);
  run<16, kSS, 1>("S  ss m64n16k16, 1 chain", 2, sms, iters, d_cycles, sink);
  run<16, kRS, 1>("S  rs m64n16k16, 1 chain", 2, sms, iters, d_cycles, sink);
  run<64, kSS, 1>("S  ss m64n64k16, 1 chain", 2, sms, iters, d_cycles, sink);
  run<16, kSS, 1, kAlu>("S  ss n16 + 4 WGs converting", 1, sms, iters, d_cycles, sink);
  run<16, kSS, 1, kSmem>("S  ss n16 + 4 WGs st/ld.shared", 1, sms, iters, d_cycles, sink);
  run<16, kSS, 1, kAluSmem>("S  ss n16 + 4 WGs both", 1, sms, iters, d_cycles, sink);
  run<16, kPV, 8, kAluSmem>("PV ss n16 + 4 WGs both", 1, sms, iters, d_cycles, sink);
  run<64, kSS, 1, kAluSmem>("S  ss n64 + 4 WGs both", 1, sms, iters, d_cycles, sink);
  return 0;
}
