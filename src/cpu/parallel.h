// model1 CPU backend: a tiny fork-join loop over independent rows.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace model1::cpu {

/// Number of workers for `rows` independent rows: one per hardware thread, at most one per row.
inline int num_workers(int64_t rows) {
  const int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
  return static_cast<int>(std::clamp<int64_t>(rows, 1, hw));
}

/// Calls fn(worker, row) for every row in [0, rows), with `workers` threads (worker ids
/// 0..workers-1, each owning its scratch). Rows are handed out dynamically; callers must make
/// each row's result depend on that row only, which makes the output independent of the
/// thread count and of the schedule. The first exception thrown by fn is rethrown here.
template <typename Fn>
void parallel_for_rows(int64_t rows, int workers, Fn&& fn) {
  if (rows <= 0) return;
  if (workers <= 1) {
    for (int64_t r = 0; r < rows; ++r) fn(0, r);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&](int worker) {
    try {
      for (int64_t r = next.fetch_add(1); r < rows; r = next.fetch_add(1)) fn(worker, r);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next.store(rows);  // NOTE: stop handing out rows; the result is discarded anyway
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(workers - 1);
  for (int w = 1; w < workers; ++w) threads.emplace_back(work, w);
  work(0);
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace model1::cpu
