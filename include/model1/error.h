// model1: the single exception type of the library.
#pragma once

#include <stdexcept>
#include <string>

namespace model1 {

/// Every failure the library reports: bad arguments (which argument, what was expected, what
/// was given), CUDA errors (error name and the launching function), unsupported requests.
/// The library never exits and never writes outputs before validation succeeds.
class Error : public std::runtime_error {
 public:
  Error(std::string argument, std::string expected, std::string actual, const char* file = "",
        int line = 0);

  /// The argument (or operation, for non-argument errors) at fault, e.g. "q" or "indices".
  const std::string& argument() const noexcept { return argument_; }
  /// What the library expected, e.g. "dtype bf16".
  const std::string& expected() const noexcept { return expected_; }
  /// What it was given, e.g. "dtype f32".
  const std::string& actual() const noexcept { return actual_; }
  const char* file() const noexcept { return file_; }
  int line() const noexcept { return line_; }

 private:
  std::string argument_;
  std::string expected_;
  std::string actual_;
  const char* file_;
  int line_;
};

}  // namespace model1

/// Throws model1::Error with the current file and line.
#define MODEL1_THROW(argument, expected, actual) \
  throw ::model1::Error((argument), (expected), (actual), __FILE__, __LINE__)

/// Throws model1::Error when `cond` is false.
#define MODEL1_CHECK(cond, argument, expected, actual)   \
  do {                                                   \
    if (!(cond)) MODEL1_THROW(argument, expected, actual); \
  } while (0)
