// See torch_extras.h. Every entry point catches C++ exceptions: none may cross into Rust.
#include "torch_extras.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>
#include <ATen/core/Generator.h>

#include <cstring>
#include <exception>
#include <mutex>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "guarded.h"

extern "C" {

const char* nndl_extras_last_error(void) { return last_error.c_str(); }

size_t nndl_cpu_rng_get_state(uint8_t* out, size_t cap) {
  size_t size = 0;
  guarded([&] {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    auto state = gen.get_state();
    size = static_cast<size_t>(state.numel());
    if (out != nullptr && cap >= size) std::memcpy(out, state.data_ptr<uint8_t>(), size);
  });
  return size;
}

int nndl_cpu_rng_set_state(const uint8_t* state, size_t len) {
  return guarded([&] {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    auto t = at::empty({static_cast<int64_t>(len)}, at::TensorOptions().dtype(at::kByte));
    std::memcpy(t.data_ptr<uint8_t>(), state, len);
    gen.set_state(t);
  });
}

int nndl_set_deterministic(int on) {
  return guarded([&] {
    auto& ctx = at::globalContext();
    ctx.setDeterministicAlgorithms(on != 0, false);
    ctx.setDeterministicCuDNN(on != 0);
    if (on != 0) ctx.setBenchmarkCuDNN(false);
  });
}

int nndl_set_cudnn_benchmark(int on) {
  return guarded([&] { at::globalContext().setBenchmarkCuDNN(on != 0); });
}

int nndl_set_tf32(int on) {
  return guarded([&] {
    auto& ctx = at::globalContext();
    ctx.setAllowTF32CuBLAS(on != 0);
    ctx.setAllowTF32CuDNN(on != 0);
  });
}

int nndl_tf32_enabled(void) {
  int on = 0;
  guarded([&] { on = at::globalContext().allowTF32CuBLAS() ? 1 : 0; });
  return on;
}

int nndl_set_flush_denormal(int on, int* supported) {
  return guarded([&] {
    auto& ctx = at::globalContext();
    *supported = ctx.setFlushDenormal(on != 0) ? 1 : 0;
    if (*supported == 0) return;
    // The mode lives in each thread's floating-point control register, so every intra-op
    // thread must set it itself. This file is built without OpenMP, where at::parallel_for
    // runs serially; TensorIterator::for_each is compiled into libtorch with it. Over as many
    // elements as threads, with a grain of one, each thread of the team gets one element (the
    // input gives the iterator its shape: a lone output would be resized to a scalar).
    int64_t threads = at::get_num_threads();
    auto slots = at::empty({threads}, at::TensorOptions().dtype(at::kByte));
    auto iter = at::TensorIteratorConfig().add_output(slots).add_const_input(slots).build();
    iter.for_each([&](char**, const int64_t*, int64_t, int64_t) { ctx.setFlushDenormal(on != 0); }, 1);
  });
}

int nndl_flush_denormal_enabled(void) {
#if defined(__x86_64__) || defined(__i386__)
  return (_mm_getcsr() & 0x8040) == 0x8040 ? 1 : 0;  // FTZ (bit 15) and DAZ (bit 6), as libtorch sets them
#elif defined(__aarch64__)
  uint64_t fpcr;
  __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
  return (fpcr >> 24) & 1;  // FZ
#else
  return 0;
#endif
}
}
