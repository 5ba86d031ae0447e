// Errors that reach the user. Every message names the file, tensor or field at fault and,
// where it can, says how to fix it. Programmer mistakes use assert, never this.
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace stepq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace stepq
