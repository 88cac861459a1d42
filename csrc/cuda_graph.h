// The C API of libnndl_cuda_graph.so, the one contract between csrc/cuda_graph.cpp and
// src/cuda_graph.rs (which loads these symbols by name with these signatures; a unit test there
// checks that every symbol it loads is declared here).
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

#ifdef __cplusplus
}
#endif
