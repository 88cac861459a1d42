//! Many runs in one process: trials that differ only in seed and learning rate train as one
//! batched model of M members (`nndl mlp|cnn --seeds`, `nndl sweep --pack`). Each member keeps a
//! single run's semantics: the same initial parameters, batch order and (on the CPU) dropout
//! masks as a single run with its seed, its own learning rate, and an ordinary run folder.
pub mod net;
mod optim;
pub mod rngs;
pub mod runs;
pub mod trainer;

/// Whether a CUDA pack stacks its members (one batched kernel per layer for all of them), or,
/// with NNDL_PACK_STREAMS=on, keeps each member's own leaves (as on the CPU) and runs each
/// member's step on a stream of its own: branches side by side in the captured graph, each
/// member issuing its single run's small kernels. Stacked until a GPU has timed the branches.
pub fn stacked_on(cuda: bool) -> bool {
    cuda && std::env::var("NNDL_PACK_STREAMS").as_deref() != Ok("on")
}

/// How many members train together when --pack is not given: 16 on CUDA (one run leaves the
/// GPU mostly idle); 10 on the CPU, where the members run side by side on single-threaded
/// sub-packs (measured 0.7-0.8 of the time of single runs for the MLP, 0.7-0.9 for the CNN).
pub fn default_pack(cuda: bool) -> usize {
    if cuda { 16 } else { 10 }
}
