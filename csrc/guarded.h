// Shared by the C++ shims: every entry point runs its body through `guarded`, so no C++
// exception crosses into Rust; the message waits in `last_error` (one per library and thread).
#pragma once
#include <exception>
#include <string>

namespace {
thread_local std::string last_error;

template <typename F>
int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return 1;
}
}  // namespace
