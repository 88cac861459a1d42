// The C API of libnndl_cuda_graph.so (CUDA graphs and a side stream), the one contract between
// csrc/cuda_graph.cpp and src/cuda_graph.rs (which loads these symbols by name with these
// signatures; a unit test there checks that every symbol it loads is declared here).
#pragma once
#ifdef __cplusplus
extern "C" {
#endif

typedef struct NndlGraph NndlGraph;

// The message of the last failed call on this thread ("" if none).
const char* nndl_graph_last_error(void);
// A graph bound to CUDA device `device`; NULL on failure.
NndlGraph* nndl_graph_new(int device);
// The calls below return 0 on success, non-zero on failure (see nndl_graph_last_error).
// Makes a side stream current (capture needs one) after the work queued so far.
int nndl_graph_enter(NndlGraph* g);
// Restores the previous stream, ordered after everything queued on the side stream.
int nndl_graph_leave(NndlGraph* g);
int nndl_graph_capture_begin(NndlGraph* g);
int nndl_graph_capture_end(NndlGraph* g);
int nndl_graph_replay(NndlGraph* g);
void nndl_graph_free(NndlGraph* g);

// A stream of the device's pool, for work beside the current stream (a pack's member in a
// branch of its own); NULL on failure.
typedef struct NndlStream NndlStream;
NndlStream* nndl_stream_new(int device);
// Makes the stream current, ordered after the work queued so far on the current stream.
int nndl_stream_enter(NndlStream* s);
// Makes the stream current at enter current again (which does not wait for this one: see join).
int nndl_stream_leave(NndlStream* s);
// Orders the work queued from now on the current stream after the work queued so far on `s`.
int nndl_stream_join(NndlStream* s);
void nndl_stream_free(NndlStream* s);

#ifdef __cplusplus
}
#endif
