//! Each member's random draws, as its single run would make them. On the CPU a single run draws
//! its dropout masks and shifts from libtorch's default generator, seeded by its seed and then
//! advanced by its initialisation; each member keeps that generator's state and swaps it in for
//! its own draws, so its masks are the single run's, bit for bit. On CUDA the generator's state
//! is out of tch's reach: members draw from the shared generator (independent masks, the same
//! distribution), as a resumed single CUDA run does.
use anyhow::Result;
use std::sync::Mutex;
use tch::{Device, Tensor};

/// libtorch has one default CPU generator a process. A pack split over threads (sub-packs side
/// by side) swaps its members' states in and out of it from each thread: one swap, draw and
/// read-back at a time, so that no member draws from another's state.
static CPU_GENERATOR: Mutex<()> = Mutex::new(());

pub enum MemberRngs {
    Cpu(Vec<Vec<u8>>),
    Shared,
}

impl MemberRngs {
    pub fn new(device: Device, states: Vec<Vec<u8>>) -> MemberRngs {
        if device.is_cuda() { MemberRngs::Shared } else { MemberRngs::Cpu(states) }
    }

    /// Runs `draw` with member `m`'s generator in place; its advanced state is kept.
    pub fn with<T>(&mut self, m: usize, draw: impl FnOnce() -> T) -> Result<T> {
        match self {
            MemberRngs::Shared => Ok(draw()),
            MemberRngs::Cpu(states) => {
                // A panicking draw cannot leave the generator half-swapped for the next member:
                // every swap sets the whole state first.
                let _generator = CPU_GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                crate::torch_extras::set_cpu_rng_state(&states[m])?;
                let out = draw();
                states[m] = crate::torch_extras::cpu_rng_state();
                Ok(out)
            }
        }
    }

    /// Member `m`'s generator state, for its checkpoint (on CUDA: the shared CPU one).
    pub fn state(&self, m: usize) -> Vec<u8> {
        match self {
            MemberRngs::Cpu(states) => states[m].clone(),
            MemberRngs::Shared => crate::torch_extras::cpu_rng_state(),
        }
    }

    /// Dropout multipliers [M, rows, width]: 1/keep_prob where kept, 0 elsewhere, each member's
    /// drawn as libtorch's CPU dropout draws a [rows, width] mask.
    pub fn dropout_noise(&mut self, members: i64, rows: i64, width: i64, keep_prob: f64, device: Device) -> Result<Tensor> {
        let mut noise = Tensor::empty([members, rows, width], (tch::Kind::Float, device));
        match self {
            MemberRngs::Shared => {
                let _ = noise.bernoulli_float_(keep_prob);
            }
            MemberRngs::Cpu(_) => {
                for m in 0..members {
                    let mut slice = noise.get(m);
                    let _ = self.with(m as usize, || slice.bernoulli_float_(keep_prob))?;
                }
            }
        }
        // In place, as libtorch's dropout scales its noise.
        let _ = noise.g_div_scalar_(keep_prob);
        Ok(noise)
    }
}
