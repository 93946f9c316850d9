// model1 CUDA: the inline PTX of the portable (sm_80+) kernels, one named wrapper per instruction.
// Every wrapper that touches shared memory carries the "memory" clobber so the compiler never
// moves it across a barrier.
#pragma once

#include <cstdint>

namespace model1::cuda::ptx {

/// Shared-memory address (32-bit, .shared window) of a generic pointer into shared memory.
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/// Programmatic dependent launch. NOTE: both are no-ops unless compiled for sm_90 or newer (the
/// portable objects are compiled from compute_80 and compute_89 PTX, even their sm_90 machine
/// code): only the sm_90a objects trigger and wait. This CTA lets the grid launched after it on
/// the stream with the programmatic-serialization attribute start early.
__device__ __forceinline__ void griddep_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

/// ... and the dependent grid waits here until the grid before it completed and its memory
/// writes are visible (returns at once for a grid launched without the attribute).
__device__ __forceinline__ void griddep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

/// D += A * B for one m16n8k16 tile: A bf16 row-major (4 regs), B bf16 "col" (2 regs),
/// D float32 (4 regs), fragment layouts as in the PTX ISA for mma.m16n8k16.
__device__ __forceinline__ void mma_m16n8k16_bf16_f32(float (&d)[4], const uint32_t (&a)[4],
                                                      uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// %ctaid.x read by a volatile instruction: values derived from it are computed again where it
/// is called instead of being kept alive from an earlier read (register pressure).
__device__ __forceinline__ uint32_t ctaid_x_fresh() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%ctaid.x;\n" : "=r"(r));
  return r;
}

/// Four 8x8 b16 matrices from shared memory; lane l gives the row address of matrix l / 8, as a
/// 32-bit shared-window address (smem_addr).
__device__ __forceinline__ void ldmatrix_x4_at(uint32_t (&r)[4], uint32_t smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_row)
               : "memory");
}

/// As ldmatrix_x4_at, from a generic pointer into shared memory.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  ldmatrix_x4_at(r, smem_addr(smem_row));
}

/// As ldmatrix_x4, each matrix transposed on the way (B operands stored [k][n]).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem_row))
               : "memory");
}

/// Two 8x8 b16 matrices; lanes 0..15 give the row addresses.
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(smem_row))
               : "memory");
}

/// Asynchronous global -> shared copy of 16 bytes (both addresses 16-byte aligned), L2 only.
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(smem_dst)),
               "l"(gmem_src)
               : "memory");
}

/// Asynchronous global -> shared copy of 8 bytes (both addresses 8-byte aligned).
__device__ __forceinline__ void cp_async_8(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(smem_addr(smem_dst)),
               "l"(gmem_src)
               : "memory");
}

/// Asynchronous copy of 16 bytes global -> shared (32-bit shared address `dst`), L2 only;
/// `src_bytes` 0 fills the 16 bytes with zeros and reads nothing (`src` must then still be a
/// 16-byte aligned global address).
__device__ __forceinline__ void cp_async_16_zfill(uint32_t dst, const void* src, uint32_t src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
/// The same from a generic shared pointer: 16 bytes copied when `copy`, else zero-filled.
__device__ __forceinline__ void cp_async_16_zfill(void* smem_dst, const void* gmem_src, bool copy) {
  cp_async_16_zfill(smem_addr(smem_dst), gmem_src, copy ? 16u : 0u);
}

/// cp_async_8 with the same zero fill.
__device__ __forceinline__ void cp_async_8_zfill(void* smem_dst, const void* gmem_src, bool copy) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem_addr(smem_dst)), "l"(gmem_src),
               "r"(copy ? 8 : 0)
               : "memory");
}

// ---- conversions ------------------------------------------------------------------------------
// NOTE: sm_89 and later (cvt.rn.f16x2.e4m3x2); callers in the portable objects, which are also
// compiled for sm_80, choose them under `__CUDA_ARCH__ >= 890` (kernels built from compute_80
// PTX never reach these bodies; they trap there rather than fail to assemble).
/// Two e4m3 codes (low byte first) -> f16x2, exactly (every e4m3 value, subnormals and NaN
/// included, is representable in f16).
__device__ __forceinline__ uint32_t cvt_e4m3x2_f16x2(uint32_t codes) {
  uint32_t r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  const uint16_t c = static_cast<uint16_t>(codes & 0xffffu);
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;\n" : "=r"(r) : "h"(c));
#else
  (void)codes;
  __trap();
#endif
  return r;
}

/// The same for the two codes in the upper half of `codes` (bytes 2 and 3), taken by a register
/// split instead of a shift.
__device__ __forceinline__ uint32_t cvt_e4m3x2_f16x2_hi(uint32_t codes) {
  uint32_t r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm("{\n.reg .b16 lo, hi;\nmov.b32 {lo, hi}, %1;\ncvt.rn.f16x2.e4m3x2 %0, hi;\n}\n" : "=r"(r) : "r"(codes));
#else
  (void)codes;
  __trap();
#endif
  return r;
}

/// a * b + c per bf16 lane, rounded to nearest even once (sm_80; subnormals kept). With c = -0
/// (0x80008000) it is the product rounded once, for every a * b (a zero product keeps its sign).
__device__ __forceinline__ uint32_t fma_bf16x2(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t r;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

/// 2^x by the special-function unit, results below 2^-126 flushed to zero (exp2f adds a range
/// test and two multiplies per call to produce them as subnormals).
__device__ __forceinline__ float ex2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/// A 16-byte global store marked streaming (.cs: likely accessed once, evicted first).
__device__ __forceinline__ void st_global_cs_16(void* dst, const uint4& v) {
  asm volatile("st.global.cs.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"l"(dst), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
}

/// Closes the group of cp.async issued by this thread so far.
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/// Waits for every cp.async this thread issued (committed or not).
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}

}  // namespace model1::cuda::ptx
