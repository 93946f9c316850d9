// model1 CUDA Hopper (sm_90a) sparse decode for 8, 16 or 32 heads (models sharded across
// GPUs): keys on the wgmma M dimension, heads on N, so no head is padded to 64. The producers,
// the key tiles, the schedule, the partial layout and the combine are those of the 64-head
// kernel (decode_kernel.cuh); only the consumer differs. Compiled only for sm_90a.
//
// Per chunk of 64 candidate keys, the consumer warpgroup:
//   S^T (64 keys x H heads) = K Q^T: wgmma m64nHk16, A = the key tile, B = the Q tile (both
//     K-major); invalid keys masked to -inf (select, never multiply);
//   per head (a column of S^T): the chunk's maximum over the 64 keys (shuffles within a warp's
//     16 keys, then the 4 warps through shared memory), the running maximum and the rescale
//     factor; P^T = exp2(S^T - m) as bf16 into a [H][64 keys] K-major tile;
//   O^T (512 x H) += V^T P^T: per 64-dim block of V, four m64nHk16 with A = the key tile read
//     MN-major (its 64 dims of a key are contiguous: V^T without a copy), B = P^T.
// Epilogue: row sums reduced the same way, O^T transposed through the (free) key tiles into
// head rows; each head's scale and lse by the rule of the other decode kernels
// (decode_row_scale, store_decode_lse), then 8 columns per thread and store.
#pragma once

#include "cuda/sm90/decode_kernel.cuh"

namespace model1::cuda::sm90 {

/// D(64 x kN) += A B for the small-head kernel: the generated m64nNk16 ss wrapper of kN.
template <int kN, int kTransA>
__device__ __forceinline__ void wgmma_small(float (&d)[kN / 2], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  if constexpr (kN == 8) {
    ptx::wgmma_m64n8k16_bf16_f32_ss<0, kTransA>(d, desc_a, desc_b, scale_d);
  } else if constexpr (kN == 16) {
    ptx::wgmma_m64n16k16_bf16_f32_ss<0, kTransA>(d, desc_a, desc_b, scale_d);
  } else {
    static_assert(kN == 32, "8, 16 or 32 heads");
    ptx::wgmma_m64n32k16_bf16_f32_ss<0, kTransA>(d, desc_a, desc_b, scale_d);
  }
}

/// The kHeads Q rows of one token (`q_rows`: its first head, `stride_h` elements between
/// heads, rows 16-byte aligned: `supports` routes other q views to the portable kernels) -> the
/// swizzled [kHeads][128 bytes] Q blocks; all loads issued before any store.
template <class T>
__device__ __forceinline__ void load_q_small(const Smem<T>& sm, const uint16_t* q_rows, int64_t stride_h) {
  constexpr int kChunksPerRow = T::kDQk / 8;  // 16-byte chunks
  constexpr int kItems = T::kHeads * kChunksPerRow;
  constexpr int kPerThread = (kItems + T::kConsumerThreads - 1) / T::kConsumerThreads;
  uint4 v[kPerThread];
#pragma unroll
  for (int u = 0; u < kPerThread; ++u) {
    const int item = threadIdx.x + u * T::kConsumerThreads;
    if (kItems % T::kConsumerThreads == 0 || item < kItems) {
      const int r = item / kChunksPerRow, c = item % kChunksPerRow;
      v[u] = load_bf16x8(q_rows + r * stride_h + c * 8, true);
    }
  }
#pragma unroll
  for (int u = 0; u < kPerThread; ++u) {
    const int item = threadIdx.x + u * T::kConsumerThreads;
    if (kItems % T::kConsumerThreads == 0 || item < kItems) {
      const int r = item / kChunksPerRow, c = item % kChunksPerRow;
      *reinterpret_cast<uint4*>(sm.q() + (c / 8) * T::kQBlockBytes + swizzle_offset(r, c % 8)) = v[u];
    }
  }
}

/// The consumer warpgroup (WG 0, threads 0..127): the chunk loop, then the outputs of every
/// head. Thread (warp w, lane) holds S^T rows (keys) k0 = 16 w + lane / 4 and k0 + 8, columns
/// (heads) 8 nb + 2 (lane % 4) + {0, 1}; O^T the same columns of dims 64 mt + k0 (+ 8).
template <class T>
__device__ void consume_small(const Smem<T>& sm, const DecodeParams& p, int chunk_begin, int chunk_end) {
  constexpr int H = T::kHeads;
  constexpr int kNB = H / 8;        // n8 column blocks of an accumulator
  constexpr int kAcc = H / 2;       // f32 per thread of one m64nH accumulator
  constexpr int kMT = T::kDV / 64;  // m tiles of O^T (64 dims each)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int k0 = warp * 16 + lane / 4;
  const int col0 = 2 * (lane % 4);
  const float scale_log2 = p.scale_log2;

  float o[kMT][kAcc];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int e = 0; e < kAcc; ++e) o[mt][e] = 0.0f;
  }
  float m[kNB][2], l[kNB][2];  // per column: running max (base 2, -inf while none), partial sum
#pragma unroll
  for (int nb = 0; nb < kNB; ++nb) {
    m[nb][0] = m[nb][1] = -INFINITY;
    l[nb][0] = l[nb][1] = 0.0f;
  }

  {
    const CtaCoord cc = cta_coord(p);
    load_q_small<T>(sm, p.q + cc.i * p.q_stride_b + cc.j * p.q_stride_s + cc.g * H * p.q_stride_h, p.q_stride_h);
  }
  ptx::fence_proxy_async_smem();  // Q: generic stores -> wgmma operand reads
  ptx::named_barrier_sync(T::kBarrierQ, T::kConsumerThreads);

  const uint32_t q_base = ptx::smem_addr(sm.q());
  const uint32_t p_base = ptx::smem_addr(sm.p());
  float* red_max = sm.red_max(0);  // [4 warps][H]
  PipelineState<T::kStages> ps;
  for (int c = chunk_begin; c < chunk_end; ++c) {
    ptx::mbarrier_wait(sm.full_bar(ps.stage), ps.phase);
    const uint32_t k_addr = ptx::opaque(ptx::smem_addr(sm.k(ps.stage)));

    // ---- S^T = K Q^T ----
    float s[kAcc];
#pragma unroll
    for (int e = 0; e < kAcc; ++e) s[e] = 0.0f;
    ptx::wgmma_fence();
    uint64_t da = ptx::smem_desc_sw128(k_addr, 16, 1024);
    uint64_t db = ptx::smem_desc_sw128(ptx::opaque(q_base), 16, 1024);
#pragma unroll
    for (int cb = 0; cb < T::kColBlocks; ++cb) {
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {  // 16 dims = 32 bytes along the 128-byte swizzled rows
        wgmma_small<H, 0>(s, da, db, cb > 0 || kk > 0 ? 1 : 0);
        da = ptx::opaque64(ptx::desc_advance(da, kk < 3 ? 32 : T::kBlockBytes - 3 * 32));
        db = ptx::opaque64(ptx::desc_advance(db, kk < 3 ? 32 : T::kQBlockBytes - 3 * 32));
      }
    }
    ptx::wgmma_commit();
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int e = 0; e < kAcc; ++e) ptx::fence_operand(s[e]);

    // ---- mask, the chunk's maximum per head ----
    const uint8_t* valid = sm.valid(ps.stage);
    const bool ok0 = valid[k0] != 0, ok1 = valid[k0 + 8] != 0;
    float mx[kNB][2];
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        s[4 * nb + e] = masked_logit(s[4 * nb + e], ok0, scale_log2);
        s[4 * nb + 2 + e] = masked_logit(s[4 * nb + 2 + e], ok1, scale_log2);
        float v = fmaxf(s[4 * nb + e], s[4 * nb + 2 + e]);
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 4));
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 8));
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 16));
        // NOTE: fl(max(s) x scale) is the maximum of the scaled logits (scale > 0).
        mx[nb][e] = kFastExp ? v * scale_log2 : v;
      }
    }
    if (lane < 4) {
#pragma unroll
      for (int nb = 0; nb < kNB; ++nb) {
        red_max[warp * H + 8 * nb + col0] = mx[nb][0];
        red_max[warp * H + 8 * nb + col0 + 1] = mx[nb][1];
      }
    }
    ptx::named_barrier_sync(T::kBarrierMax, T::kConsumerThreads);
    float alpha[kNB][2], m_use[kNB][2];
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int col = 8 * nb + col0 + e;
        const float m_chunk = fmaxf(fmaxf(red_max[col], red_max[H + col]), fmaxf(red_max[2 * H + col], red_max[3 * H + col]));
        const float m_new = fmaxf(m[nb][e], m_chunk);
        // NOTE: while no valid key was seen m stays -inf; subtracting 0 keeps exp2 at 0.
        m_use[nb][e] = m_new == -INFINITY ? 0.0f : m_new;
        alpha[nb][e] = exp2_chunk(m[nb][e] - m_use[nb][e]);
        m[nb][e] = m_new;
      }
    }

    // ---- P^T = exp2(S^T - m) -> shared memory [head][key], partial sums ----
    uint8_t* sp = sm.p();
    const uint32_t in_chunk = 2 * (k0 % 8);
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float p0 = exp2_logit(s[4 * nb + e], m_use[nb][e], scale_log2);      // key k0
        const float p1 = exp2_logit(s[4 * nb + 2 + e], m_use[nb][e], scale_log2);  // key k0 + 8
        l[nb][e] = l[nb][e] * alpha[nb][e] + (p0 + p1);
        const int head = 8 * nb + col0 + e;
        const uint32_t pair = pack_bf16x2(p0, p1);
        *reinterpret_cast<uint16_t*>(sp + swizzle_offset(head, k0 / 8) + in_chunk) = static_cast<uint16_t>(pair);
        *reinterpret_cast<uint16_t*>(sp + swizzle_offset(head, k0 / 8 + 1) + in_chunk) =
            static_cast<uint16_t>(pair >> 16);
      }
    }
    ptx::fence_proxy_async_smem();  // P^T: generic stores -> wgmma operand reads
    // every warp's P^T columns written, every warp done with this chunk's maxima
    ptx::named_barrier_sync(T::kBarrierP, T::kConsumerThreads);

    // ---- O^T *= alpha (per head column), O^T += V^T P^T ----
    bool rescale = false;
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb) rescale = rescale || alpha[nb][0] != 1.0f || alpha[nb][1] != 1.0f;
    // NOTE: skipping a multiply by exactly 1 changes no bit.
    if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
        for (int nb = 0; nb < kNB; ++nb) {
          o[mt][4 * nb + 0] *= alpha[nb][0];
          o[mt][4 * nb + 1] *= alpha[nb][1];
          o[mt][4 * nb + 2] *= alpha[nb][0];
          o[mt][4 * nb + 3] *= alpha[nb][1];
        }
      }
    }
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
      for (int e = 0; e < kAcc; ++e) ptx::fence_operand(o[mt][e]);
    }
    const uint32_t p_addr = ptx::opaque(p_base);
    ptx::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < T::kBlockN / 16; ++kk) {
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        // A = V^T: dims 64 mt .. of keys 16 kk .., MN-major (lbo: next 64 dims, unused at M 64)
        const uint64_t dv = ptx::smem_desc_sw128(k_addr + mt * T::kBlockBytes + kk * 16 * 128, T::kBlockBytes, 1024);
        const uint64_t dp = ptx::smem_desc_sw128(p_addr + kk * 32, 16, 1024);  // B = P^T, K-major
        wgmma_small<H, 1>(o[mt], dv, dp, 1);
      }
    }
    ptx::wgmma_commit();
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
      for (int e = 0; e < kAcc; ++e) ptx::fence_operand(o[mt][e]);
    }
    ptx::mbarrier_arrive(sm.empty_bar(ps.stage));  // the key tile may be overwritten
    ps.advance();
  }

  // ---- epilogue: per-head sums over the warpgroup, O^T -> head rows, outputs ----
  float* red_sum = sm.red_sum(0);                                 // [4 warps][H]
  float* stat_m = reinterpret_cast<float*>(sm.at(T::kStatOffset));  // [H]
#pragma unroll
  for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float v = l[nb][e];
      v += __shfl_xor_sync(0xffffffffu, v, 4);
      v += __shfl_xor_sync(0xffffffffu, v, 8);
      v += __shfl_xor_sync(0xffffffffu, v, 16);
      if (lane < 4) red_sum[warp * H + 8 * nb + col0 + e] = v;
      if (lane < 4 && warp == 0) stat_m[8 * nb + col0 + e] = m[nb][e];
    }
  }
  // NOTE: O^T staged as f32 head rows across both key tiles (free: every chunk is consumed and
  // its wgmma complete); the row pitch of 516 floats makes the transposing stores conflict-free.
  constexpr int kOPitch = T::kDV + 4;
  static_assert(H * kOPitch * 4 <= T::kStages * T::kTileBytes, "O staging fits the key tiles");
  float* stage = reinterpret_cast<float*>(sm.k(0));
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float* row = stage + (8 * nb + col0 + e) * kOPitch + 64 * mt + k0;
        row[0] = o[mt][4 * nb + e];
        row[8] = o[mt][4 * nb + 2 + e];
      }
    }
  }
  ptx::named_barrier_sync(T::kBarrierMax, T::kConsumerThreads);

  const CtaCoord cc = cta_coord(p);
  const int num_splits = request_schedule(clamp_length(p.topk_length, cc.i, p.topk),
                                          p.extra_indices != nullptr
                                              ? clamp_length(p.extra_topk_length, cc.i, p.extra_topk)
                                              : 0,
                                          p.split_chunks)
                             .num_splits;
  const bool direct = num_splits == 1;
  const int64_t row0 = (static_cast<int64_t>(cc.i) * p.s_q + cc.j) * p.h_q + cc.g * H;  // the CTA's head 0
  // NOTE: one thread per head finishes the row statistics (all heads at once, not one after the
  // other), then every thread scales and stores 8 consecutive columns at a time.
  float* scale = red_max;  // [H] factor, then [H] 1 when the row is empty
  if (threadIdx.x < H) {
    const int h = threadIdx.x;
    const float l_total = (red_sum[h] + red_sum[H + h]) + (red_sum[2 * H + h] + red_sum[3 * H + h]);
    const DecodeRowScale rs = decode_row_scale(p, cc.g * H + h, direct, stat_m[h], l_total);
    store_decode_lse(p, row0 + h, cc.split, direct, rs);
    scale[h] = rs.factor;
    scale[H + h] = rs.empty ? 1.0f : 0.0f;
  }
  ptx::named_barrier_sync(T::kBarrierP, T::kConsumerThreads);
  constexpr int kVecs = T::kDV / 8;  // 8-column pieces per head row
#pragma unroll 2
  for (int item = threadIdx.x; item < H * kVecs; item += T::kConsumerThreads) {
    const int h = item / kVecs, d = (item % kVecs) * 8;
    const float factor = scale[h];
    const bool empty = scale[H + h] != 0.0f;
    const float4 a = *reinterpret_cast<const float4*>(stage + h * kOPitch + d);
    const float4 b = *reinterpret_cast<const float4*>(stage + h * kOPitch + d + 4);
    const int64_t row = row0 + h;
    if (direct) {
      uint4 v = make_uint4(0, 0, 0, 0);
      if (!empty) {
        v = make_uint4(pack_bf16x2(a.x * factor, a.y * factor), pack_bf16x2(a.z * factor, a.w * factor),
                       pack_bf16x2(b.x * factor, b.y * factor), pack_bf16x2(b.z * factor, b.w * factor));
      }
      // out 16-byte aligned (`supports`), d a multiple of 8: one 16-byte streaming store
      ptx::st_global_cs_16(p.out + row * T::kDV + d, v);
    } else {
      float4* dst = reinterpret_cast<float4*>(p.partial_o + (row * p.max_splits + cc.split) * T::kDV + d);
      const float f = factor;
      const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      dst[0] = empty ? zero : make_float4(a.x * f, a.y * f, a.z * f, a.w * f);
      dst[1] = empty ? zero : make_float4(b.x * f, b.y * f, b.z * f, b.w * f);
    }
  }
}

/// The small-head split kernel. Grid: b * s_q * max_splits CTAs (one head group).
template <class T>
__global__ void __launch_bounds__(T::kThreads, 1)
    sparse_decode_sm90_small_kernel(const __grid_constant__ DecodeParams p) {
  const Smem<T> sm;
  decode_cta<T>(p, sm, [&](int, int chunk_begin, int chunk_end) {
    set_max_regs<T::kLaunchRegs, T::kConsumerRegs>();
    consume_small<T>(sm, p, chunk_begin, chunk_end);
  });
}

}  // namespace model1::cuda::sm90
