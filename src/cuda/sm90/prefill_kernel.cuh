// model1 CUDA Hopper (sm_90a) sparse prefill kernel (MODEL1.md section 4): one CTA per
// (query token, group of 64 heads); a producer warpgroup gathers the token's top-k bf16 key
// rows by cp.async into a two-stage ring of 128-byte-swizzled tiles, and the two consumer
// warpgroups run the decode kernel's wgmma main loop (consume_chunks) over them, then write
// out, max_logits and lse with the attention sink. Compiled only for sm_90a.
#pragma once

#include <cstdint>

#include "cuda/common/numerics.cuh"
#include "cuda/portable/prefill_kernel.cuh"
#include "cuda/portable/prefill_params.h"
#include "cuda/ptx/wgmma.cuh"
#include "cuda/sm90/decode_kernel.cuh"
#include "cuda/sm90/epilogue.cuh"
#include "cuda/sm90/prefill_traits.cuh"

namespace model1::cuda::sm90 {

/// Producer warpgroup: for every chunk, wait until its stage is free, then each thread issues
/// one 16-byte cp.async per 64-column block for each of its group's 4 keys (an invalid index,
/// < 0 or >= s_kv, or a position past topk_length: zero-filled, its row never read), writes
/// the validity flags, and arrives twice on the stage's full barrier: now (the flags) and when
/// its copies land (cp.async.mbarrier.arrive.noinc). The indices of a chunk are loaded a chunk
/// ahead.
template <class T>
__device__ void produce_prefill(const Smem<T>& sm, const PrefillParams& p, const int32_t* idx_row, int len,
                                int num_chunks) {
  constexpr int kGroupThreads = T::kThreadsPerKeyGroup;
  constexpr int kKeys = T::kKeysPerGroup;
  const int t = static_cast<int>(threadIdx.x) - T::kConsumerThreads;
  const int grp = t / kGroupThreads, u = t % kGroupThreads;
  // NOTE: 8 threads read the 128 contiguous bytes of one 64-column block of a row together.
  const uint16_t* kv = p.kv + u * 8;

  int32_t cur[kKeys], nxt[kKeys];
#pragma unroll
  for (int k = 0; k < kKeys; ++k) {
    cur[k] = portable::load_slot(idx_row, len, k * T::kKeyGroups + grp);
    nxt[k] = portable::load_slot(idx_row, len, T::kBlockN + k * T::kKeyGroups + grp);
  }
  PipelineState<T::kStages> ps;
  for (int c = 0; c < num_chunks; ++c) {
    ptx::mbarrier_wait(sm.empty_bar(ps.stage), ps.phase ^ 1u);
    const uint32_t tile = ptx::smem_addr(sm.k(ps.stage));
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      const int key = k * T::kKeyGroups + grp;
      const bool valid = cur[k] >= 0 && static_cast<int64_t>(cur[k]) < p.s_kv;
      const uint16_t* src = valid ? kv + static_cast<int64_t>(cur[k]) * p.kv_stride : p.kv;
      const uint32_t dst = tile + key * 128 + ((u ^ (key % 8)) << 4);
#pragma unroll
      for (int b = 0; b < T::kColBlocks; ++b) {
        ptx::cp_async_16_zfill(dst + b * T::kBlockBytes, src + b * 64, valid ? 16u : 0u);
      }
      if (u == 0) sm.valid(ps.stage)[key] = valid;
    }
    ptx::mbarrier_arrive(sm.full_bar(ps.stage));
    ptx::cp_async_mbarrier_arrive_noinc(sm.full_bar(ps.stage));
    ps.advance();
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      cur[k] = nxt[k];
      nxt[k] = portable::load_slot(idx_row, len, (c + 2) * T::kBlockN + k * T::kKeyGroups + grp);
    }
  }
  ptx::cp_async_wait_all();  // no copy outlives its thread
}

/// Consumer warpgroup kWg (0 or 1) of (token i, head group g): Q, the main loop over the
/// token's num_chunks chunks, then out (its 256 columns), max_logits and lse.
template <class T, int kWg>
__device__ void prefill_consume(const Smem<T>& sm, const PrefillParams& p, int i, int g, int num_chunks) {
  constexpr int wg = kWg;
  const int lane = threadIdx.x % 32;
  const int r0 = (threadIdx.x % 128) / 32 * 16 + lane / 4;  // rows r0 and r0 + 8 of this thread

  float o[T::kDimsPerConsumer / 2];
#pragma unroll
  for (int e = 0; e < T::kDimsPerConsumer / 2; ++e) o[e] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};
  // NOTE: the sink of this thread's two heads, loaded now so the epilogue does not wait on it.
  float sink[2] = {0.0f, 0.0f};
  if (p.attn_sink != nullptr) {
    sink[0] = __ldg(p.attn_sink + g * T::kRows + r0);
    sink[1] = __ldg(p.attn_sink + g * T::kRows + r0 + 8);
  }
  load_q_rows<T>(sm, p.q + i * p.q_stride_s, p.q_stride_h, g * T::kRows, p.q_aligned16);
  ptx::fence_proxy_async_smem();
  ptx::named_barrier_sync(T::kBarrierP, T::kConsumerThreads);
  consume_chunks<T, kWg, true>(sm, p.scale_log2, 0, num_chunks, o, m, l);

  // ---- epilogue: total row sums over both warpgroups, then out, max_logits, lse ----
  publish_row_stats<T>(sm, m, l);
  float factor[2];
  bool empty[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = r0 + 8 * r;
    const float l_total = l[r];
    // NOTE: l_total is exactly 0 iff no valid key was seen; NaN in referenced keys gives a
    // NaN sum, which must propagate rather than pass for an empty row.
    empty[r] = l_total == 0.0f;
    const float lse = (m[r] + log2f(l_total)) * kLn2;
    factor[r] = softmax_out_factor(l_total, lse, p.attn_sink != nullptr, sink[r]);
    if (wg == 0 && lane % 4 == 0) {
      const int64_t out_row = static_cast<int64_t>(i) * p.h_q + g * T::kRows + row;
      p.lse[out_row] = empty[r] ? INFINITY : lse;
      p.max_logits[out_row] = empty[r] ? -INFINITY : m[r] * kLn2;
    }
  }
  // O row `row`, columns nb * 8 + 2 (lane % 4) + {0, 1} of this warpgroup, normalised, as bf16x2.
  // NOTE: select, never multiply: an empty row's factor is inf or NaN.
  auto out_pair = [&](int r, int nb) {
    return empty[r] ? 0u : pack_bf16x2(o[4 * nb + 2 * r] * factor[r], o[4 * nb + 2 * r + 1] * factor[r]);
  };
  uint16_t* out_rows = p.out + (static_cast<int64_t>(i) * p.h_q + g * T::kRows) * T::kDV;  // 64 rows
  if (p.out_aligned16) {
    // NOTE: staged through a key tile (free now: every chunk was consumed, the producer is done).
    store_rows_staged<T, kWg>(sm.k(0), out_rows, T::kDV, out_pair);
  } else {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      uint16_t* dst = out_rows + (r0 + 8 * r) * T::kDV + wg * T::kDimsPerConsumer + 2 * (lane % 4);
#pragma unroll
      for (int nb = 0; nb < T::kDimsPerConsumer / 8; ++nb) {
        const uint32_t v = out_pair(r, nb);
        if (p.out_aligned4) {
          *reinterpret_cast<uint32_t*>(dst + nb * 8) = v;
        } else {
          dst[nb * 8] = static_cast<uint16_t>(v & 0xffffu);
          dst[nb * 8 + 1] = static_cast<uint16_t>(v >> 16);
        }
      }
    }
  }
}

/// Grid (s_q, h_q / 64); 384 threads.
template <class T>
__global__ void __launch_bounds__(T::kThreads, 1) sparse_prefill_sm90_kernel(const __grid_constant__ PrefillParams p) {
  const Smem<T> sm;
  const int i = static_cast<int>(blockIdx.x);
  const int g = static_cast<int>(blockIdx.y);
  const int len = portable::clamp_topk_length(p.topk_length, i, p.topk);
  const int num_chunks = (len + T::kBlockN - 1) / T::kBlockN;

  if (threadIdx.x == 0) {
    init_pipeline_barriers<T>(sm, T::kFullArrivals);
    ptx::fence_mbarrier_init();
  }
  __syncthreads();

  // NOTE: the warpgroup index through a shuffle: the role branch is then warp-uniform.
  const int warpgroup = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 128, 0);
  if (warpgroup >= T::kConsumerWarpgroups) {
    ptx::setmaxnreg_dec<T::kProducerRegs>();
    produce_prefill<T>(sm, p, p.indices + i * p.idx_stride, len, num_chunks);
    return;
  }
  // NOTE: one call per role, each under its own register budget.
  if (warpgroup == 0) {
    set_max_regs<T::kLaunchRegs, T::kSoftmaxRegs>();
    prefill_consume<T, 0>(sm, p, i, g, num_chunks);
  } else {
    set_max_regs<T::kLaunchRegs, T::kPvRegs>();
    prefill_consume<T, 1>(sm, p, i, g, num_chunks);
  }
}

}  // namespace model1::cuda::sm90
