//! Packs of runs into their folders: each member's folder is claimed as `run::run_or_resume`
//! claims one (finished: kept; unfinished: resumed from its checkpoint; new: started), the
//! members that train are packed by the iteration they start from, and each ends as its single
//! run would (weights, figures, summary.json; a divergence is that member's error alone, and so
//! is a failure to write its first files, config.json and metrics.csv: the pack trains on without
//! it).
use super::net::PackedNet;
use super::trainer::{train_packed, MemberStart, PackContext};
use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::data::DeviceData;
use crate::models::conv_block::ConvPlan;
use crate::progress::Progress;
use crate::run::{self, Closing, RunEnd, RunObserver, Session};
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
    /// A stop was asked for (`signal`) before its pack started; its folder is as it was.
    NotStarted { signal: i32 },
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

/// A claimed member built as its single run builds it: its initial parameters (by name) and the
/// CPU generator's state after its initialisation.
struct Built {
    claimed: Claimed,
    params: Vec<(String, tch::Tensor)>,
    rng: Vec<u8>,
}

/// Trains `cfgs[k]` into `dirs[k]`, at most `pack` members at a time in one batched model.
/// Every config must be `packable` with the first. A member's folder is claimed (locked, its
/// checkpoint loaded) only when its pack is about to train, so that ten thousand seeds hold one
/// pack's locks and checkpoints at a time, not all of them.
pub fn run_members(cfgs: &[TrainConfig], dirs: &[PathBuf], pack: usize, data: &DeviceData, rt: &Runtime) -> Vec<MemberEnd> {
    let mut ends: Vec<Option<MemberEnd>> = cfgs.iter().map(|_| None).collect();
    // Members that stand at the same iteration train together: where each stands, read from
    // its checkpoint's header alone (a claim checks it again).
    let mut order: Vec<(usize, usize)> = dirs.iter().enumerate().map(|(k, dir)| (crate::checkpoint::peek_position(dir).unwrap_or(0), k)).collect();
    order.sort();
    let mut rest = order.into_iter().peekable();
    while let Some((at, first)) = rest.next() {
        let mut indices = vec![first];
        while indices.len() < pack.max(1) && rest.peek().is_some_and(|&(a, _)| a == at) {
            indices.push(rest.next().expect("peeked").1);
        }
        if let Some(signal) = crate::signals::requested() {
            indices.iter().for_each(|&k| ends[k] = Some(MemberEnd::NotStarted { signal }));
            continue;
        }
        let mut claimed = Vec::new();
        for k in indices {
            match claim(k, &cfgs[k], &dirs[k]) {
                Ok(Some(c)) => {
                    // As `nndl resume` says it: a rerun tries a failed member again.
                    if let (Some(reason), false) = (crate::run_dir::recorded_failure(&dirs[k]), rt.quiet) {
                        crate::say!("{} failed before ({reason}); trying again", dirs[k].display());
                    }
                    claimed.push(c);
                }
                Ok(None) => ends[k] = Some(match run::read_summary(&dirs[k]) {
                    // Named where it is now (its summary names where it was made).
                    Ok(s) => MemberEnd::Ended { end: RunEnd::Finished(Box::new(run::RunSummary { out_dir: dirs[k].clone(), ..s })), trained: false },
                    Err(e) => MemberEnd::Failed(e),
                }),
                Err(e) if e.is::<crate::run_dir::Busy>() => ends[k] = Some(MemberEnd::Busy(format!("{e}"))),
                Err(e) => ends[k] = Some(MemberEnd::Failed(e)),
            }
        }
        // A folder that another process moved on since it was peeked at trains apart, and so
        // does a member that computed on another thread count (it resumes on its own).
        let threads = |c: &Claimed| recorded_threads(c, rt.device.is_cuda());
        claimed.sort_by_key(|c| (position(c), threads(c), c.index));
        for group in claimed.chunk_by(|a, b| (position(a), threads(a)) == (position(b), threads(b))).map(<[Claimed]>::len).collect::<Vec<_>>() {
            let group: Vec<Claimed> = claimed.drain(..group).collect();
            let indices: Vec<usize> = group.iter().map(|c| c.index).collect();
            let trained = match pack {
                // --pack 1: no packs, each member computed by the single run's own loop. (A member
                // of a larger pack resumed alone stays a pack of one, computing as the pack did.)
                1 => group.into_iter().map(|member| train_alone(member, data, rt)).collect(),
                _ => crate::torch_extras::catch_panics(|| train_split(group, data, rt)),
            };
            match trained {
                Ok(results) => indices.iter().zip(results).for_each(|(&k, r)| ends[k] = Some(r)),
                Err(e) => {
                    let line = format!("{e:#}");
                    indices.iter().for_each(|&k| ends[k] = Some(MemberEnd::Failed(anyhow::anyhow!("{line}"))));
                }
            }
        }
    }
    let ends: Vec<MemberEnd> = ends.into_iter().map(|e| e.expect("every member ended")).collect();
    for (k, end) in ends.iter().enumerate() {
        if let MemberEnd::Failed(e) = end {
            run::record_run_failure(&dirs[k], &cfgs[k], &run::error_line(e));
        }
    }
    ends
}

/// The iteration a claimed member starts from.
fn position(c: &Claimed) -> usize {
    c.checkpoint.as_ref().map_or(0, |ck| ck.meta.next_iteration)
}

/// The thread count a resumed CPU member computed on (its checkpoint's), which it resumes on.
/// (On CUDA the CPU's thread count does not change what a member computes.)
fn recorded_threads(c: &Claimed, cuda: bool) -> Option<usize> {
    c.checkpoint.as_ref().filter(|_| !cuda).and_then(|ck| ck.meta.config.threads)
}

/// Claims member `index`'s folder as `run::run_or_resume` claims one: None when it is finished
/// (with this config), else the member with its checkpoint if it has one.
fn claim(index: usize, cfg: &TrainConfig, dir: &std::path::Path) -> Result<Option<Claimed>> {
    let (run, state) = run::claim_for(cfg, dir)?;
    match state {
        FolderState::FinishedRun if !run::lost_its_weights(dir) => run::check_saved_config(cfg, &run).map(|()| None),
        FolderState::FinishedRun | FolderState::UnfinishedRun => Ok(Some(Claimed { index, checkpoint: run::saved_checkpoint(cfg, &run)?, run, cfg: cfg.clone() })),
        _ => Ok(Some(Claimed { index, run, cfg: cfg.clone(), checkpoint: None })),
    }
}

/// A member alone: its single run, as `nndl mlp|cnn` or `sweep --pack 1` trains it.
fn train_alone(member: Claimed, data: &DeviceData, rt: &Runtime) -> Result<MemberEnd> {
    let cfg = run::on_its_threads(&member.cfg, member.checkpoint.as_ref(), rt.device);
    let network = run::build_network(&cfg, rt.device);
    let end = run::train_into(&cfg, &network, data, &member.run, rt, member.checkpoint.as_ref(), Instant::now())?;
    Ok(MemberEnd::Ended { end, trained: true })
}

/// One pack on the CPU's threads. libtorch's products and convolutions gain less from a
/// second thread than a second run does, so on the CPU a pack is split into one sub-pack per
/// thread, each single-threaded, side by side (measured faster for both nets). Members with
/// random draws (dropout, shifts) take turns at libtorch's one CPU generator (`MemberRngs`).
fn train_split(group: Vec<Claimed>, data: &DeviceData, rt: &Runtime) -> Result<Vec<MemberEnd>> {
    crate::signals::install()?;
    let cfg = group[0].cfg.clone();
    let start_at = group[0].checkpoint.as_ref().map_or(0, |ck| ck.meta.next_iteration);
    let label = if group.len() > 1 { format!("{} x{}", cfg.model.name(), group.len()) } else { format!("{} seed {}", cfg.model.name(), cfg.seed) };
    let pb = Progress::new(cfg.iterations as u64, &label, rt.quiet);
    pb.set_position(start_at as u64);
    // Built here, one after another: initialisation seeds and draws from the global generator.
    let group: Vec<Built> = group.into_iter().map(|claimed| {
        let network = run::build_network(&claimed.cfg, rt.device);
        Built { params: run::parameters(&network.vs), rng: crate::torch_extras::cpu_rng_state(), claimed }
    }).collect();
    let threads = tch::get_num_threads().max(1) as usize;
    if rt.device.is_cuda() {
        let ends = train_group(group, data, rt, rt.profile_steps, &pb);
        pb.finish();
        return ends;
    }
    // Each member computes on its sub-pack's threads, and its config says so: a resume or a
    // rerun of its config.json then computes as it did (the CNN's convolutions round by the
    // thread count). Resumed members (a group holds members that computed on one count) take
    // the count they started with, whatever this command's, so that a rerun ends bit for bit
    // as if never stopped: members stopped at different steps resume in smaller groups.
    let (parts, per_part) = match recorded_threads(&group[0].claimed, false) {
        Some(recorded) => ((threads / recorded).clamp(1, group.len()), recorded.min(crate::config::max_threads())),
        None => {
            let parts = threads.min(group.len());
            (parts, (threads / parts).max(1))
        }
    };
    let mut rest = group.into_iter().map(|mut b| {
        b.claimed.cfg.threads = Some(per_part);
        b
    });
    let sizes: Vec<usize> = (0..parts).map(|k| rest.len() / parts + usize::from(k < rest.len() % parts)).collect();
    let subgroups: Vec<Vec<Built>> = sizes.iter().map(|&n| rest.by_ref().take(n).collect()).collect();
    let ends = std::thread::scope(|scope| {
        let handles: Vec<_> = subgroups.into_iter().enumerate().map(|(k, sub)| {
            let (data, pb) = (data.shallow_clone(), &pb);
            // libtorch has one profiler a process: the first sub-pack's steps are recorded.
            let profile_steps = rt.profile_steps.filter(|_| k == 0);
            scope.spawn(move || {
                // This thread's own libtorch and MKL thread counts (the global one is restored below).
                tch::set_num_threads(per_part as i32);
                crate::torch_extras::catch_panics(|| train_group(sub, &data, rt, profile_steps, pb))
            })
        }).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|payload| Err(anyhow::anyhow!("{}", crate::torch_extras::panic_line(crate::torch_extras::panic_text(&*payload)))))).collect::<Vec<_>>()
    });
    tch::set_num_threads(threads as i32);
    pb.finish();
    // A sub-pack that failed as a whole fails its own members only.
    Ok(ends.into_iter().zip(sizes).flat_map(|(part, n)| match part {
        Ok(members) => members,
        Err(e) => {
            let line = format!("{e:#}");
            (0..n).map(|_| MemberEnd::Failed(anyhow::anyhow!("{line}"))).collect()
        }
    }).collect())
}

/// One pack of built members: stack, train (recording `profile_steps` steps), finish each folder.
/// A member whose own first files (config.json, metrics.csv) cannot be written fails alone,
/// with its own error, and the pack trains without it.
fn train_group(built: Vec<Built>, data: &DeviceData, rt: &Runtime, profile_steps: Option<usize>, pb: &Progress) -> Result<Vec<MemberEnd>> {
    let session = (Instant::now(), crate::system_info::utc_now());
    let mut ends: Vec<Option<MemberEnd>> = built.iter().map(|_| None).collect();
    let mut ready = Ready::default();
    for (k, b) in built.into_iter().enumerate() {
        match write_own_config(&b.claimed, rt) {
            Ok(()) => ready.push(k, b),
            Err(e) => ends[k] = Some(failed_alone(e)),
        }
    }
    let mut observers = loop {
        let made = observers_of(&ready.group, pb, rt.quiet);
        if made.iter().all(Result::is_ok) {
            break made.into_iter().collect::<Result<Vec<_>>>()?;
        }
        // Its metrics.csv not written: that member leaves the pack, and the rest are watched anew.
        let failed: Vec<(usize, anyhow::Error)> = made.into_iter().enumerate().filter_map(|(m, o)| o.err().map(|e| (m, e))).collect();
        for (m, e) in failed.into_iter().rev() {
            ends[ready.remove(m)] = Some(failed_alone(e));
        }
    };
    if !ready.group.is_empty() {
        let starts = std::mem::take(&mut ready.starts);
        let finished = train_and_finish(&ready.group, starts, &mut observers, data, rt, profile_steps, session);
        ready.places.iter().zip(finished).for_each(|(&k, end)| ends[k] = Some(end));
    }
    Ok(ends.into_iter().map(|e| e.expect("every member of the group ended")).collect())
}

/// A member's own failure, said as a failure of its files in the loop is.
fn failed_alone(e: anyhow::Error) -> MemberEnd {
    MemberEnd::Failed(anyhow::anyhow!("{e:#} (it stopped alone; once mended, the same command continues it)"))
}

/// The members of a group that train, each with its place in the group.
#[derive(Default)]
struct Ready {
    places: Vec<usize>,
    group: Vec<Claimed>,
    /// Each one's initial parameters and generator state (`Built`'s).
    starts: Vec<Initial>,
}

type Initial = (Vec<(String, tch::Tensor)>, Vec<u8>);

impl Ready {
    fn push(&mut self, place: usize, b: Built) {
        self.places.push(place);
        self.group.push(b.claimed);
        self.starts.push((b.params, b.rng));
    }

    /// Takes the `m`th member out of the pack; its place in the group.
    fn remove(&mut self, m: usize) -> usize {
        self.group.remove(m);
        self.starts.remove(m);
        self.places.remove(m)
    }
}

/// Trains the ready members as one pack, then writes each one's files. The pack's own failure
/// (its stacking, its loop) is each of its members'.
fn train_and_finish(group: &[Claimed], starts: Vec<Initial>, observers: &mut [RunObserver], data: &DeviceData, rt: &Runtime, profile_steps: Option<usize>, (started, started_utc): (Instant, String)) -> Vec<MemberEnd> {
    let (net, outcomes) = match train_ready(group, starts, observers, data, rt, profile_steps) {
        Ok(trained) => trained,
        Err(e) => {
            let line = format!("{e:#}");
            return group.iter().map(|_| MemberEnd::Failed(anyhow::anyhow!("{line}"))).collect();
        }
    };
    let closings: Vec<Result<Closing>> = group.iter().zip(outcomes).zip(observers.iter()).enumerate().map(|(m, ((c, outcome), o))| {
        let session = Session { started, started_utc: started_utc.clone(), resumed: c.checkpoint.is_some() };
        run::closing(&c.cfg, &c.run, rt, &net.member(m as i64), outcome, o.points(), session)
    }).collect();
    write_side_by_side(group.iter().map(|c| &c.run).zip(closings).collect())
}

/// A fresh member's config.json (a resumed member has its own already), or the note on how its
/// convolutions changed since its checkpoint.
fn write_own_config(claimed: &Claimed, rt: &Runtime) -> Result<()> {
    match &claimed.checkpoint {
        None => claimed.run.write_json("config.json", &claimed.cfg)?,
        Some(ck) => if let (Some(note), false) = (ck.changed_plan(ConvPlan::for_run(claimed.cfg.model, rt.device)), rt.quiet) {
            crate::say!("note: {}: {note}", claimed.run.path.display());
        },
    }
    Ok(())
}

/// Each member's observer (its metrics.csv started), or why it could not be made.
fn observers_of<'a>(group: &'a [Claimed], pb: &'a Progress, quiet: bool) -> Vec<Result<RunObserver<'a>>> {
    // One log line per evaluation for a lone member; a pack shows its progress only.
    let quiet = quiet || group.len() > 1;
    group.iter().map(|c| {
        let earlier = c.checkpoint.as_ref().map(|ck| ck.meta.points.clone()).unwrap_or_default();
        RunObserver::new(&c.run, &c.cfg, earlier, pb, quiet).map(RunObserver::naming_the_seed)
    }).collect()
}

/// Stacks the ready members' parameters and trains them together: the pack's net, and each
/// member's outcome.
fn train_ready(group: &[Claimed], starts: Vec<Initial>, observers: &mut [RunObserver], data: &DeviceData, rt: &Runtime, profile_steps: Option<usize>) -> Result<(PackedNet, Vec<crate::trainer::TrainOutcome>)> {
    let (params, rngs): (Vec<_>, Vec<_>) = starts.into_iter().unzip();
    let cfg0 = &group[0].cfg;
    let mut net = PackedNet::from_members(cfg0.model, params, super::stacked_on(cfg0.model, rt.device.is_cuda()))?;
    if let Some(size) = super::stack_size() {
        net.split_stacks(size);
    }
    if net.stacked && super::weights_in_out() {
        net.store_weights_in_out();
    }
    let cfgs: Vec<TrainConfig> = group.iter().map(|c| c.cfg.clone()).collect();
    let starts: Vec<MemberStart> = group.iter().zip(rngs).map(|(c, rng)| match &c.checkpoint {
        Some(ck) => MemberStart::Resume(ck),
        None => MemberStart::Fresh { rng },
    }).collect();
    let mut obs: Vec<&mut dyn Observer> = observers.iter_mut().map(|o| o as &mut dyn Observer).collect();
    let ctx = PackContext { net: &net, cfgs: &cfgs, data, allow_graph: rt.allow_graph, quiet: rt.quiet, profile_steps };
    let outcomes = train_packed(&ctx, &starts, &mut obs)?;
    Ok((net, outcomes))
}

/// Each member's files (weights, figures, summary.json: about 13 ms of drawing and fsyncs a
/// member on this CPU), a thread a member. A CUDA pack has one training thread, which wrote them
/// one member after another. The threads call no libtorch, so its thread pools stay as they
/// are. The standard library's scoped threads suffice: a pack's members are a handful of items.
fn write_side_by_side(members: Vec<(&RunDir, Result<Closing>)>) -> Vec<MemberEnd> {
    let written = |(run, closing): (&RunDir, Result<Closing>)| match closing.and_then(|c| c.write(run)) {
        Ok(end) => MemberEnd::Ended { end, trained: true },
        Err(e) => MemberEnd::Failed(e),
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = members.into_iter().map(|member| scope.spawn(move || {
            crate::torch_extras::catch_panics(|| Ok(written(member))).unwrap_or_else(MemberEnd::Failed)
        })).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| MemberEnd::Failed(anyhow::anyhow!("the thread writing a member's files panicked")))).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::{write_side_by_side, MemberEnd};
    use crate::metrics::EvalPoint;
    use crate::run::{Closing, RunEnd};
    use crate::run_dir::RunDir;

    #[test]
    fn members_written_side_by_side_keep_their_places_and_their_own_failures() {
        let root = tempfile::tempdir().unwrap();
        let runs: Vec<RunDir> = (0..3).map(|k| RunDir::create(&root.path().join(format!("seed-{k}")), false).unwrap()).collect();
        let point = EvalPoint { iteration: 0, train_loss: 2.0, train_accuracy: 0.1, test_loss: 2.0, test_accuracy: 0.1 };
        let closings = vec![
            Ok(Closing::Done(RunEnd::Interrupted { signal: 2, next_iteration: 5, out_dir: runs[0].path.clone() })),
            Err(anyhow::anyhow!("member 1 failed before its files")),
            Ok(Closing::Diverged { name: "mlp", points: vec![point], reason: "training diverged at iteration 3".into() }),
        ];
        let ends = write_side_by_side(runs.iter().zip(closings).collect());
        assert!(matches!(&ends[0], MemberEnd::Ended { end: RunEnd::Interrupted { next_iteration: 5, .. }, trained: true }));
        assert!(matches!(&ends[1], MemberEnd::Failed(e) if e.to_string().contains("member 1")));
        assert!(matches!(&ends[2], MemberEnd::Failed(e) if e.to_string().contains("diverged at iteration 3")));
        // The diverged member's figures and failure record, in its own folder only.
        assert!(runs[2].file("mlp-loss.png").exists() && runs[2].file(crate::run_dir::FAILED).exists());
        assert!(!runs[0].file("mlp-loss.png").exists() && !runs[1].file(crate::run_dir::FAILED).exists());
    }
}
