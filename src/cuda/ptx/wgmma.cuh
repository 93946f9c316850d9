// model1 CUDA: Hopper (sm_90a) inline PTX: warpgroup matrix multiply-accumulate (wgmma) with
// shared-memory descriptors, mbarriers, proxy fences, register reallocation, named barriers.
// Only code compiled for sm_90a includes this header. Every wrapper that touches shared
// memory carries the "memory" clobber.
#pragma once

#include <cstdint>

#include "cuda/ptx/mma.cuh"

namespace model1::cuda::ptx {

// ---- shared-memory matrix descriptors (PTX ISA, "Matrix Descriptor Format" of wgmma) ------
// bits 0-13: start address >> 4; 16-29: leading-dimension byte offset >> 4; 32-45: stride-
// dimension byte offset >> 4; 49-51: base offset (0: every swizzle atom is 1024-byte aligned);
// 62-63: swizzle mode (1 = 128-byte swizzle).
inline constexpr uint64_t kDescSwizzle128B = uint64_t{1} << 62;

/// Descriptor of a bf16 operand in the 128-byte-swizzle layout: rows of 128 bytes (64 values),
/// 8-row atoms of 1024 bytes. `lbo` / `sbo` in bytes. K-major operands: sbo = 1024 (next 8
/// rows), lbo unused. MN-major operands: lbo = bytes between 64-wide MN blocks, sbo = 1024
/// (next 8 k rows).
__device__ __forceinline__ uint64_t smem_desc_sw128(uint32_t smem_byte_addr, uint32_t lbo, uint32_t sbo) {
  return kDescSwizzle128B | (uint64_t{(sbo >> 4) & 0x3fffu} << 32) |
         (uint64_t{(lbo >> 4) & 0x3fffu} << 16) | uint64_t{(smem_byte_addr >> 4) & 0x3fffu};
}

/// The descriptor `d` moved by `bytes` (a multiple of 16) along its start address.
__device__ __forceinline__ uint64_t desc_advance(uint64_t d, uint32_t bytes) { return d + (bytes >> 4); }

/// `v` through a volatile move: the compiler cannot treat the result as loop-invariant, so
/// values derived from it (descriptors) are recomputed where used instead of being hoisted into
/// registers that the accumulators need.
__device__ __forceinline__ uint32_t opaque(uint32_t v) {
  uint32_t r;
  asm volatile("mov.b32 %0, %1;\n" : "=r"(r) : "r"(v));
  return r;
}

/// `d` through a volatile move (64-bit): descriptors stepped with it stay one live value
/// instead of being precomputed and hoisted.
__device__ __forceinline__ uint64_t opaque64(uint64_t d) {
  uint64_t r;
  asm volatile("mov.b64 %0, %1;\n" : "=l"(r) : "l"(d));
  return r;
}

/// Orders this thread's register accesses to `r` against the asynchronous wgmma (the
/// compiler must neither cache nor move them across a wgmma fence/commit/wait).
__device__ __forceinline__ void fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

/// Generic-proxy writes to shared memory by this thread become visible to the async proxy
/// (wgmma operand reads) once a barrier orders them.
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// ---- conversions (the e4m3 ones are in mma.cuh) -----------------------------------------------
/// a * b per bf16 lane, rounded to nearest even once (sm_90; subnormals kept).
__device__ __forceinline__ uint32_t mul_bf16x2(uint32_t a, uint32_t b) {
  uint32_t r;
  asm("mul.rn.bf16x2 %0, %1, %2;\n" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

// ---- register reallocation between warpgroups -----------------------------------------------
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

// ---- named barriers ------------------------------------------------------------------------
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- mbarriers -------------------------------------------------------------------------------
__device__ __forceinline__ void mbarrier_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
/// Arrive (release at CTA scope): this thread's earlier writes are visible to waiters.
__device__ __forceinline__ void mbarrier_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/// Arrive and add `bytes` to the transaction count the current phase waits for (the bulk
/// copies that complete on this barrier).
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

/// Bulk copy (TMA, no tensor map) of `bytes` (a multiple of 16; both addresses 16-byte
/// aligned) from global memory to this CTA's shared memory; completes on mbarrier `bar`.
__device__ __forceinline__ void cp_async_bulk_g2s(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
      "l"(src), "r"(bytes), "r"(bar)
      : "memory");
}

/// Bulk copy (TMA, no tensor map) of `bytes` (a multiple of 16; both addresses 16-byte
/// aligned) from this CTA's shared memory to global memory, in this thread's bulk async-group.
__device__ __forceinline__ void cp_async_bulk_s2g(void* dst, uint32_t src, uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(dst), "r"(src), "r"(bytes)
               : "memory");
}
/// Closes this thread's bulk async-group (the copies issued since the last commit).
__device__ __forceinline__ void cp_async_bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
/// Waits until every bulk async-group of this thread is complete: its writes done (visible to
/// this thread) and its shared-memory sources read.
__device__ __forceinline__ void cp_async_bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

/// Tensor copy (TMA) of one box of the 3-d tensor map at generic address `map` (a
/// __grid_constant__ kernel parameter), box origin {c0, c1, c2} in elements, into this CTA's
/// shared memory at `dst` (laid out as the map's swizzle says); completes its bytes on mbarrier
/// `bar`, under L2 cache policy `policy`.
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const void* map, int c0, int c1, int c2, uint32_t bar,
                                            uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint"
      " [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
      "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(bar), "l"(policy)
      : "memory");
}

/// Prefetch of `bytes` (a multiple of 16, 16-byte aligned) of global memory into L2.
__device__ __forceinline__ void cp_async_bulk_prefetch_l2(const void* src, uint32_t bytes) {
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "r"(bytes) : "memory");
}

/// Prefetch into L2 of the 128-byte line holding `src`.
__device__ __forceinline__ void prefetch_l2(const void* src) {
  asm volatile("prefetch.global.L2 [%0];\n" ::"l"(src) : "memory");
}

/// Prefetch into L2 of the 128-byte lines covering [src, src + kBytes) (src 16-byte aligned):
/// one `prefetch.global.L2` per line by this thread. Unlike the bulk prefetch it takes no
/// uniform operands, so lanes with different rows issue it together.
template <int kBytes>
__device__ __forceinline__ void prefetch_l2_lines(const void* src) {
  const uint64_t a = reinterpret_cast<uint64_t>(src);
  const uint64_t first = a & ~uint64_t{127};
  const uint64_t last = (a + kBytes - 1) & ~uint64_t{127};
#pragma unroll
  for (int i = 0; i <= (kBytes + 127) / 128; ++i) {
    const uint64_t line = first + 128 * static_cast<uint64_t>(i);
    if (line <= last) prefetch_l2(reinterpret_cast<const void*>(line));
  }
}

/// An L2 cache policy: lines this thread's hinted accesses touch are evicted first.
__device__ __forceinline__ uint64_t l2_policy_evict_first() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

/// cp_async_16_zfill's full-size copy under an L2 cache policy (l2_policy_evict_first).
__device__ __forceinline__ void cp_async_16_hint(uint32_t dst, const void* src, uint64_t policy) {
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "l"(policy)
               : "memory");
}

/// The barrier receives one arrival (counted in its expected arrivals: .noinc) once every
/// cp.async this thread issued before has completed.
__device__ __forceinline__ void cp_async_mbarrier_arrive_noinc(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}

/// Blocks until the phase with parity `parity` of the barrier has completed (acquire).
__device__ __forceinline__ void mbarrier_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "WAIT_LOOP:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_LOOP;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// ---- thread-block clusters (distributed shared memory) ----------------------------------------
/// This CTA's rank in its cluster.
__device__ __forceinline__ uint32_t cluster_ctarank() {
  uint32_t r;
  asm("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
/// The shared::cluster address, in CTA `rank` of the cluster, of the variable at this CTA's
/// shared address `addr`.
__device__ __forceinline__ uint32_t mapa_shared(uint32_t addr, uint32_t rank) {
  uint32_t r;
  asm("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(addr), "r"(rank));
  return r;
}
/// Arrive on an mbarrier of any CTA of the cluster, given by its shared::cluster address
/// (default semantics: release at CTA scope; enough where the arrival orders no data of this
/// CTA, only reads already complete).
__device__ __forceinline__ void mbarrier_arrive_remote(uint32_t cluster_bar) {
  asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(cluster_bar) : "memory");
}
/// Bulk copy of `bytes` (a multiple of 16; both addresses 16-byte aligned) from this CTA's
/// shared memory (`src`) to the shared memory of a CTA of the cluster (`dst`, shared::cluster),
/// by the copy engine; completes `bytes` of transactions on that CTA's mbarrier `cluster_bar`.
__device__ __forceinline__ void cp_async_bulk_s2cluster(uint32_t dst, uint32_t src, uint32_t bytes,
                                                        uint32_t cluster_bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.shared::cta.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
      "r"(src), "r"(bytes), "r"(cluster_bar)
      : "memory");
}
/// Every thread of every CTA of the cluster (release / acquire): a cluster-wide barrier.
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

// ---- register liveness ----------------------------------------------------------------------
/// Keeps `r` alive (and unchanged) up to this point: the A-fragment registers of an
/// asynchronous wgmma must not be reused before the wgmma is known complete.
__device__ __forceinline__ void keep_alive(uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }

// ---- wgmma.mma_async (generated by scripts/gen-wgmma-wrappers; do not edit by hand) ----------
/// D(64 x 8, f32) = (scale_d ? D : 0) + A(64 x 16) * B(16 x 8), A and B bf16 in shared
/// memory (descriptors); trans_b 1: B stored MN-major (N contiguous); trans_a 1: A stored
/// MN-major (M contiguous). 4 registers per thread.
template <int kTransB, int kTransA = 0>
__device__ __forceinline__ void wgmma_m64n8k16_bf16_f32_ss(float (&d)[4], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %6, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3}, "
      "%4, %5, p, 1, 1, %8, %7;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(kTransB), "n"(kTransA));
}

/// D(64 x 16, f32) = (scale_d ? D : 0) + A(64 x 16) * B(16 x 16), A and B bf16 in shared
/// memory (descriptors); trans_b 1: B stored MN-major (N contiguous); trans_a 1: A stored
/// MN-major (M contiguous). 8 registers per thread.
template <int kTransB, int kTransA = 0>
__device__ __forceinline__ void wgmma_m64n16k16_bf16_f32_ss(float (&d)[8], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %10, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7}, "
      "%8, %9, p, 1, 1, %12, %11;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(kTransB), "n"(kTransA));
}

/// D(64 x 32, f32) = (scale_d ? D : 0) + A(64 x 16) * B(16 x 32), A and B bf16 in shared
/// memory (descriptors); trans_b 1: B stored MN-major (N contiguous); trans_a 1: A stored
/// MN-major (M contiguous). 16 registers per thread.
template <int kTransB, int kTransA = 0>
__device__ __forceinline__ void wgmma_m64n32k16_bf16_f32_ss(float (&d)[16], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %18, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "
      "%16, %17, p, 1, 1, %20, %19;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(kTransB), "n"(kTransA));
}

/// D(64 x 64, f32) = (scale_d ? D : 0) + A(64 x 16) * B(16 x 64), A and B bf16 in shared
/// memory (descriptors); trans_b 1: B stored MN-major (N contiguous); trans_a 1: A stored
/// MN-major (M contiguous). 32 registers per thread.
template <int kTransB, int kTransA = 0>
__device__ __forceinline__ void wgmma_m64n64k16_bf16_f32_ss(float (&d)[32], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "%32, %33, p, 1, 1, %36, %35;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(kTransB), "n"(kTransA));
}

/// D(64 x 128, f32) = (scale_d ? D : 0) + A(64 x 16) * B(16 x 128), A and B bf16 in shared
/// memory (descriptors); trans_b 1: B stored MN-major (N contiguous); trans_a 1: A stored
/// MN-major (M contiguous). 64 registers per thread.
template <int kTransB, int kTransA = 0>
__device__ __forceinline__ void wgmma_m64n128k16_bf16_f32_ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1, %68, %67;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(kTransB), "n"(kTransA));
}

/// D(64 x 128, f32) = (scale_d ? D : 0) + A(64 x 16) * B(16 x 128), A bf16 in registers (the
/// m16n8k16 A fragment of this warp's 16 rows: a[0] row g, a[1] row g + 8, a[2] / a[3] the same
/// rows 8 columns on), B bf16 in shared memory; trans_b 1: B MN-major. 64 registers per thread.
template <int kTransB>
__device__ __forceinline__ void wgmma_m64n128k16_bf16_f32_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d), "n"(kTransB));
}

// The 128 accumulator placeholders and operands of an m64n256 wgmma (the two wrappers below).
#define MODEL1_WGMMA_N256_D_LIST \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
  "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
#define MODEL1_WGMMA_N256_D(d) \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
  "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
  "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
  "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
  "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
  "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
  "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), \
  "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), \
  "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), \
  "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), \
  "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), \
  "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), \
  "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), \
  "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), \
  "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])

/// D(64 x 256, f32) = (scale_d ? D : 0) + A(64 x 16) * B(16 x 256), A bf16 in registers (the
/// m16n8k16 A fragment, as the N = 128 form), B bf16 in shared memory; trans_b 1: B MN-major.
/// 128 registers per thread (the two N = 128 halves' registers one after the other).
template <int kTransB>
__device__ __forceinline__ void wgmma_m64n256k16_bf16_f32_rs(float (&d)[128], const uint32_t (&a)[4], uint64_t desc_b,
                                                             int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %133, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      MODEL1_WGMMA_N256_D_LIST
      "{%128, %129, %130, %131}, %132, p, 1, 1, %134;\n}\n"
      : MODEL1_WGMMA_N256_D(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d), "n"(kTransB));
}

/// D(64 x 256, f32) = (scale_d ? D : 0) + A(64 x 16) * B(16 x 256), A and B bf16 in shared
/// memory (descriptors); trans_b 1: B MN-major. 128 registers per thread.
template <int kTransB>
__device__ __forceinline__ void wgmma_m64n256k16_bf16_f32_ss(float (&d)[128], uint64_t desc_a, uint64_t desc_b,
                                                             int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      MODEL1_WGMMA_N256_D_LIST
      "%128, %129, p, 1, 1, 0, %131;\n}\n"
      : MODEL1_WGMMA_N256_D(d)
      : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(kTransB));
}
#undef MODEL1_WGMMA_N256_D
#undef MODEL1_WGMMA_N256_D_LIST

/// D(64 x 16, f32) = (scale_d ? D : 0) + A(64 x 16) * B(16 x 16), A bf16 in registers (the
/// m16n8k16 A fragment of this warp's 16 rows: a[0] row g, a[1] row g + 8, a[2] / a[3] the same
/// rows 8 columns on), B bf16 in shared memory; trans_b 1: B MN-major. 8 registers per thread.
template <int kTransB>
__device__ __forceinline__ void wgmma_m64n16k16_bf16_f32_rs(float (&d)[8], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %13, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7}, "
      "{%8, %9, %10, %11}, %12, p, 1, 1, %14;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d), "n"(kTransB));
}

/// D(64 x 32, f32) = (scale_d ? D : 0) + A(64 x 16) * B(16 x 32), A bf16 in registers (the
/// m16n8k16 A fragment of this warp's 16 rows: a[0] row g, a[1] row g + 8, a[2] / a[3] the same
/// rows 8 columns on), B bf16 in shared memory; trans_b 1: B MN-major. 16 registers per thread.
template <int kTransB>
__device__ __forceinline__ void wgmma_m64n32k16_bf16_f32_rs(float (&d)[16], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %21, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "
      "{%16, %17, %18, %19}, %20, p, 1, 1, %22;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d), "n"(kTransB));
}

/// D(64 x 64, f32) = (scale_d ? D : 0) + A(64 x 16) * B(16 x 64), A bf16 in registers (the
/// m16n8k16 A fragment of this warp's 16 rows: a[0] row g, a[1] row g + 8, a[2] / a[3] the same
/// rows 8 columns on), B bf16 in shared memory; trans_b 1: B MN-major. 32 registers per thread.
template <int kTransB>
__device__ __forceinline__ void wgmma_m64n64k16_bf16_f32_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d), "n"(kTransB));
}

}  // namespace model1::cuda::ptx
