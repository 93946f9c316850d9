// The split-KV combine kernel for sm_90 GPUs, compiled for sm_90a so that its
// griddepcontrol.wait is real (the portable objects are compiled from compute_80 / 89 PTX):
// launched as a programmatic dependent of the split kernel (decode_launch.h).
#include "cuda/common/combine.cuh"
#include "cuda/common/cuda_check.h"
#include "cuda/sm90/decode_launch.h"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#error "combine_sm90.cu must be compiled for sm_90a: the combine's grid-dependency wait would vanish"
#endif

namespace model1::cuda::sm90 {

void launch_combine_after_split(const DecodeParams& p, cudaStream_t stream) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(CombineTraits::blocks(p));
  cfg.blockDim = dim3(CombineTraits::kThreads);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  MODEL1_CUDA_CHECK("sparse_decode", cudaLaunchKernelEx(&cfg, combine_kernel_for<true>(p), p));
  MODEL1_CUDA_CHECK_LAUNCH("sparse_decode", "combine_kernel (programmatic dependent launch)");
}

}  // namespace model1::cuda::sm90
