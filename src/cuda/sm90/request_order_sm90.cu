// The request-order kernel for sm_90 GPUs, compiled for sm_90a so that its
// griddepcontrol.launch_dependents is real (the portable objects are compiled from compute_80
// and compute_89 PTX): the sm_90a split kernel after it is a programmatic dependent launch (decode_launch.h).
#include "cuda/common/cuda_check.h"
#include "cuda/common/request_order.cuh"
#include "cuda/sm90/decode_launch.h"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#error "request_order_sm90.cu must be compiled for sm_90a: its grid-dependency trigger would vanish"
#endif

namespace model1::cuda::sm90 {

void launch_request_order(const DecodeParams& p, int32_t* order, cudaStream_t stream) {
  request_order_kernel<true><<<1, RequestOrderTraits::kThreads, 0, stream>>>(p, order);
  MODEL1_CUDA_CHECK_LAUNCH("sparse_decode", "request_order_kernel");
}

}  // namespace model1::cuda::sm90
