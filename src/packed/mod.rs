//! Many runs in one process: trials that differ only in seed and learning rate train as one
//! batched model of M members (`nndl mlp|cnn --seeds`, `nndl sweep --pack`). Each member keeps a
//! single run's semantics: the same initial parameters, batch order and (on the CPU) dropout
//! masks as a single run with its seed, its own learning rate, and an ordinary run folder.
pub mod net;
mod optim;
pub mod rngs;
pub mod runs;
pub mod trainer;
