// libtorch's operator profiler (Kineto), which tch does not expose, for src/profile.rs. Linked
// statically into nndl with torch_extras (its errors come back through nndl_extras_last_error's
// twin, nndl_profiler_last_error).
#pragma once
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

// Starts recording every operator call on the host, and the GPU's kernels and copies when
// `cuda` is 1. Returns 0, or 1 when libtorch refuses.
int nndl_profiler_start(int cuda);
// Stops recording; saves a Chrome trace at `trace_path` unless it is NULL, and keeps the events
// for nndl_profiler_events. Returns 0 or 1.
int nndl_profiler_stop(const char* trace_path);
// The kept events, one a line: "device\tthread\tstart_ns\tend_ns\tname\n", device 0 for the
// host and 1 for the GPU. Copies them into `out` when `cap` is large enough, and returns their
// size (call with cap 0 to ask).
size_t nndl_profiler_events(char* out, size_t cap);
const char* nndl_profiler_last_error(void);

#ifdef __cplusplus
}
#endif
