// Throw-away probe: how long does a CTA take to read kBytes of f32 rows spread over the other
// CTAs of its cluster (distributed shared memory), against its own shared memory and against
// a global-memory (L2) round trip of the same bytes? Prints cycles per CTA (median).
#include <cstdio>
#include <cstdint>
#include <vector>
#include <algorithm>
#include <cooperative_groups.h>
namespace cg = cooperative_groups;

constexpr int kSmemBytes = 128 * 1024;
constexpr int kThreads = 256;

template <int kMode>  // 0: local smem, 1: peers' smem (rank r reads slice r of every peer), 2: global (L2),
                     // 3: every CTA writes its 128 KiB to global, cluster barrier, then reads as 2
__global__ void probe(float* out, long long* cycles, float* gbuf) {
  extern __shared__ __align__(16) float smem[];
  cg::cluster_group cl = cg::this_cluster();
  const int n = kSmemBytes / 4;
  for (int i = threadIdx.x; i < n; i += kThreads) smem[i] = float(i + blockIdx.x);
  long long tw = clock64();
  if (kMode == 3) {
    float* dst = gbuf + (size_t)blockIdx.x * n;
    for (int i = threadIdx.x * 4; i < n; i += kThreads * 4)
      *reinterpret_cast<float4*>(dst + i) = *reinterpret_cast<const float4*>(smem + i);
    __threadfence();
  }
  cl.sync();
  const unsigned C = cl.num_blocks(), r = cl.block_rank();
  long long t0 = kMode == 3 ? tw : clock64();
  float4 acc = make_float4(0, 0, 0, 0);
  // rank r reduces rows [r*n/C, (r+1)*n/C) across all C CTAs (as a split reduction would)
  const int slice = n / C;
  for (unsigned peer = 0; peer < C; ++peer) {
    const float* src;
    if (kMode == 0) src = smem;
    else if (kMode == 1) src = cl.map_shared_rank(smem, peer);
    else src = gbuf + (size_t)(blockIdx.x - r + peer) * n;
    src += r * slice;
    for (int i = threadIdx.x * 4; i < slice; i += kThreads * 4) {
      float4 v = *reinterpret_cast<const float4*>(src + i);
      acc.x += v.x; acc.y += v.y; acc.z += v.z; acc.w += v.w;
    }
  }
  __syncthreads();
  long long t1 = clock64();
  cl.sync();
  if (threadIdx.x == 0) cycles[blockIdx.x] = t1 - t0;
  out[blockIdx.x * kThreads + threadIdx.x] = acc.x + acc.y + acc.z + acc.w;
}

template <int kMode>
void run(int ctas, int csize, float* out, long long* cyc, float* gbuf) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(ctas); cfg.blockDim = dim3(kThreads); cfg.dynamicSmemBytes = kSmemBytes;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = csize; attr[0].val.clusterDim.y = 1; attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr; cfg.numAttrs = 1;
  cudaFuncSetAttribute(probe<kMode>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  cudaFuncSetAttribute(probe<kMode>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  std::vector<float> ms;
  for (int rep = 0; rep < 6; ++rep) {
    cudaEventRecord(a);
    cudaError_t e = cudaLaunchKernelEx(&cfg, probe<kMode>, out, cyc, gbuf);
    cudaEventRecord(b); cudaEventSynchronize(b);
    if (e != cudaSuccess || cudaGetLastError() != cudaSuccess) { printf("mode %d ctas %d cluster %d: launch failed %s\n", kMode, ctas, csize, cudaGetErrorString(e)); return; }
    float t; cudaEventElapsedTime(&t, a, b); ms.push_back(t * 1000);
  }
  std::vector<long long> h(ctas);
  cudaMemcpy(h.data(), cyc, ctas * sizeof(long long), cudaMemcpyDeviceToHost);
  std::sort(h.begin(), h.end()); std::sort(ms.begin(), ms.end());
  const char* names[] = {"local smem", "peer smem (DSMEM)", "global (L2) read", "global write+read"};
  printf("%-18s ctas %3d cluster %2d: read %d KiB a CTA, cycles median %lld max %lld, kernel %.1f us\n",
         names[kMode], ctas, csize, kSmemBytes / 1024, h[ctas / 2], h[ctas - 1], ms[ms.size() / 2]);
}

int main() {
  float *out, *gbuf; long long* cyc;
  cudaMalloc(&out, 1024 * kThreads * 4); cudaMalloc(&cyc, 1024 * 8); cudaMalloc(&gbuf, (size_t)1024 * kSmemBytes);
  cudaMemset(gbuf, 0, (size_t)1024 * kSmemBytes);
  for (int cs : {2, 4, 8, 16}) {
    for (int ctas : {cs * (40 / cs), 128}) {
      run<0>(ctas, cs, out, cyc, gbuf);
      run<1>(ctas, cs, out, cyc, gbuf);
      run<2>(ctas, cs, out, cyc, gbuf);
      run<3>(ctas, cs, out, cyc, gbuf);
    }
  }
  return 0;
}
