// model1 CLI: the subcommands. Each returns the process exit code; only main() exits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace model1::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFail = 1;   ///< a check failed, an error, a bad argument
inline constexpr int kExitNoGpu = 2;  ///< --backend cuda without a CUDA build or without a GPU

struct BenchOptions {
  std::string presets;           ///< "all" or a comma list
  std::vector<int64_t> batches;  ///< decode rows; empty = each preset's default
  std::vector<int64_t> s_kvs;    ///< prefill rows; empty = each preset's default
  int64_t s_q = 0;               ///< prefill s_q override (0 = preset's 4096)
  std::string backend = "cpu";
  std::string json;  ///< write rows here when set
  int runs = 0;      ///< 0 = default (cpu 3, cuda 30)
  int warmup = -1;   ///< -1 = default (cpu 1, cuda 5)
  uint64_t seed = 0;
  int device = 0;
  bool no_flush = false;
  bool flush_reads = false;
  bool dry_run = false;  ///< generate workloads and print the accounting only
  std::vector<int> split_keys;  ///< decode plans' DecodeOptions::split_keys, one row each (empty = the default)
};

struct CheckOptions {
  std::string preset;
  int64_t batch = 0;  ///< decode; 0 = 2
  int64_t s_kv = 0;   ///< prefill; 0 = the preset's first s_kv
  int64_t s_q = 64;   ///< prefill query count (the oracle is float64 and naive)
  int split_keys = 0;  ///< decode plan's DecodeOptions::split_keys (0 = the default)
  std::string backend = "cpu";
  uint64_t seed = 0;
  int device = 0;
};

int run_info();
int run_bench(const BenchOptions& options);
int run_check(const CheckOptions& options);

/// For --backend cuda: kExitOk and the GPU's name, or a message on stderr and kExitNoGpu.
int require_gpu(int device, std::string* name);

}  // namespace model1::cli
