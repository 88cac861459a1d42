// libtorch settings and state that tch does not expose, for src/torch_extras.rs. Linked
// statically into nndl (CPU-only libtorch is enough: all of these live in libtorch_cpu).
#pragma once
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

// The default CPU generator's state (Mersenne Twister and normal cache), as torch.get_rng_state().
// get: writes up to `cap` bytes into `out` and returns the state's size (call with cap 0 to ask).
// set: returns 0, or non-zero when libtorch rejects the bytes (nndl_extras_last_error says why).
size_t nndl_cpu_rng_get_state(uint8_t* out, size_t cap);
int nndl_cpu_rng_set_state(const uint8_t* state, size_t len);

// at::globalContext() switches: deterministic algorithms, cuDNN benchmark and determinism, TF32.
int nndl_set_deterministic(int on);
int nndl_set_cudnn_benchmark(int on);
int nndl_set_tf32(int on);
// 1 when the current settings allow TF32 in cuBLAS matmuls, 0 otherwise.
int nndl_tf32_enabled(void);

// Flush-to-zero and denormals-are-zero for float math on the calling thread and on libtorch's
// intra-op threads (which also run MKL's products): `on` 1 flushes, 0 keeps denormals. Sets
// `*supported` to 0 where the CPU has no such mode (nothing changes then).
int nndl_set_flush_denormal(int on, int* supported);
// 1 when the calling thread flushes denormals, 0 when it keeps them.
int nndl_flush_denormal_enabled(void);

const char* nndl_extras_last_error(void);

#ifdef __cplusplus
}
#endif
