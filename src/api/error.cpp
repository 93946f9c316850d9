// model1: the Error exception (include/model1/error.h).
#include "model1/error.h"

#include <cstring>
#include <string>
#include <utility>

namespace model1 {
namespace {

// NOTE: __FILE__ is an absolute build path; the message keeps it from the source tree's
// top-level folder on ("src/api/validate.cpp") so messages are stable across machines.
const char* short_path(const char* file) {
  if (file == nullptr) return "";
  for (const char* root : {"/src/", "/include/", "/tools/", "/python/", "/bench/"}) {
    const char* hit = std::strstr(file, root);
    if (hit != nullptr) return hit + 1;
  }
  return file;
}

std::string make_message(const std::string& argument, const std::string& expected,
                         const std::string& actual, const char* file, int line) {
  std::string message = "model1: argument '" + argument + "': expected " + expected + ", got " +
                        actual;
  const char* path = short_path(file);
  if (path[0] != '\0') message += " (" + std::string(path) + ":" + std::to_string(line) + ")";
  return message;
}

}  // namespace

Error::Error(std::string argument, std::string expected, std::string actual, const char* file,
             int line)
    : std::runtime_error(make_message(argument, expected, actual, file, line)),
      argument_(std::move(argument)),
      expected_(std::move(expected)),
      actual_(std::move(actual)),
      file_(file != nullptr ? file : ""),
      line_(line) {}

}  // namespace model1
