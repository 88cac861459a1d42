// A C API over at::cuda::CUDAGraph so nndl can capture one training step and replay it: a
// training step of these small nets is dozens of tiny kernels, and launching them one by one
// from the host costs more than running them. Also side streams: a pack's members side by side.
// Built as its own shared library (build.rs) and loaded with dlopen only when CUDA is present, so
// the nndl binary still runs on CPU-only hosts.
#include "cuda_graph.h"

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <exception>
#include <stdexcept>
#include <string>

#include "guarded.h"

namespace {
void check(cudaError_t e) {
  if (e != cudaSuccess) throw std::runtime_error(cudaGetErrorString(e));
}

// `waiter` waits (on the device) for all work queued so far on `first`.
void order_after(c10::cuda::CUDAStream first, c10::cuda::CUDAStream waiter) {
  cudaEvent_t ev;
  check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  check(cudaEventRecord(ev, first.stream()));
  check(cudaStreamWaitEvent(waiter.stream(), ev, 0));
  check(cudaEventDestroy(ev));
}
}  // namespace

struct NndlGraph {
  c10::DeviceIndex device;
  c10::cuda::CUDAStream side;
  c10::cuda::CUDAStream previous;
  at::cuda::CUDAGraph graph;
};

// Made once, so that entering and joining inside a graph capture create no events: `fork` and
// `join` order the streams.
struct NndlStream {
  c10::DeviceIndex device;
  c10::cuda::CUDAStream stream;
  c10::cuda::CUDAStream previous;
  cudaEvent_t fork;
  cudaEvent_t join;
};

extern "C" {

const char* nndl_graph_last_error() { return last_error.c_str(); }

NndlGraph* nndl_graph_new(int device) {
  NndlGraph* g = nullptr;
  guarded([&] {
    auto d = static_cast<c10::DeviceIndex>(device);
    g = new NndlGraph{d, c10::cuda::getStreamFromPool(false, d), c10::cuda::getCurrentCUDAStream(d), at::cuda::CUDAGraph()};
  });
  return g;
}

// Makes the side stream current (capture needs a non-default stream); it first waits for the
// work already queued on the current stream (the uploaded data).
int nndl_graph_enter(NndlGraph* g) {
  return guarded([&] {
    g->previous = c10::cuda::getCurrentCUDAStream(g->device);
    order_after(g->previous, g->side);
    c10::cuda::setCurrentCUDAStream(g->side);
  });
}

// Restores the previous stream, which then waits for everything queued on the side stream.
int nndl_graph_leave(NndlGraph* g) {
  return guarded([&] {
    order_after(g->side, g->previous);
    c10::cuda::setCurrentCUDAStream(g->previous);
  });
}

int nndl_graph_capture_begin(NndlGraph* g) { return guarded([&] { g->graph.capture_begin(); }); }
int nndl_graph_capture_end(NndlGraph* g) { return guarded([&] { g->graph.capture_end(); }); }
int nndl_graph_replay(NndlGraph* g) { return guarded([&] { g->graph.replay(); }); }

void nndl_graph_free(NndlGraph* g) { delete g; }

NndlStream* nndl_stream_new(int device) {
  NndlStream* s = nullptr;
  int failed = guarded([&] {
    auto d = static_cast<c10::DeviceIndex>(device);
    auto pooled = c10::cuda::getStreamFromPool(false, d);
    s = new NndlStream{d, pooled, pooled, nullptr, nullptr};
    check(cudaEventCreateWithFlags(&s->fork, cudaEventDisableTiming));
    check(cudaEventCreateWithFlags(&s->join, cudaEventDisableTiming));
  });
  if (failed != 0) {
    nndl_stream_free(s);
    return nullptr;
  }
  return s;
}

int nndl_stream_enter(NndlStream* s) {
  return guarded([&] {
    s->previous = c10::cuda::getCurrentCUDAStream(s->device);
    check(cudaEventRecord(s->fork, s->previous.stream()));
    check(cudaStreamWaitEvent(s->stream.stream(), s->fork, 0));
    c10::cuda::setCurrentCUDAStream(s->stream);
  });
}

int nndl_stream_leave(NndlStream* s) { return guarded([&] { c10::cuda::setCurrentCUDAStream(s->previous); }); }

int nndl_stream_join(NndlStream* s) {
  return guarded([&] {
    check(cudaEventRecord(s->join, s->stream.stream()));
    check(cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream(s->device).stream(), s->join, 0));
  });
}

void nndl_stream_free(NndlStream* s) {
  if (s == nullptr) return;
  // A half-made stream has null events; errors cannot be reported from here.
  for (cudaEvent_t e : {s->fork, s->join}) {
    if (e != nullptr) cudaEventDestroy(e);
  }
  delete s;
}
}
