//! Packs of runs into their folders: each member's folder is claimed as `run::run_or_resume`
//! claims one (finished: kept; unfinished: resumed from its checkpoint; new: started), the
//! members that train are packed by the iteration they start from, and each ends as its single
//! run would (weights, figures, summary.json; a divergence is that member's error alone).
use super::net::PackedNet;
use super::trainer::{train_packed, MemberStart, PackContext};
use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::data::DeviceData;
use crate::progress::Progress;
use crate::run::{self, RunEnd, RunObserver, Session};
use crate::run_dir::{FolderState, RunDir};
use crate::runtime::Runtime;
use crate::trainer::Observer;
use anyhow::Result;
use std::path::PathBuf;
use std::time::Instant;

/// How one member ended.
pub enum MemberEnd {
    /// Its run ended (finished or interrupted); `trained`: in this process.
    Ended { end: RunEnd, trained: bool },
    /// Another process holds its folder.
    Busy(String),
    Failed(anyhow::Error),
}

/// Whether two configs may share a pack: equal but for seed and learning rate.
pub fn packable(a: &TrainConfig, b: &TrainConfig) -> bool {
    TrainConfig { seed: a.seed, lr: a.lr, ..b.clone() } == *a
}

/// A member claimed for training: its folder, config and checkpoint.
struct Claimed {
    index: usize,
    run: RunDir,
    cfg: TrainConfig,
    checkpoint: Option<Checkpoint>,
}

/// Trains `cfgs[k]` into `dirs[k]`, at most `pack` members at a time in one batched model.
/// Every config must be `packable` with the first.
pub fn run_members(cfgs: &[TrainConfig], dirs: &[PathBuf], pack: usize, data: &DeviceData, rt: &Runtime) -> Vec<MemberEnd> {
    let mut ends: Vec<Option<MemberEnd>> = cfgs.iter().map(|_| None).collect();
    let mut claimed = Vec::new();
    for (index, (cfg, dir)) in cfgs.iter().zip(dirs).enumerate() {
        let claim = || -> Result<Option<Claimed>> {
            let (run, state) = RunDir::claim(dir)?;
            match state {
                FolderState::FinishedRun => Ok(None),
                FolderState::UnfinishedRun => Ok(Some(Claimed { index, checkpoint: run::saved_checkpoint(cfg, &run)?, run, cfg: cfg.clone() })),
                _ => Ok(Some(Claimed { index, run, cfg: cfg.clone(), checkpoint: None })),
            }
        };
        match claim() {
            Ok(Some(c)) => claimed.push(c),
            Ok(None) => ends[index] = Some(match run::read_summary(dir) {
                Ok(s) => MemberEnd::Ended { end: RunEnd::Finished(Box::new(s)), trained: false },
                Err(e) => MemberEnd::Failed(e),
            }),
            Err(e) if e.is::<crate::run_dir::Busy>() => ends[index] = Some(MemberEnd::Busy(format!("{e}"))),
            Err(e) => ends[index] = Some(MemberEnd::Failed(e)),
        }
    }
    // Members that stand at the same iteration train together.
    claimed.sort_by_key(|c| (c.checkpoint.as_ref().map_or(0, |ck| ck.meta.next_iteration), c.index));
    let mut rest = claimed.into_iter().peekable();
    while let Some(first) = rest.next() {
        let at = first.checkpoint.as_ref().map_or(0, |ck| ck.meta.next_iteration);
        let mut group = vec![first];
        while group.len() < pack.max(1) && rest.peek().is_some_and(|c| c.checkpoint.as_ref().map_or(0, |ck| ck.meta.next_iteration) == at) {
            group.push(rest.next().expect("peeked"));
        }
        let stop_asked = crate::signals::requested().is_some();
        let indices: Vec<usize> = group.iter().map(|c| c.index).collect();
        let results = if stop_asked { Err(anyhow::anyhow!("stopped before it started")) } else { train_group(group, data, rt) };
        match results {
            Ok(results) => indices.iter().zip(results).for_each(|(&k, r)| ends[k] = Some(r)),
            Err(e) => {
                let line = format!("{e:#}");
                indices.iter().for_each(|&k| ends[k] = Some(MemberEnd::Failed(anyhow::anyhow!("{line}"))));
            }
        }
    }
    ends.into_iter().map(|e| e.expect("every member ended")).collect()
}

/// One pack: build each member as its single run would, stack, train, finish each folder.
fn train_group(group: Vec<Claimed>, data: &DeviceData, rt: &Runtime) -> Result<Vec<MemberEnd>> {
    let started = Instant::now();
    let started_utc = crate::system_info::utc_now();
    crate::signals::install()?;
    let cfg0 = &group[0].cfg;
    let mut networks = Vec::new();
    let mut rngs = Vec::new();
    for c in &group {
        networks.push(run::build_network(&c.cfg, rt.device));
        rngs.push(crate::torch_extras::cpu_rng_state());
        if c.checkpoint.is_none() {
            c.run.write_json("config.json", &c.cfg)?;
        }
    }
    let net = PackedNet::stack(cfg0.model, &networks, rt.device.is_cuda())?;
    drop(networks);
    let cfgs: Vec<TrainConfig> = group.iter().map(|c| c.cfg.clone()).collect();
    let starts: Vec<MemberStart> = group.iter().zip(rngs).map(|(c, rng)| match &c.checkpoint {
        Some(ck) => MemberStart::Resume(ck),
        None => MemberStart::Fresh { rng },
    }).collect();
    let label = if group.len() > 1 { format!("{} x{}", cfg0.model.name(), group.len()) } else { cfg0.model.name().to_string() };
    let pb = Progress::new(cfg0.iterations as u64, &label, rt.quiet);
    pb.set_position(group[0].checkpoint.as_ref().map_or(0, |ck| ck.meta.next_iteration) as u64);
    // One log line per evaluation for a lone member; a pack shows its progress only.
    let quiet = rt.quiet || group.len() > 1;
    let mut observers = group.iter().map(|c| {
        let earlier = c.checkpoint.as_ref().map(|ck| ck.meta.points.clone()).unwrap_or_default();
        RunObserver::new(&c.run, &c.cfg, earlier, &pb, quiet)
    }).collect::<Result<Vec<_>>>()?;
    let mut obs: Vec<&mut dyn Observer> = observers.iter_mut().map(|o| o as &mut dyn Observer).collect();
    let ctx = PackContext { net: &net, cfgs: &cfgs, data, allow_graph: rt.allow_graph, quiet: rt.quiet };
    let outcomes = train_packed(&ctx, &starts, &mut obs);
    pb.finish();
    let outcomes = outcomes?;
    Ok(group.iter().zip(outcomes).zip(&observers).enumerate().map(|(m, ((c, outcome), o))| {
        let session = Session { started, started_utc: started_utc.clone(), resumed: c.checkpoint.is_some() };
        match run::finish_run(&c.cfg, &c.run, rt, &net.member(m as i64), outcome, o.points(), session) {
            Ok(end) => MemberEnd::Ended { end, trained: true },
            Err(e) => MemberEnd::Failed(e),
        }
    }).collect())
}
