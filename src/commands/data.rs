//! `nndl data fetch` / `nndl data verify`.
use super::Outcome;
use crate::data::{fetch::Source, mnist};
use anyhow::Result;
use std::path::Path;

pub fn fetch(flag: Option<&Path>, source: Source, quiet: bool) -> Result<Outcome> {
    let dir = mnist::resolve_dir(flag);
    let n = crate::data::fetch::fetch(&dir, source, quiet)?;
    let human = format!("MNIST in {}: {n} file(s) fetched, all four verified", dir.display());
    Outcome::new(human, &serde_json::json!({ "dir": dir, "fetched": n }))
}

pub fn verify(flag: Option<&Path>) -> Result<Outcome> {
    let dir = mnist::resolve_dir(flag);
    for f in &mnist::FILES {
        f.read_verified(&dir)?;
    }
    Outcome::new(format!("MNIST in {}: all four files verified", dir.display()), &serde_json::json!({ "dir": dir, "verified": 4 }))
}
