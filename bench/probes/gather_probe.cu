// gather_probe: how fast can an H200 gather MODEL1 cache rows at random?
//
// The decode presets read, for every (request, query token), a few hundred random 576-byte
// rows (448 FP8 + 64 bf16 RoPE values) and their 8-byte scale rows out of paged caches. This
// probe times that gather alone, with no conversion and no math, in the ways a kernel can
// issue it, so the decode kernels' bandwidth can be read against what the memory system gives:
//   stream    : a contiguous read of the same byte count (the copy-bandwidth reference);
//   ldg-U     : one warp per row, 16-byte loads, U rows of a warp in flight before use; each
//               row's index and page-table entry loaded just before it (a dependent chain);
//   ldgpre-U  : the same with the rows' addresses resolved a batch of 32 rows ahead (lane j
//               holds row j's), as the decode producers resolve them a chunk ahead;
//   bulk-R    : cp.async.bulk of each 576-byte row into a per-warp ring of R slots (the sm_90a
//               producers' way; sm_90 only), a warp reading each row back from shared memory,
//               addresses and the 8-byte scale rows loaded just before each copy;
//   bulkpre-R : the same with addresses and scale rows a batch of 32 rows ahead.
// Rows are drawn like bench/workload.cpp draws them: per query token, `keys` distinct uniform
// slots of its request's `slots`-slot cache; pages of 64 slots laid out as MODEL1.md section 1
// says (576-byte data rows, then 8-byte scale rows, the page padded to a 576-byte multiple),
// page order shuffled per request. Each timed run starts with the L2 flushed (a memset of
// 4x its size). Prints one table row per variant: time, GB/s of row bytes (584 a key).
//
// Build: part of the CUDA build (target model1_gather_probe, sm_90a). Run on an sm_90 GPU:
//   build/bench/model1_gather_probe [--requests 256] [--s-q 2] [--keys 640] [--slots 32768]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "probe_check.h"

namespace {

constexpr int kRowBytes = 576;    // data bytes of a MODEL1 row
constexpr int kScaleBytes = 8;    // scale bytes of a MODEL1 row
constexpr int kPageSlots = 64;
constexpr int64_t kPageBytes = ((kPageSlots * (kRowBytes + kScaleBytes) + kRowBytes - 1) / kRowBytes) * kRowBytes;

constexpr const char* kProbeName = "gather_probe";

struct Work {
  const uint8_t* cache;      // all requests' pages
  const int32_t* rows;       // [tokens * keys]: page-local byte offsets are derived from this
  const int32_t* page_of;    // [requests * pages_per_request]: physical page of a logical page
  int64_t tokens, keys, s_q, pages_per_request;
};

__device__ __forceinline__ void key_address(const Work& w, int64_t k, const uint8_t** data,
                                            const uint8_t** scale) {
  const int64_t token = k / w.keys;
  const int64_t request = token / w.s_q;
  const int32_t slot = w.rows[k];
  const int64_t page = w.page_of[request * w.pages_per_request + slot / kPageSlots];
  const uint8_t* base = w.cache + page * kPageBytes;
  *data = base + (slot % kPageSlots) * kRowBytes;
  *scale = base + kPageSlots * kRowBytes + (slot % kPageSlots) * kScaleBytes;
}

/// This thread's lane, its warp's index among all the grid's warps, their count, and the rows
/// to gather (warp g takes rows g, g + warps, ...).
struct WarpGrid {
  int lane;
  int64_t warp, warps, total;
};
__device__ __forceinline__ WarpGrid warp_grid(const Work& w) {
  return {static_cast<int>(threadIdx.x % 32), (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32,
          int64_t(gridDim.x) * blockDim.x / 32, w.tokens * w.keys};
}

/// Contiguous read of `n16` 16-byte words (the reference).
__global__ void stream_kernel(const uint4* src, int64_t n16, uint32_t* sink) {
  uint32_t acc = 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n16; i += stride) {
    const uint4 v = __ldcs(src + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) sink[0] = acc;  // practically never: keeps the loads alive
}

/// One warp per row, U rows of a warp in flight: lane l loads 16-byte word l (and lanes 0-3
/// words 32-35), lane 4 the scale row.
template <int U>
__global__ void ldg_kernel(Work w, uint32_t* sink) {
  const WarpGrid g = warp_grid(w);
  const int lane = g.lane;
  const int64_t warp = g.warp, warps = g.warps, total = g.total;
  uint32_t acc = 0;
  for (int64_t k0 = warp; k0 < total; k0 += warps * U) {
    uint4 a[U], b[U];
    uint2 s[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t k = k0 + int64_t(u) * warps;
      a[u] = b[u] = make_uint4(0, 0, 0, 0);
      s[u] = make_uint2(0, 0);
      if (k < total) {
        const uint8_t *d, *sc;
        key_address(w, k, &d, &sc);
        a[u] = __ldcs(reinterpret_cast<const uint4*>(d) + lane);
        if (lane < 4) b[u] = __ldcs(reinterpret_cast<const uint4*>(d) + 32 + lane);
        if (lane == 4) s[u] = __ldcs(reinterpret_cast<const uint2*>(sc));
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) acc ^= a[u].x ^ a[u].w ^ b[u].y ^ s[u].x;
  }
  if (acc == 0x9e3779b9u) sink[0] = acc;
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/// Lane j of a warp resolves the address of the warp's key j of a batch of 32 (index and page
/// loads issued a batch ahead, as the decode producers do), so no row waits on its own index.
struct BatchAddr {
  const uint8_t* data = nullptr;
  const uint8_t* scale = nullptr;
  uint32_t scale_word = 0;  // bulk_pre: the scale row's first word, loaded with the address
};

__device__ __forceinline__ BatchAddr batch_addr(const Work& w, int64_t warp, int64_t warps, int64_t batch,
                                                int lane) {
  BatchAddr a;
  const int64_t k = warp + (batch * 32 + lane) * warps;
  if (k < w.tokens * w.keys) key_address(w, k, &a.data, &a.scale);
  return a;
}

__device__ __forceinline__ BatchAddr batch_addr_scaled(const Work& w, int64_t warp, int64_t warps,
                                                       int64_t batch, int lane) {
  BatchAddr a = batch_addr(w, warp, warps, batch, lane);
  if (a.scale != nullptr) a.scale_word = __ldcs(reinterpret_cast<const uint2*>(a.scale)).x;
  return a;
}

/// ldg with addresses a batch ahead: U rows of the batch in flight at once.
template <int U>
__global__ void ldg_pre_kernel(Work w, uint32_t* sink) {
  const WarpGrid g = warp_grid(w);
  const int lane = g.lane;
  const int64_t warp = g.warp, warps = g.warps, total = g.total;
  const int64_t batches = (total / warps + 32) / 32 + 1;
  uint32_t acc = 0;
  BatchAddr cur = batch_addr(w, warp, warps, 0, lane);
  for (int64_t b = 0; b < batches; ++b) {
    const BatchAddr nxt = batch_addr(w, warp, warps, b + 1, lane);
    for (int j0 = 0; j0 < 32; j0 += U) {
      uint4 x[U], y[U];
      uint2 s[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const uint8_t* d = reinterpret_cast<const uint8_t*>(
            __shfl_sync(0xffffffffu, reinterpret_cast<uintptr_t>(cur.data), j0 + u));
        const uint8_t* sc = reinterpret_cast<const uint8_t*>(
            __shfl_sync(0xffffffffu, reinterpret_cast<uintptr_t>(cur.scale), j0 + u));
        x[u] = y[u] = make_uint4(0, 0, 0, 0);
        s[u] = make_uint2(0, 0);
        if (d != nullptr) {
          x[u] = __ldcs(reinterpret_cast<const uint4*>(d) + lane);
          if (lane < 4) y[u] = __ldcs(reinterpret_cast<const uint4*>(d) + 32 + lane);
          if (lane == 4) s[u] = __ldcs(reinterpret_cast<const uint2*>(sc));
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) acc ^= x[u].x ^ x[u].w ^ y[u].y ^ s[u].x;
    }
    cur = nxt;
  }
  if (acc == 0x9e3779b9u) sink[0] = acc;
}

/// Per-warp ring of R slots filled by cp.async.bulk (lane 0 issues, one mbarrier a slot); the
/// warp reads each row back (16 bytes a lane) before its slot is refilled. kAhead: addresses and
/// scale rows resolved a batch of 32 rows ahead (bulkpre); else each row's index, page entry and
/// scale row are loaded just before its copy (bulk).
template <int R, bool kAhead>
__global__ void bulk_kernel(Work w, uint32_t* sink) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) uint8_t smem[];
  const int lane = threadIdx.x % 32;
  const int wib = threadIdx.x / 32;
  const int warps_per_cta = blockDim.x / 32;
  uint8_t* ring = smem + size_t(wib) * R * kRowBytes;
  uint64_t* bar = reinterpret_cast<uint64_t*>(smem + size_t(warps_per_cta) * R * kRowBytes) + wib * R;
  const WarpGrid g = warp_grid(w);
  const int64_t warp = g.warp, warps = g.warps, total = g.total;
  const int64_t mine = total > warp ? (total - warp + warps - 1) / warps : 0;  // rows of this warp
  if (lane == 0) {
    for (int r = 0; r < R; ++r)
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(bar + r)));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncwarp();
  uint32_t acc = 0;
  // Row i of this warp (global row warp + i * warps): batch i / 32, lane i % 32.
  BatchAddr cur, nxt;
  int64_t batch = 0;
  if constexpr (kAhead) {
    cur = batch_addr_scaled(w, warp, warps, 0, lane);
    nxt = batch_addr_scaled(w, warp, warps, 1, lane);
  }
  auto issue = [&](int64_t i) {
    const uint8_t* d;
    if constexpr (kAhead) {
      if (i / 32 != batch) {
        acc ^= cur.scale_word;  // the batch's scale rows, loaded a batch ago
        cur = nxt;
        batch = i / 32;
        nxt = batch_addr_scaled(w, warp, warps, batch + 1, lane);
      }
      d = reinterpret_cast<const uint8_t*>(__shfl_sync(0xffffffffu, reinterpret_cast<uintptr_t>(cur.data), int(i % 32)));
    } else {
      const uint8_t* sc;
      key_address(w, warp + i * warps, &d, &sc);
      if (lane == 4) acc ^= __ldcs(reinterpret_cast<const uint2*>(sc)).x;
    }
    const int r = int(i % R);
    if (lane == 0) {
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar + r)),
                   "r"(kRowBytes)
                   : "memory");
      asm volatile(
          "cp.async.bulk.shared::cta.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
              smem_addr(ring + r * kRowBytes)),
          "l"(d), "r"(kRowBytes), "r"(smem_addr(bar + r))
          : "memory");
    }
  };
  for (int64_t i = 0; i < R && i < mine; ++i) issue(i);
  for (int64_t i = 0; i < mine; ++i) {
    const int r = int(i % R);
    const uint32_t parity = uint32_t(i / R) & 1;
    uint32_t done = 0;
    while (!done) {
      asm volatile(
          "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
          : "=r"(done)
          : "r"(smem_addr(bar + r)), "r"(parity)
          : "memory");
    }
    const uint4 v = *reinterpret_cast<const uint4*>(ring + r * kRowBytes + lane * 16);
    acc ^= v.x ^ v.w;
    __syncwarp();
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // the reads above -> the refill
    if (i + R < mine) issue(i + R);
  }
  if (acc == 0x9e3779b9u) sink[0] = acc;
#else
  (void)w;
  (void)sink;
#endif
}

struct Args {
  int64_t requests = 256, s_q = 2, keys = 640, slots = 32768;
  int runs = 10;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> int64_t {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "gather_probe: %s needs a value\n", k.c_str());
        std::exit(2);
      }
      return std::atoll(argv[++i]);
    };
    if (k == "--requests") a.requests = next();
    else if (k == "--s-q") a.s_q = next();
    else if (k == "--keys") a.keys = next();
    else if (k == "--slots") a.slots = next();
    else if (k == "--runs") a.runs = int(next());
    else {
      std::fprintf(stderr, "usage: gather_probe [--requests N] [--s-q N] [--keys N] [--slots N] [--runs N]\n");
      std::exit(2);
    }
  }
  auto bad = [](const char* name, const std::string& expected, long long got) {
    std::fprintf(stderr, "gather_probe: %s: expected %s, got %lld\n", name, expected.c_str(), got);
    std::exit(2);
  };
  if (a.requests < 1) bad("--requests", ">= 1", a.requests);
  if (a.s_q < 1) bad("--s-q", ">= 1", a.s_q);
  if (a.runs < 1) bad("--runs", ">= 1", a.runs);
  if (a.slots < 64 || a.slots % kPageSlots != 0 || a.slots >= (int64_t{1} << 31))
    bad("--slots", "a positive multiple of 64 below 2^31", a.slots);
  if (a.keys < 1 || a.keys > a.slots) bad("--keys", "1 .. --slots (" + std::to_string(a.slots) + ")", a.keys);
  if (a.requests * (a.slots / kPageSlots) >= (int64_t{1} << 31))
    bad("--requests x --slots / 64 (pages)", "fewer than 2^31", a.requests * (a.slots / kPageSlots));
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  int dev = 0, sms = 0;
  cudaDeviceProp prop{};
  PROBE_CHECK(cudaGetDevice(&dev));
  PROBE_CHECK(cudaGetDeviceProperties(&prop, dev));
  sms = prop.multiProcessorCount;
  const int64_t tokens = a.requests * a.s_q;
  const int64_t ppr = a.slots / kPageSlots;
  const int64_t pages = a.requests * ppr;
  std::printf("gather_probe on %s (%d SMs, L2 %d MiB): %lld requests x %lld tokens x %lld keys of %lld slots"
              " (%.1f MiB of cache, %.1f MiB gathered)\n",
              prop.name, sms, prop.l2CacheSize >> 20, (long long)a.requests, (long long)a.s_q,
              (long long)a.keys, (long long)a.slots, pages * kPageBytes / 1048576.0,
              tokens * a.keys * double(kRowBytes + kScaleBytes) / 1048576.0);

  // Rows: per token `keys` distinct uniform slots (partial Fisher-Yates); pages shuffled.
  std::mt19937_64 rng(20261201);
  std::vector<int32_t> rows(size_t(tokens * a.keys));
  std::vector<int32_t> perm(size_t(a.slots));
  for (int64_t t = 0; t < tokens; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    for (int64_t j = 0; j < a.keys; ++j) {
      std::uniform_int_distribution<int64_t> pick(j, a.slots - 1);
      std::swap(perm[size_t(j)], perm[size_t(pick(rng))]);
      rows[size_t(t * a.keys + j)] = perm[size_t(j)];
    }
  }
  std::vector<int32_t> page_of(static_cast<size_t>(pages));
  std::iota(page_of.begin(), page_of.end(), 0);
  std::shuffle(page_of.begin(), page_of.end(), rng);

  uint8_t* cache = nullptr;
  int32_t *d_rows = nullptr, *d_page_of = nullptr;
  uint32_t* sink = nullptr;
  uint8_t* flush = nullptr;
  const size_t flush_bytes = size_t(prop.l2CacheSize) * 4;
  const int64_t gathered = tokens * a.keys * (kRowBytes + kScaleBytes);
  PROBE_CHECK(cudaMalloc(&cache, size_t(pages * kPageBytes)));
  PROBE_CHECK(cudaMemset(cache, 0x5a, size_t(pages * kPageBytes)));
  PROBE_CHECK(cudaMalloc(&d_rows, rows.size() * 4));
  PROBE_CHECK(cudaMalloc(&d_page_of, page_of.size() * 4));
  PROBE_CHECK(cudaMalloc(&sink, 4));
  PROBE_CHECK(cudaMalloc(&flush, flush_bytes));
  PROBE_CHECK(cudaMemcpy(d_rows, rows.data(), rows.size() * 4, cudaMemcpyHostToDevice));
  PROBE_CHECK(cudaMemcpy(d_page_of, page_of.data(), page_of.size() * 4, cudaMemcpyHostToDevice));
  const Work w{cache, d_rows, d_page_of, tokens, a.keys, a.s_q, ppr};

  cudaEvent_t e0, e1;
  PROBE_CHECK(cudaEventCreate(&e0));
  PROBE_CHECK(cudaEventCreate(&e1));
  auto time_it = [&](const char* name, auto&& launch) {
    std::vector<float> ms;
    for (int r = 0; r < a.runs + 2; ++r) {
      PROBE_CHECK(cudaMemsetAsync(flush, r & 0xff, flush_bytes));
      PROBE_CHECK(cudaEventRecord(e0));
      launch();
      PROBE_CHECK(cudaEventRecord(e1));
      PROBE_CHECK(cudaEventSynchronize(e1));
      PROBE_CHECK(cudaGetLastError());
      float t = 0;
      PROBE_CHECK(cudaEventElapsedTime(&t, e0, e1));
      if (r >= 2) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    const double us = ms[ms.size() / 2] * 1e3;
    std::printf("| %-22s | %9.1f | %7.0f |\n", name, us, gathered / us / 1e3);
  };

  std::printf("| variant | us | GB/s |\n|---|---|---|\n");
  const int64_t n16 = gathered / 16;
  time_it("stream (contiguous)", [&] { stream_kernel<<<sms * 4, 512>>>(reinterpret_cast<const uint4*>(cache), n16, sink); });
  for (int ctas : {1, 2, 4}) {
    char name[64];
    std::snprintf(name, sizeof name, "ldg-1  %d x 512 thr/SM", ctas);
    time_it(name, [&] { ldg_kernel<1><<<sms * ctas, 512>>>(w, sink); });
    std::snprintf(name, sizeof name, "ldg-4  %d x 512 thr/SM", ctas);
    time_it(name, [&] { ldg_kernel<4><<<sms * ctas, 512>>>(w, sink); });
  }
  time_it("ldg-8  2 x 512 thr/SM", [&] { ldg_kernel<8><<<sms * 2, 512>>>(w, sink); });
  for (int ctas : {1, 2, 4}) {
    char name[64];
    std::snprintf(name, sizeof name, "ldgpre-2 %d x 512/SM", ctas);
    time_it(name, [&] { ldg_pre_kernel<2><<<sms * ctas, 512>>>(w, sink); });
    std::snprintf(name, sizeof name, "ldgpre-8 %d x 512/SM", ctas);
    time_it(name, [&] { ldg_pre_kernel<8><<<sms * ctas, 512>>>(w, sink); });
  }
  if (prop.major >= 9) {
    auto run_bulk = [&](auto kernel, const char* variant, int R, int warps) {
      const int smem = warps * R * (kRowBytes + 8);  // ring slots, then one mbarrier per slot
      PROBE_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      char name[64];
      std::snprintf(name, sizeof name, "%s-%d %d warps/SM", variant, R, warps);
      time_it(name, [&] { kernel<<<sms, warps * 32, smem>>>(w, sink); });
    };
    run_bulk(bulk_kernel<4, false>, "bulk", 4, 16);
    run_bulk(bulk_kernel<8, false>, "bulk", 8, 16);
    run_bulk(bulk_kernel<4, false>, "bulk", 4, 32);
    run_bulk(bulk_kernel<4, true>, "bulkpre", 4, 16);
    run_bulk(bulk_kernel<8, true>, "bulkpre", 8, 16);
    run_bulk(bulk_kernel<16, true>, "bulkpre", 16, 16);
    run_bulk(bulk_kernel<4, true>, "bulkpre", 4, 32);
    run_bulk(bulk_kernel<8, true>, "bulkpre", 8, 32);
    run_bulk(bulk_kernel<16, true>, "bulkpre", 16, 8);
  }
  return 0;
}
