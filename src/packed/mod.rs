//! Many runs in one process: trials that differ only in seed and learning rate train as one
//! batched model of M members (`nndl mlp|cnn --seeds`, `nndl sweep --pack`). Each member keeps a
//! single run's semantics: the same initial parameters, batch order and (on the CPU) dropout
//! masks as a single run with its seed, its own learning rate, and an ordinary run folder.
pub mod net;
mod optim;
pub mod rngs;
pub mod runs;
pub mod trainer;

use crate::config::ModelKind;
use serde::{Deserialize, Serialize};

/// How a member trained beside the others (summary.json's `pack`; null for a single run): what
/// a comparison of its numerics with a single run's needs to know.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackInfo {
    /// The members that trained together (on the CPU, those of its thread's sub-pack).
    pub members: usize,
    pub arrangement: Arrangement,
    /// Split into stacks (NNDL_PACK_STACK): the members of each stack but the last, which may
    /// have fewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<usize>,
}

/// How a pack's members shared the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arrangement {
    /// One leaf per parameter for all members, one batched kernel per layer (CUDA).
    Stacked,
    /// Stacked, with the linear layers' weights kept [M, in, out] (NNDL_PACK_WEIGHTS=in-out).
    StackedInOut,
    /// Stacks of a few members (NNDL_PACK_STACK), each stack's step on a CUDA stream of its own.
    Stacks,
    /// Stacks, with the linear layers' weights kept [M, in, out].
    StacksInOut,
    /// Each member's own leaves, its step on a CUDA stream of its own.
    Streams,
    /// Each member's own leaves, one member after another (the CPU; CUDA without streams).
    InTurn,
}

/// Whether a CUDA pack stacks its members (one batched kernel per layer for all of them), or
/// keeps each member's own leaves (as on the CPU) and runs each member's step on a stream of its
/// own: branches side by side in the captured graph, each member issuing its single run's
/// kernels. On an H200, 10 CNN seeds took 0.72-0.75x the stacked pack's loop on streams (cuDNN's
/// own convolutions side by side against grouped ones), and 10 MLP seeds 1.31x (ten small
/// products each where the stack has one batched product). So the MLP stacks and the CNN
/// branches; NNDL_PACK_STREAMS=on|off sets either, for A/B runs.
pub fn stacked_on(model: ModelKind, cuda: bool) -> bool {
    stacked_with(model, cuda, std::env::var("NNDL_PACK_STREAMS").ok().as_deref())
}

/// `stacked_on` for a given NNDL_PACK_STREAMS setting.
fn stacked_with(model: ModelKind, cuda: bool, streams: Option<&str>) -> bool {
    let streams = match streams {
        Some("on") => true,
        Some("off") => false,
        _ => model == ModelKind::Cnn,
    };
    cuda && !streams
}

/// Whether a stacked pack keeps its linear weights [M, in, out] (NNDL_PACK_WEIGHTS=in-out), not
/// [M, out, in] as each member's are: the batched products in the other orientation. An A/B
/// route for CUDA, off by default until a GPU has timed it (`scripts/pack_routes.py` times the
/// same step in PyTorch). On this CPU, stacked and eager, it took 0.74-0.75x the default's step;
/// the CPU's packs do not stack (`stacked_on`).
pub fn weights_in_out() -> bool {
    std::env::var("NNDL_PACK_WEIGHTS").is_ok_and(|v| v == "in-out")
}

/// How many members a stacked pack puts in each stack (NNDL_PACK_STACK=N), each stack a batched
/// model stepping on a CUDA stream of its own: one stack's kernels can then run in the gaps
/// between another's, with fewer members in each batched product. None (the default): one stack
/// of all members. An A/B route for CUDA until a GPU has timed it (`scripts/pack_routes.py`'s
/// `groups-of-5` and `groups-of-2` time the same step in PyTorch); the CPU's packs do not stack.
/// `switches::check` has validated the value at start.
pub fn stack_size() -> Option<i64> {
    std::env::var("NNDL_PACK_STACK").ok().and_then(|v| v.parse().ok()).filter(|&n: &i64| n >= 1)
}

/// How many members train together when --pack is not given: 16 on CUDA (one run leaves the
/// GPU mostly idle); 10 on the CPU, where the members run side by side on single-threaded
/// sub-packs (measured 0.7-0.8 of the time of single runs for the MLP, 0.7-0.9 for the CNN).
pub fn default_pack(cuda: bool) -> usize {
    if cuda { 16 } else { 10 }
}

#[cfg(test)]
mod tests {
    use super::stacked_with;
    use crate::config::ModelKind::{Cnn, Mlp};

    #[test]
    fn on_cuda_the_mlp_stacks_and_the_cnn_branches_unless_told() {
        assert!(stacked_with(Mlp, true, None) && !stacked_with(Cnn, true, None));
        assert!(!stacked_with(Mlp, true, Some("on")) && stacked_with(Cnn, true, Some("off")));
        // The CPU's packs always go member by member.
        assert!(!stacked_with(Mlp, false, Some("off")) && !stacked_with(Cnn, false, None));
    }
}
