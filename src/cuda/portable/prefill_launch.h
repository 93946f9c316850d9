// model1 CUDA sparse prefill: the host entry point (src/cuda/prefill_portable.cu), which
// launches the portable kernels or, on sm_90 GPUs, the Hopper kernel.
// Host-only header: includable from plain C++ (tests, src/cuda/backend.cu).
#pragma once

#include <string>

#include "model1/prefill.h"

namespace model1::cuda {

/// Configuration of the prefill kernel. kAuto takes the sm_90a kernel on sm_90 GPUs for 64
/// or 128 heads and 16-byte aligned kv rows (unless MODEL1_CUDA_PREFILL_KERNEL=portable, read
/// on every call); otherwise, for the portable kernel, two key tiles (gather of the
/// next chunk overlapped with the current one) where the device's opt-in shared memory per
/// block allows it, else one, else the compact configuration; MODEL1_CUDA_PREFILL_CONFIG=compact
/// (read once per process) makes kAuto take the compact one. The others force a
/// configuration (tests): kDoubleBuffered / kSingleBuffered keep the default heads per CTA
/// (16, 32 or 64), kCompact runs 16 heads per CTA (h_q / 16 head groups, 8 padded) with one
/// key tile, which fits the 99 KiB per block of sm_86/89/120 for every h_q.
enum class PrefillPipeline { kAuto, kDoubleBuffered, kSingleBuffered, kCompact };

/// Sparse prefill (MODEL1.md section 4) on CUDA tensors: the portable sm_80 kernels (mma.sync,
/// run on sm_80 and newer) or the sm_90a kernel (kAuto, see above). `args` has passed src/api validation (shapes, dtypes,
/// a single device); `sm_scale` is resolved. Enqueues on `stream` (a cudaStream_t, null for
/// the default stream) and never synchronises. Shapes: q bf16 [s_q, h_q, d_qk],
/// kv bf16 [s_kv, (1,) d_qk], indices int32 [s_q, (1,) topk], out bf16 [s_q, h_q, 512],
/// max_logits / lse f32 [s_q, h_q].
void sparse_prefill_portable(const SparsePrefillArgs& args, float sm_scale, void* stream);
void sparse_prefill_portable(const SparsePrefillArgs& args, float sm_scale, void* stream,
                             PrefillPipeline pipeline);

/// The kernel family a kAuto call runs: "sm90a", "portable" or "portable-compact".
std::string sparse_prefill_kernel_name(const SparsePrefillArgs& args, float sm_scale);

/// Dynamic shared memory (bytes) of the kernel for (d_qk, h_q) and a forced configuration
/// (kAuto: the double-buffered default).
int sparse_prefill_portable_smem_bytes(int d_qk, int h_q, PrefillPipeline pipeline);

}  // namespace model1::cuda
