// model1 CLI: a plain-text table with aligned columns.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace model1::cli {

class Table {
 public:
  enum class Align { kLeft, kRight };
  void add_column(std::string header, Align align = Align::kRight);
  void add_row(std::vector<std::string> cells);
  /// Header, a rule, then the rows; columns separated by two spaces.
  void print(std::FILE* out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<Align> aligns_;
  std::vector<std::vector<std::string>> rows_;
};

/// printf into a std::string.
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace model1::cli
