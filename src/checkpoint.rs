//! A run's checkpoint: everything the loop needs to continue exactly where it stood. One
//! safetensors file (`checkpoint.safetensors`), written atomically: the parameters (`param.*`),
//! Adam's moments (`adam.*`), the CPU generator's state (`rng.cpu`), the batcher's order
//! (`batcher.order`), the running training sums (`sums.*`); and, as JSON in the file's metadata
//! under `nndl.checkpoint`, the position, the metrics so far and the config.
use crate::config::TrainConfig;
use crate::data::BatcherPosition;
use crate::metrics::EvalPoint;
use crate::models::conv_block::ConvPlan;
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

pub const FILE: &str = "checkpoint.safetensors";
const META_KEY: &str = "nndl.checkpoint";
const FORMAT: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    pub format: u32,
    /// The first iteration still to run.
    pub next_iteration: usize,
    pub config: TrainConfig,
    pub adam_step: Option<i64>,
    /// The batch order is planned in chunks; the batcher is saved as it stood before the chunk
    /// holding `next_iteration` was drawn, which started at this iteration.
    pub chunk_start: usize,
    pub batcher: BatcherPosition,
    /// Steps summed into `sums.*` since the last evaluation.
    pub since_eval: usize,
    pub points: Vec<EvalPoint>,
    pub train_seconds: f64,
    pub eval_seconds: f64,
    /// Where the run trained; on CUDA the GPU generator is re-seeded on resume, not restored.
    pub device: String,
    /// How the CNN's convolutions computed (NNDL_CNN_LAYOUT, NNDL_CNN_BIAS): they change how a
    /// run rounds, so a resumed session that computes otherwise says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convolutions: Option<ConvPlan>,
    /// The last step whose training loss was finite, and that loss: what a divergence right
    /// after a resume reports, as the uninterrupted run would have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_finite_loss: Option<(usize, f64)>,
}

/// Where the run in `dir` stands by its checkpoint (the iteration it continues from), read
/// from the file's header alone; None without a readable one.
pub fn peek_position(dir: &Path) -> Option<usize> {
    let metadata = crate::tensor_file::read_metadata(&dir.join(FILE)).ok()?;
    let meta: serde_json::Value = serde_json::from_str(metadata.get(META_KEY)?).ok()?;
    meta.get("next_iteration")?.as_u64().map(|n| n as usize)
}

#[derive(Debug)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string(&self.meta)?;
        let mut tensors: Vec<(String, Tensor)> = self.tensors.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        crate::tensor_file::write(path, &tensors, Some(HashMap::from([(META_KEY.to_string(), json)])))
    }

    pub fn load(path: &Path) -> Result<Checkpoint> {
        let (tensors, metadata) = crate::tensor_file::read(path)?;
        Checkpoint::from_parts(tensors, metadata).map_err(|e| anyhow!("{} is not a usable checkpoint: {e}", path.display()))
    }

    /// Checks the parts a file held; also the fuzzing entry point.
    pub fn from_parts(tensors: Vec<(String, Tensor)>, metadata: HashMap<String, String>) -> Result<Checkpoint> {
        let json = metadata.get(META_KEY).ok_or_else(|| anyhow!("no {META_KEY} metadata"))?;
        let meta: CheckpointMeta = serde_json::from_str(json).map_err(|e| anyhow!("bad metadata: {e}"))?;
        if meta.format != FORMAT {
            bail!("format {} (this nndl reads {FORMAT})", meta.format);
        }
        meta.config.validate(&crate::config::Origin::File("checkpoint.safetensors".into()))?;
        if meta.next_iteration > meta.config.iterations || meta.chunk_start > meta.next_iteration {
            bail!("position {} (chunk {}) outside a run of {} iterations", meta.next_iteration, meta.chunk_start, meta.config.iterations);
        }
        // The history must be the evaluations a run of this config made before its position,
        // and the running sums must cover the steps since the last of them.
        // (Every eval_every-th iteration and the last: stepped, not walked, as a hostile
        // checkpoint may claim a billion iterations.)
        let (cfg, next) = (&meta.config, meta.next_iteration);
        let last = cfg.iterations - 1;
        let extra = (last < next && !last.is_multiple_of(cfg.eval_every)).then_some(last);
        if !meta.points.iter().map(|p| p.iteration).eq((0..next).step_by(cfg.eval_every).chain(extra)) {
            bail!("its {} evaluation points are not the ones due before iteration {next}", meta.points.len());
        }
        let since_last = next - meta.points.last().map_or(0, |p| p.iteration + 1);
        if meta.since_eval != since_last {
            bail!("since_eval {} where {since_last} steps followed the last evaluation", meta.since_eval);
        }
        let tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
        // The types the loop wrote them in: read in another, their bytes would be other numbers.
        for (key, kind) in [("rng.cpu", Kind::Uint8), ("batcher.order", Kind::Int64), ("sums.loss", Kind::Float), ("sums.correct", Kind::Int64)] {
            match tensors.get(key) {
                None => bail!("missing tensor {key}"),
                Some(t) if t.kind() != kind => bail!("its {key} is {:?}, not {kind:?}", t.kind()),
                Some(_) => {}
            }
        }
        Ok(Checkpoint { meta, tensors })
    }

    /// A note when this session computes the convolutions otherwise than the run's earlier
    /// ones did (`now`, this session's plan): it goes on, but not as an uninterrupted run would.
    pub fn changed_plan(&self, now: Option<ConvPlan>) -> Option<String> {
        ConvPlan::change(self.meta.convolutions, now)
            .map(|change| format!("this run's convolutions ran in {change}: it goes on, rounding as an uninterrupted run would not"))
    }

    pub fn tensor(&self, key: &str) -> Result<&Tensor> {
        self.tensors.get(key).ok_or_else(|| anyhow!("checkpoint lacks {key}"))
    }
}
