// model1 bench: CUDA timing (CUDA events, L2 flush, median) and device runs for checks.
// Plain C++ over the CUDA runtime API; compiled only when MODEL1_CUDA is ON.
#include "cuda_runner.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "l2_flush.h"
#include "model1/decode.h"
#include "model1/error.h"
#include "model1/prefill.h"

namespace model1::bench::cuda_runner {
namespace {

void check_cuda(cudaError_t err, const char* call) {
  if (err != cudaSuccess) {
    throw Error(call, "cudaSuccess",
                std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err), __FILE__,
                __LINE__);
  }
}
#define BENCH_CUDA_CHECK(call) check_cuda((call), #call)

/// Owns one device allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes > 0) BENCH_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);  // NOTE: no throw from a destructor
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class Stream {
 public:
  Stream() { BENCH_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }
  void sync() const { BENCH_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

class Event {
 public:
  Event() { BENCH_CUDA_CHECK(cudaEventCreate(&event_)); }
  ~Event() {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }
  Event(Event&& o) noexcept : event_(std::exchange(o.event_, nullptr)) {}
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

void select_device(int device) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  MODEL1_CHECK(err == cudaSuccess && count > 0, "device", "a CUDA GPU",
               err == cudaSuccess
                   ? std::string("no GPU found")
                   : std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err));
  MODEL1_CHECK(device >= 0 && device < count, "device",
               "a device ordinal in [0, " + std::to_string(count) + ")", std::to_string(device));
  BENCH_CUDA_CHECK(cudaSetDevice(device));
}

/// The device's PCI bus id as CUDA spells it (how GpuMonitor finds it in NVML).
std::string pci_bus_id(int device) {
  char id[32] = {};
  BENCH_CUDA_CHECK(cudaDeviceGetPCIBusId(id, static_cast<int>(sizeof(id)), device));
  return id;
}

/// Device copies of a workload's tensors (inputs copied, outputs allocated).
class DeviceTensors {
 public:
  explicit DeviceTensors(int device) : device_(device) {}
  /// A device view with the same shape/strides; `copy` uploads the host bytes.
  TensorView mirror(const TensorView& host, bool copy) {
    if (!host.defined()) return host;
    const int64_t bytes = span_bytes(host);
    buffers_.emplace_back(static_cast<size_t>(bytes));
    TensorView dev = host;
    dev.data = buffers_.back().get();
    dev.device = Device::kCUDA;
    dev.device_id = device_;
    if (copy && bytes > 0) {
      BENCH_CUDA_CHECK(
          cudaMemcpy(dev.data, host.data, static_cast<size_t>(bytes), cudaMemcpyHostToDevice));
    }
    return dev;
  }
  KvCacheView mirror(const KvCacheView& host) {
    KvCacheView dev = host;
    dev.data = mirror(host.data, true);
    return dev;
  }

 private:
  int device_;
  std::vector<DeviceBuffer> buffers_;
};

SparseDecodeArgs mirror_decode(const SparseDecodeArgs& h, DeviceTensors& d) {
  SparseDecodeArgs a = h;
  a.q = d.mirror(h.q, true);
  a.kv = d.mirror(h.kv);
  a.indices = d.mirror(h.indices, true);
  a.topk_length = d.mirror(h.topk_length, true);
  if (h.extra_kv.data.defined()) a.extra_kv = d.mirror(h.extra_kv);
  a.extra_indices = d.mirror(h.extra_indices, true);
  a.extra_topk_length = d.mirror(h.extra_topk_length, true);
  a.attn_sink = d.mirror(h.attn_sink, true);
  a.out = d.mirror(h.out, false);
  a.lse = d.mirror(h.lse, false);
  return a;
}

SparsePrefillArgs mirror_prefill(const SparsePrefillArgs& h, DeviceTensors& d) {
  SparsePrefillArgs a = h;
  a.q = d.mirror(h.q, true);
  a.kv = d.mirror(h.kv, true);
  a.indices = d.mirror(h.indices, true);
  a.topk_length = d.mirror(h.topk_length, true);
  a.attn_sink = d.mirror(h.attn_sink, true);
  a.out = d.mirror(h.out, false);
  a.max_logits = d.mirror(h.max_logits, false);
  a.lse = d.mirror(h.lse, false);
  return a;
}

/// NaN bytes (0xff) into a device output, so an element the kernel never writes shows.
void poison(const TensorView& dev, cudaStream_t stream) {
  if (!dev.defined()) return;
  BENCH_CUDA_CHECK(cudaMemsetAsync(dev.data, 0xff, static_cast<size_t>(span_bytes(dev)), stream));
}

void download(const TensorView& host, const TensorView& dev) {
  if (!host.defined()) return;
  BENCH_CUDA_CHECK(cudaMemcpy(host.data, dev.data, static_cast<size_t>(span_bytes(host)),
                              cudaMemcpyDeviceToHost));
}

/// A buffer of at least twice the L2 size, rewritten before each timed run so the L2 holds
/// none of the workload's data when the timed call starts. The rewrite (a memset) leaves L2 full
/// of dirty lines, which the timed call's first misses write back; `by_reads` instead has a
/// kernel read the buffer (zeroed once here), so L2 holds clean lines of it. Either way a
/// kernel runs just before the timed one (copies instead, also tried, made the timed run start
/// after a wait on the copy engine: PERF.md, twenty-ninth session).
class L2Flusher {
 public:
  L2Flusher(int device, bool by_reads) : by_reads_(by_reads) {
    int l2_bytes = 0;
    BENCH_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
    BENCH_CUDA_CHECK(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device));
    constexpr size_t kMinBytes = size_t{64} << 20;
    buffer_ = DeviceBuffer(std::max(kMinBytes, 2 * static_cast<size_t>(l2_bytes)));
    if (by_reads_) {
      sink_ = DeviceBuffer(16);
      BENCH_CUDA_CHECK(cudaMemset(buffer_.get(), 0, buffer_.bytes()));
    }
  }
  void flush(cudaStream_t stream, int round) {
    if (by_reads_) {
      BENCH_CUDA_CHECK(launch_read_flush(buffer_.get(), buffer_.bytes(), sink_.get(), sms_, stream));
    } else {
      BENCH_CUDA_CHECK(cudaMemsetAsync(buffer_.get(), round & 0xff, buffer_.bytes(), stream));
    }
  }

 private:
  bool by_reads_;
  int sms_ = 1;
  DeviceBuffer buffer_, sink_;
};

template <typename Launch>
Timing time_launches(const TimingOptions& options, const Stream& stream, const Launch& launch) {
  std::optional<L2Flusher> flusher;
  if (options.flush_l2) flusher.emplace(options.device, options.flush_by_reads);
  int round = 0;
  for (int i = 0; i < options.warmup; ++i) {
    if (flusher) flusher->flush(stream.get(), round++);
    launch();
  }
  std::vector<Event> start, stop;
  start.reserve(options.runs);
  stop.reserve(options.runs);
  for (int i = 0; i < options.runs; ++i) {
    start.emplace_back();
    stop.emplace_back();
  }
  // NOTE: NVML is read by a host thread while the timed runs (and their flushes) execute.
  GpuMonitor monitor(pci_bus_id(options.device));
  monitor.start();
  for (int i = 0; i < options.runs; ++i) {
    if (flusher) flusher->flush(stream.get(), round++);  // NOTE: outside the timed region
    BENCH_CUDA_CHECK(cudaEventRecord(start[i].get(), stream.get()));
    launch();
    BENCH_CUDA_CHECK(cudaEventRecord(stop[i].get(), stream.get()));
  }
  stream.sync();
  std::optional<GpuClockSummary> gpu = monitor.stop();
  BENCH_CUDA_CHECK(cudaGetLastError());
  std::vector<double> samples;
  samples.reserve(options.runs);
  for (int i = 0; i < options.runs; ++i) {
    float ms = 0.0f;
    BENCH_CUDA_CHECK(cudaEventElapsedTime(&ms, start[i].get(), stop[i].get()));
    samples.push_back(static_cast<double>(ms) * 1e3);
  }
  Timing t = summarize(std::move(samples));
  t.gpu = std::move(gpu);
  return t;
}

}  // namespace

Timing time_decode(const DecodeWorkload& workload, const TimingOptions& options) {
  select_device(options.device);
  DeviceTensors tensors(options.device);
  const SparseDecodeArgs args = mirror_decode(workload.args(), tensors);
  const Stream stream;
  DecodeOptions plan_options;
  plan_options.split_keys = options.split_keys;
  const DecodePlan plan = plan_decode(args, plan_options, stream.get());  // not timed
  stream.sync();
  Timing t = time_launches(options, stream, [&] { sparse_decode(args, plan, stream.get()); });
  t.kernel = decode_kernel_name(args, plan);
  t.split_keys = plan.split_keys();
  return t;
}

Timing time_prefill(const PrefillWorkload& workload, const TimingOptions& options) {
  select_device(options.device);
  DeviceTensors tensors(options.device);
  const SparsePrefillArgs args = mirror_prefill(workload.args(), tensors);
  const Stream stream;
  Timing t = time_launches(options, stream, [&] { sparse_prefill(args, stream.get()); });
  t.kernel = prefill_kernel_name(args);
  return t;
}

int run_decode(DecodeWorkload& workload, int device, int split_keys) {
  select_device(device);
  DeviceTensors tensors(device);
  const SparseDecodeArgs args = mirror_decode(workload.args(), tensors);
  const Stream stream;
  poison(args.out, stream.get());
  poison(args.lse, stream.get());
  DecodeOptions plan_options;
  plan_options.split_keys = split_keys;
  const DecodePlan plan = plan_decode(args, plan_options, stream.get());
  sparse_decode(args, plan, stream.get());
  stream.sync();
  BENCH_CUDA_CHECK(cudaGetLastError());
  workload.poison_outputs();
  download(workload.args().out, args.out);
  download(workload.args().lse, args.lse);
  return plan.split_keys();
}

void run_prefill(PrefillWorkload& workload, int device) {
  select_device(device);
  DeviceTensors tensors(device);
  const SparsePrefillArgs args = mirror_prefill(workload.args(), tensors);
  const Stream stream;
  poison(args.out, stream.get());
  poison(args.max_logits, stream.get());
  poison(args.lse, stream.get());
  sparse_prefill(args, stream.get());
  stream.sync();
  BENCH_CUDA_CHECK(cudaGetLastError());
  workload.poison_outputs();
  download(workload.args().out, args.out);
  download(workload.args().max_logits, args.max_logits);
  download(workload.args().lse, args.lse);
}

}  // namespace model1::bench::cuda_runner
