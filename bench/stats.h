// model1 bench: small statistics shared by the timers and the GPU monitor.
#pragma once

#include <algorithm>
#include <vector>

namespace model1::bench {

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
inline double median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

}  // namespace model1::bench
