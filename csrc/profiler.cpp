// See profiler.h. Every entry point catches C++ exceptions: none may cross into Rust.
#include "profiler.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <cstring>
#include <memory>
#include <set>
#include <string>

#include "guarded.h"

namespace {
namespace prof = torch::profiler::impl;

std::set<prof::ActivityType> activities_for(int cuda) {
  std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
  if (cuda != 0) activities.insert(prof::ActivityType::CUDA);
  return activities;
}

// Tabs and newlines in a name would break the line format.
std::string clean(std::string name) {
  for (char& c : name)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return name;
}

std::string kept_events;
}  // namespace

extern "C" {

const char* nndl_profiler_last_error(void) { return last_error.c_str(); }

int nndl_profiler_start(int cuda) {
  return guarded([&] {
    prof::ProfilerConfig config(prof::ProfilerState::KINETO);
    torch::autograd::profiler::prepareProfiler(config, activities_for(cuda));
    torch::autograd::profiler::enableProfiler(config, activities_for(cuda));
  });
}

int nndl_profiler_stop(const char* trace_path) {
  return guarded([&] {
    std::unique_ptr<torch::autograd::profiler::ProfilerResult> result = torch::autograd::profiler::disableProfiler();
    kept_events.clear();
    for (const auto& e : result->events()) {
      int device = e.deviceType() == c10::DeviceType::CPU ? 0 : 1;
      kept_events += std::to_string(device) + '\t' + std::to_string(e.startThreadId()) + '\t' + std::to_string(e.startNs()) + '\t' +
                     std::to_string(e.endNs()) + '\t' + clean(e.name()) + '\n';
    }
    if (trace_path != nullptr) result->save(trace_path);
  });
}

size_t nndl_profiler_events(char* out, size_t cap) {
  if (out != nullptr && cap >= kept_events.size()) std::memcpy(out, kept_events.data(), kept_events.size());
  return kept_events.size();
}
}
