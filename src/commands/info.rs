//! `nndl info`: what this binary found (versions, libtorch, CUDA, threads).
use super::Outcome;
use anyhow::Result;

pub fn run() -> Result<Outcome> {
    let info = crate::system_info::gather();
    Outcome::output(crate::system_info::describe(&info), &info)
}
