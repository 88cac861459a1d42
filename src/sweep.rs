//! A sweep's spec (TOML) and its trials. The spec names the model and gives, for the seed and any
//! training setting, a value, a list, a range or a log-range; the trials are the cartesian
//! product (or, with `random = N`, N draws from the ranges with a fixed sampler seed). Every
//! trial is checked by `TrainConfig::validate` before anything runs, and named by the settings
//! that vary (`lr=0.005,seed=3`), which is also its folder's name.
//!
//! ```toml
//! model = "mlp"                                   # mlp or cnn
//! preset = "faithful"                             # a value, or ["faithful", "modern"]
//! iterations = 300                                # fixed settings
//! seed = { from = 0, to = 9 }                     # range (step 1 by default)
//! lr = { from = 0.001, to = 0.05, count = 5, scale = "log" }   # log-range
//! batch_size = [50, 100]                          # list
//! # random = 8                                    # 8 random trials instead of the grid
//! # sampler_seed = 0
//! ```
use crate::config::{number, ModelKind, Origin, Preset, TrainConfig};
use crate::rng::Rng;
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The most trials a spec may expand to.
pub const MAX_TRIALS: usize = 100_000;
/// The largest spec file read.
const MAX_SPEC_BYTES: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Int,
    Float,
    Preset,
    Bool,
}

/// The settings a spec may set, with their kinds.
const SETTINGS: [(&str, Kind); 11] = [
    ("seed", Kind::Int), ("lr", Kind::Float), ("batch_size", Kind::Int), ("iterations", Kind::Int),
    ("eval_every", Kind::Int), ("checkpoint_every", Kind::Int), ("preset", Kind::Preset), ("tf32", Kind::Bool),
    ("deterministic", Kind::Bool), ("allow_nan", Kind::Bool), ("flush_denormals", Kind::Bool),
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Value {
    /// As a trial name writes it.
    pub fn label(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Float(f) => number(*f),
            Value::Bool(b) => b.to_string(),
            Value::Str(s) => s.clone(),
        }
    }
}

#[derive(Clone, Debug)]
enum Values {
    List(Vec<Value>),
    /// from, to, step (ints or floats).
    Range { from: f64, to: f64, step: f64 },
    /// `count` points from `from` to `to`, evenly on a linear or a log scale.
    Spaced { from: f64, to: f64, count: usize, log: bool },
}

#[derive(Clone, Debug)]
struct Axis {
    key: String,
    kind: Kind,
    values: Values,
}

#[derive(Clone, Debug)]
pub struct SweepSpec {
    pub path: PathBuf,
    pub model: ModelKind,
    axes: Vec<Axis>,
    pub random: Option<usize>,
    pub sampler_seed: u64,
}

/// One trial: its name (and folder), the settings that vary, and its full config.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trial {
    pub name: String,
    pub params: Vec<(String, Value)>,
    pub config: TrainConfig,
}

/// A short fingerprint of the configs of `trials`, in order: what a worker's driver (or --list)
/// expanded, which the worker checks against sweep.json before it trains, since another
/// command with an edited spec may have rewritten that file since.
pub fn configs_digest(trials: &[&Trial]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for t in trials {
        // A config is plain numbers, strings and enums: its JSON cannot fail to be written.
        hash.update(serde_json::to_vec(&t.config).unwrap_or_default());
    }
    hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn kind_of(key: &str) -> Option<Kind> {
    SETTINGS.iter().find(|(k, _)| *k == key).map(|&(_, kind)| kind)
}

/// A TOML value as a setting of `kind`, or an error naming the key.
fn scalar(spec: &str, key: &str, kind: Kind, v: &toml::Value) -> Result<Value> {
    let wrong = |want: &str| anyhow!("{spec}: `{key}` must be {want}, got {v}");
    Ok(match (kind, v) {
        (Kind::Int, toml::Value::Integer(i)) => Value::Int(*i),
        (Kind::Int, _) => return Err(wrong("an integer")),
        (Kind::Float, toml::Value::Float(f)) => Value::Float(*f),
        (Kind::Float, toml::Value::Integer(i)) => Value::Float(*i as f64),
        (Kind::Float, _) => return Err(wrong("a number")),
        (Kind::Bool, toml::Value::Boolean(b)) => Value::Bool(*b),
        (Kind::Bool, _) => return Err(wrong("true or false")),
        (Kind::Preset, toml::Value::String(s)) if s == "faithful" || s == "modern" => Value::Str(s.clone()),
        (Kind::Preset, _) => return Err(wrong("\"faithful\" or \"modern\"")),
    })
}

fn number_of(spec: &str, key: &str, field: &str, v: &toml::Value) -> Result<f64> {
    // Ranges are stepped in f64, which holds every integer up to 2^53 exactly (and seeds
    // beyond it would silently become others).
    const EXACT: i64 = 1 << 53;
    match v {
        toml::Value::Integer(i) if i.unsigned_abs() > EXACT as u64 => bail!("{spec}: `{key}.{field}` {i}: a range's bounds and step must be within ±2^53 ({EXACT}); list larger values instead"),
        toml::Value::Integer(i) => Ok(*i as f64),
        toml::Value::Float(f) if f.is_finite() => Ok(*f),
        _ => bail!("{spec}: `{key}.{field}` must be a finite number, got {v}"),
    }
}

fn parse_axis(spec: &str, key: &str, kind: Kind, v: &toml::Value) -> Result<Axis> {
    let values = match v {
        toml::Value::Array(items) => {
            if items.is_empty() {
                bail!("{spec}: `{key}` is an empty list");
            }
            Values::List(items.iter().map(|i| scalar(spec, key, kind, i)).collect::<Result<_>>()?)
        }
        toml::Value::Table(t) => {
            if !matches!(kind, Kind::Int | Kind::Float) {
                bail!("{spec}: `{key}` takes a value or a list, not a range");
            }
            for field in t.keys() {
                if !["from", "to", "step", "count", "scale"].contains(&field.as_str()) {
                    bail!("{spec}: `{key}` has an unknown field `{field}` (a range has from, to and step or count, and scale)");
                }
            }
            let get = |f: &str| t.get(f).map(|v| number_of(spec, key, f, v)).transpose();
            let (from, to) = match (get("from")?, get("to")?) {
                (Some(a), Some(b)) => (a, b),
                _ => bail!("{spec}: `{key}` needs both `from` and `to`"),
            };
            let log = match t.get("scale").map(|s| s.as_str()) {
                None | Some(Some("linear")) => false,
                Some(Some("log")) => true,
                Some(_) => bail!("{spec}: `{key}.scale` must be \"linear\" or \"log\""),
            };
            match (get("step")?, t.get("count")) {
                (Some(_), Some(_)) => bail!("{spec}: `{key}` has both `step` and `count`; give one"),
                (step, None) if !log => {
                    let step = step.unwrap_or(1.0);
                    if step == 0.0 {
                        bail!("{spec}: `{key}.step` must not be 0");
                    }
                    if (to - from) * step < 0.0 {
                        bail!("{spec}: `{key}` never gets from {} to {} in steps of {}", number(from), number(to), number(step));
                    }
                    if kind == Kind::Int && (from.fract() != 0.0 || step.fract() != 0.0) {
                        bail!("{spec}: `{key}` is an integer setting: from and step must be integers");
                    }
                    if ((to - from) / step).abs() >= MAX_TRIALS as f64 {
                        bail!("{spec}: `{key}` has more than {MAX_TRIALS} values");
                    }
                    Values::Range { from, to, step }
                }
                (_, count) => {
                    let count = match count {
                        Some(toml::Value::Integer(c)) if *c >= 2 && (*c as usize) <= MAX_TRIALS => *c as usize,
                        Some(c) => bail!("{spec}: `{key}.count` must be an integer from 2 to {MAX_TRIALS}, got {c}"),
                        None => bail!("{spec}: `{key}` with scale = \"log\" needs `count`"),
                    };
                    if log && (from <= 0.0 || to <= 0.0) {
                        bail!("{spec}: `{key}` on a log scale needs from and to above 0");
                    }
                    if kind == Kind::Int {
                        bail!("{spec}: `{key}` is an integer setting: give a step, not a count");
                    }
                    Values::Spaced { from, to, count, log }
                }
            }
        }
        other => Values::List(vec![scalar(spec, key, kind, other)?]),
    };
    Ok(Axis { key: key.to_string(), kind, values })
}

/// Six significant digits: values that land in names and configs alike.
fn round6(x: f64) -> f64 {
    format!("{x:.5e}").parse().unwrap_or(x)
}

fn as_value(kind: Kind, x: f64) -> Value {
    if kind == Kind::Int { Value::Int(x.round() as i64) } else { Value::Float(round6(x)) }
}

impl Axis {
    /// Every grid value, in order.
    fn grid(&self) -> Vec<Value> {
        match &self.values {
            Values::List(v) => v.clone(),
            &Values::Range { from, to, step } => {
                let n = ((to - from) / step + 1e-9).floor() as usize + 1;
                (0..n).map(|i| as_value(self.kind, from + step * i as f64)).collect()
            }
            &Values::Spaced { from, to, count, log } => (0..count)
                .map(|i| {
                    let t = i as f64 / (count - 1) as f64;
                    if log { (from.ln() + t * (to.ln() - from.ln())).exp() } else { from + t * (to - from) }
                })
                .map(|x| as_value(self.kind, x))
                .collect(),
        }
    }

    /// One random draw: a list item, a lattice point of a stepped range, or a point of a
    /// counted range drawn uniformly on its scale.
    fn sample(&self, rng: &mut Rng) -> Value {
        match &self.values {
            Values::List(v) => v[rng.below(v.len() as u64) as usize].clone(),
            &Values::Range { from, to, step } => {
                // The grid's point i, without building the grid at every draw.
                let n = ((to - from) / step + 1e-9).floor() as u64 + 1;
                as_value(self.kind, from + step * rng.below(n) as f64)
            }
            &Values::Spaced { from, to, log, .. } => {
                let t = rng.next_f64();
                as_value(self.kind, if log { (from.ln() + t * (to.ln() - from.ln())).exp() } else { from + t * (to - from) })
            }
        }
    }

    fn varies(&self) -> bool {
        !matches!(&self.values, Values::List(v) if v.len() == 1)
    }
}

impl SweepSpec {
    pub fn load(path: &Path) -> Result<SweepSpec> {
        let text = crate::run_dir::read_small_text(path, MAX_SPEC_BYTES, "a sweep spec")?;
        SweepSpec::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<SweepSpec> {
        let spec = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "spec".into());
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| anyhow!("{spec} is not valid TOML: {}", e.message()))?;
        let model = match table.get("model") {
            Some(toml::Value::String(m)) if m == "mlp" => ModelKind::Mlp,
            Some(toml::Value::String(m)) if m == "cnn" => ModelKind::Cnn,
            Some(other) => bail!("{spec}: `model` must be \"mlp\" or \"cnn\", got {other}"),
            None => bail!("{spec}: `model` is missing (\"mlp\" or \"cnn\")"),
        };
        let mut random = None;
        let mut sampler_seed = 0;
        let mut axes = Vec::new();
        for (key, v) in &table {
            match key.as_str() {
                "model" => {}
                "random" => match v {
                    toml::Value::Integer(n) if *n >= 1 && (*n as usize) <= MAX_TRIALS => random = Some(*n as usize),
                    _ => bail!("{spec}: `random` must be an integer from 1 to {MAX_TRIALS}, got {v}"),
                },
                "sampler_seed" => match v {
                    toml::Value::Integer(n) if *n >= 0 => sampler_seed = *n as u64,
                    _ => bail!("{spec}: `sampler_seed` must be an integer >= 0, got {v}"),
                },
                _ => {
                    let Some(kind) = kind_of(key) else {
                        let known: Vec<&str> = SETTINGS.iter().map(|s| s.0).collect();
                        bail!("{spec}: unknown key `{key}` (settings: {}; also model, random, sampler_seed)", known.join(", "));
                    };
                    axes.push(parse_axis(&spec, key, kind, v)?);
                }
            }
        }
        axes.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(SweepSpec { path: path.to_path_buf(), model, axes, random, sampler_seed })
    }

    /// Every trial, validated, in a fixed order.
    pub fn trials(&self) -> Result<Vec<Trial>> {
        let combos: Vec<Vec<Value>> = match self.random {
            Some(n) => {
                let mut rng = Rng::new(self.sampler_seed);
                (0..n).map(|_| self.axes.iter().map(|a| a.sample(&mut rng)).collect()).collect()
            }
            None => {
                let grids: Vec<Vec<Value>> = self.axes.iter().map(Axis::grid).collect();
                // A range finer than six significant digits would give one value twice, and
                // its trials would silently be fewer than the range asked for.
                for (axis, grid) in self.axes.iter().zip(&grids).filter(|(a, _)| !matches!(a.values, Values::List(_))) {
                    let mut seen = std::collections::HashSet::new();
                    if let Some(twice) = grid.iter().find(|v| !seen.insert(v.label())) {
                        bail!("{}: `{}` gives {} more than once at six significant digits; widen its step or list the values", self.path.display(), axis.key, twice.label());
                    }
                }
                let total = grids.iter().try_fold(1usize, |acc, g| acc.checked_mul(g.len()).filter(|&n| n <= MAX_TRIALS));
                if total.is_none() {
                    bail!("{}: the grid has more than {MAX_TRIALS} trials", self.path.display());
                }
                grids.iter().fold(vec![vec![]], |acc, grid| {
                    acc.iter().flat_map(|prefix| grid.iter().map(move |v| [prefix.clone(), vec![v.clone()]].concat())).collect()
                })
            }
        };
        let varying: Vec<bool> = self.axes.iter().map(|a| a.varies() || self.random.is_some()).collect();
        let mut trials: Vec<Trial> = Vec::with_capacity(combos.len());
        let mut names = std::collections::HashSet::new();
        for combo in combos {
            let params: Vec<(String, Value)> = self.axes.iter().zip(&combo).zip(&varying)
                .filter(|(_, &v)| v).map(|((a, v), _)| (a.key.clone(), v.clone())).collect();
            let name = if params.is_empty() { "trial".to_string() } else {
                params.iter().map(|(k, v)| format!("{k}={}", v.label())).collect::<Vec<_>>().join(",")
            };
            // A spec with nothing varying has one trial, with no name worth repeating.
            let config = self.config_for(&combo)
                .map_err(|e| if params.is_empty() { anyhow!("{e:#}") } else { anyhow!("trial {name}: {e:#}") })?;
            if names.insert(name.clone()) {
                trials.push(Trial { name, params, config });
            }
        }
        Ok(trials)
    }

    /// The preset's config with the trial's settings applied, validated.
    fn config_for(&self, combo: &[Value]) -> Result<TrainConfig> {
        let get = |key: &str| self.axes.iter().zip(combo).find(|(a, _)| a.key == key).map(|(_, v)| v.clone());
        let preset = match get("preset") {
            Some(Value::Str(s)) if s == "modern" => Preset::Modern,
            _ => Preset::Faithful,
        };
        let mut cfg = TrainConfig::preset(self.model, preset);
        let origin = Origin::File(self.path.clone());
        let nonneg = |key: &str, i: i64| -> Result<u64> { u64::try_from(i).map_err(|_| anyhow!("invalid {} {i}: must be >= 0", origin.name(key))) };
        for (axis, v) in self.axes.iter().zip(combo) {
            match (axis.key.as_str(), v) {
                ("seed", Value::Int(i)) => cfg.seed = nonneg("seed", *i)?,
                ("lr", Value::Float(f)) => cfg.lr = *f,
                ("batch_size", Value::Int(i)) => cfg.batch_size = nonneg("batch_size", *i)? as usize,
                ("iterations", Value::Int(i)) => cfg.iterations = nonneg("iterations", *i)? as usize,
                ("eval_every", Value::Int(i)) => cfg.eval_every = nonneg("eval_every", *i)? as usize,
                ("checkpoint_every", Value::Int(i)) => cfg.checkpoint_every = Some(nonneg("checkpoint_every", *i)? as usize),
                ("tf32", Value::Bool(b)) => cfg.tf32 = *b,
                ("deterministic", Value::Bool(b)) => cfg.deterministic = *b,
                ("allow_nan", Value::Bool(b)) => cfg.allow_nan = *b,
                ("flush_denormals", Value::Bool(b)) => cfg.flush_denormals = *b,
                ("preset", _) => {}
                (key, v) => bail!("`{key}` cannot take {v:?}"),
            }
        }
        cfg.validate(&origin)?;
        Ok(cfg)
    }
}

/// Which of N shards this process runs (0-based index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// `I/N`, 1-based as users write it: `2/3` is the second of three.
    pub fn parse(text: &str) -> Result<Shard> {
        let bad = || anyhow!("invalid --shard '{text}': expected I/N with 1 <= I <= N, such as 2/3");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if n == 0 || i == 0 || i > n {
            return Err(bad());
        }
        Ok(Shard { index: i - 1, count: n })
    }

    /// A Slurm job array's task. With `shards` (--shards N) the task id is the 0-based shard
    /// of N, whatever the array's shape: what a rerun of a few ids (`--array=1,3`) needs. Without
    /// it, the array is a range (`--array=MIN-MAX[:STEP]`) and its k-th id runs shard k of
    /// SLURM_ARRAY_TASK_COUNT. None outside an array.
    pub fn from_slurm(env: impl Fn(&str) -> Option<String>, shards: Option<usize>) -> Result<Option<Shard>> {
        let Some(id) = env("SLURM_ARRAY_TASK_ID") else {
            return match shards {
                Some(_) => bail!("--shards takes the shard from SLURM_ARRAY_TASK_ID, which is not set (use --shard I/N by hand)"),
                None => Ok(None),
            };
        };
        let num = |name: &str| -> Result<Option<usize>> {
            env(name).map(|v| v.trim().parse::<usize>().map_err(|_| anyhow!("{name}={v} is not a number"))).transpose()
        };
        let id: usize = id.trim().parse().map_err(|_| anyhow!("SLURM_ARRAY_TASK_ID={id} is not a number"))?;
        if let Some(n) = shards {
            if n == 0 {
                bail!("invalid --shards 0: must be at least 1");
            }
            if id >= n {
                bail!("SLURM_ARRAY_TASK_ID={id} is not a shard of --shards {n}: submit ids 0 to {}", n - 1);
            }
            return Ok(Some(Shard { index: id, count: n }));
        }
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let max = num("SLURM_ARRAY_TASK_MAX")?;
        if let Some(max) = max.filter(|&max| max < min) {
            bail!("SLURM_ARRAY_TASK_MAX={max} is below SLURM_ARRAY_TASK_MIN={min}");
        }
        let on_range = match max.map(|max| ((max - min) / step).checked_add(1)) {
            Some(None) => bail!("SLURM_ARRAY_TASK_MAX={} is not an array's last id", max.unwrap_or(0)),
            Some(Some(n)) => Some(n),
            None => None,
        };
        let count = match (num("SLURM_ARRAY_TASK_COUNT")?, on_range) {
            // A list of ids (--array=1,3) has fewer tasks than its span: its ids are not shards.
            (Some(c), Some(r)) if c != r => bail!("SLURM_ARRAY_TASK_COUNT={c} where ids {min} to {} step {step} would be {r}: \
                for a list of ids (--array=1,3) pass --shards N, N the size of the full array", max.unwrap_or(min)),
            (Some(c), _) => c,
            (None, Some(r)) => r,
            _ => bail!("SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is"),
        };
        let offset = id.checked_sub(min).filter(|o| o % step == 0).map(|o| o / step).filter(|&k| k < count);
        match offset {
            Some(index) => Ok(Some(Shard { index, count })),
            None => bail!("SLURM_ARRAY_TASK_ID={id} is not on the array's range ({min}, step {step}, {count} tasks): \
                for a list of ids (--array=1,3) pass --shards N, N the size of the full array"),
        }
    }

    /// Trial k belongs to shard k mod N: shards partition the trials exactly.
    pub fn owns(&self, k: usize) -> bool {
        k % self.count == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trials(text: &str) -> Result<Vec<Trial>> {
        SweepSpec::parse(Path::new("spec.toml"), text)?.trials()
    }

    #[test]
    fn grid_is_the_cartesian_product_named_by_what_varies() {
        let t = trials("model = \"mlp\"\niterations = 20\nseed = { from = 0, to = 2 }\nlr = [0.005, 0.01]\n").unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["lr=0.005,seed=0", "lr=0.005,seed=1", "lr=0.005,seed=2", "lr=0.01,seed=0", "lr=0.01,seed=1", "lr=0.01,seed=2"]);
        assert!(t.iter().all(|t| t.config.iterations == 20));
        assert_eq!(t[4].config.seed, 1);
        assert_eq!(t[4].config.lr, 0.01);
    }

    #[test]
    fn integer_ranges_stay_where_f64_is_exact() {
        let t = trials("model = \"mlp\"\nseed = { from = 9007199254740990, to = 9007199254740992 }\n").unwrap();
        let seeds: Vec<u64> = t.iter().map(|t| t.config.seed).collect();
        assert_eq!(seeds, [9007199254740990, 9007199254740991, 9007199254740992]);
        let err = trials("model = \"mlp\"\nseed = { from = 9007199254740993, to = 9007199254740995 }\n").unwrap_err().to_string();
        assert!(err.contains("within ±2^53"), "{err}");
    }

    #[test]
    fn log_range_is_geometric_and_rounded() {
        let t = trials("model = \"mlp\"\nlr = { from = 0.001, to = 0.1, count = 3, scale = \"log\" }\n").unwrap();
        let lrs: Vec<f64> = t.iter().map(|t| t.config.lr).collect();
        assert_eq!(lrs, [0.001, 0.01, 0.1]);
        assert_eq!(t[1].name, "lr=0.01");
    }

    #[test]
    fn a_range_finer_than_six_digits_is_refused() {
        let e = trials("model = \"mlp\"\nlr = { from = 0.001, to = 0.00100002, step = 1e-9 }\n").unwrap_err().to_string();
        assert!(e.contains("`lr` gives 0.001 more than once at six significant digits"), "{e}");
        // A list's repeats are the user's own: one trial each name, as before.
        assert_eq!(trials("model = \"mlp\"\nseed = [1, 1]\n").unwrap().len(), 1);
    }

    #[test]
    fn presets_supply_their_defaults() {
        let t = trials("model = \"cnn\"\npreset = [\"faithful\", \"modern\"]\n").unwrap();
        assert_eq!((t[0].config.lr, t[1].config.lr), (0.01, 2e-3));
        assert_eq!(t[1].name, "preset=modern");
    }

    #[test]
    fn switches_take_booleans() {
        let t = trials("model = \"mlp\"\nflush_denormals = [true, false]\ntf32 = true\n").unwrap();
        assert_eq!((t[0].config.flush_denormals, t[1].config.flush_denormals), (true, false));
        assert_eq!(t[1].name, "flush_denormals=false");
        assert!(t.iter().all(|t| t.config.tf32));
        assert!(trials("model = \"mlp\"\nflush_denormals = 1\n").is_err());
    }

    #[test]
    fn random_draws_are_fixed_by_the_sampler_seed() {
        let spec = "model = \"mlp\"\nrandom = 5\nsampler_seed = 3\nlr = { from = 0.001, to = 0.1, count = 2, scale = \"log\" }\nseed = [0, 1]\n";
        let (a, b) = (trials(spec).unwrap(), trials(spec).unwrap());
        assert_eq!(a.iter().map(|t| &t.name).collect::<Vec<_>>(), b.iter().map(|t| &t.name).collect::<Vec<_>>());
        assert!(a.iter().all(|t| (0.001..=0.1).contains(&t.config.lr)));
    }

    #[test]
    fn bad_specs_name_the_key_or_the_trial() {
        let cases = [
            ("model = \"rnn\"", "spec.toml: `model` must be \"mlp\" or \"cnn\", got \"rnn\""),
            ("seed = [1]", "spec.toml: `model` is missing (\"mlp\" or \"cnn\")"),
            ("model = \"mlp\"\nlearning_rate = 0.1", "spec.toml: unknown key `learning_rate`"),
            ("model = \"mlp\"\nlr = []", "spec.toml: `lr` is an empty list"),
            ("model = \"mlp\"\nbatch_size = 0.5", "spec.toml: `batch_size` must be an integer, got 0.5"),
            ("model = \"mlp\"\nlr = \"fast\"", "spec.toml: `lr` must be a number, got \"fast\""),
            ("model = \"mlp\"\nseed = { from = 0, to = 5, step = 0 }", "spec.toml: `seed.step` must not be 0"),
            ("model = \"mlp\"\nseed = { from = 5, to = 0 }", "spec.toml: `seed` never gets from 5 to 0 in steps of 1"),
            ("model = \"mlp\"\nlr = { from = 0, to = 1, count = 3, scale = \"log\" }", "spec.toml: `lr` on a log scale needs from and to above 0"),
            ("model = \"mlp\"\nlr = { from = 0.1, to = 1, step = 0.1, count = 3 }", "spec.toml: `lr` has both `step` and `count`; give one"),
            ("model = \"mlp\"\nlr = { from = 0.1 }", "spec.toml: `lr` needs both `from` and `to`"),
            ("model = \"mlp\"\nlr = { from = 0.1, to = 1, stride = 2 }", "spec.toml: `lr` has an unknown field `stride`"),
            ("model = \"mlp\"\nlr = [0.01, -1]", "trial lr=-1: invalid spec.toml: lr -1: must be a finite number > 0"),
            ("model = \"mlp\"\nseed = [0, 1]\nbatch_size = [100, 70000]", "trial batch_size=70000,seed=0: invalid spec.toml: batch_size 70000: must be between 1 and 55000"),
            ("model = \"mlp\"\nseed = -1", "invalid spec.toml: seed -1: must be >= 0"),
            ("model = \"mlp\"\npreset = \"ancient\"", "spec.toml: `preset` must be \"faithful\" or \"modern\", got \"ancient\""),
            ("model = \"mlp\"\nrandom = 0", "spec.toml: `random` must be an integer from 1 to 100000, got 0"),
            ("model = \"mlp\"\nseed = { from = 0, to = 999 }\nlr = { from = 0.001, to = 1, count = 1000 }", "spec.toml: the grid has more than 100000 trials"),
            ("model = \"mlp\"\nlr = [0.1", "spec.toml is not valid TOML"),
        ];
        for (text, want) in cases {
            let err = trials(text).map(|_| ()).unwrap_err().to_string();
            assert!(err.starts_with(want), "spec {text:?}\n  got:  {err}\n  want: {want}");
        }
    }

    #[test]
    fn shards_partition_the_trials_exactly() {
        for n in 1..=5 {
            let shards: Vec<Shard> = (1..=n).map(|i| Shard::parse(&format!("{i}/{n}")).unwrap()).collect();
            for k in 0..23 {
                assert_eq!(shards.iter().filter(|s| s.owns(k)).count(), 1, "trial {k} with {n} shards");
            }
        }
        for bad in ["0/3", "4/3", "1/0", "x", "1-3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slurm_array_variables_pick_the_shard() {
        let env = |vars: &[(&'static str, &str)]| {
            let vars: Vec<(&'static str, String)> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
            move |k: &str| vars.iter().find(|v| v.0 == k).map(|v| v.1.clone())
        };
        let id = "SLURM_ARRAY_TASK_ID";
        assert_eq!(Shard::from_slurm(env(&[]), None).unwrap(), None);
        assert_eq!(Shard::from_slurm(env(&[(id, "2"), ("SLURM_ARRAY_TASK_COUNT", "4")]), None).unwrap(), Some(Shard { index: 2, count: 4 }));
        assert_eq!(Shard::from_slurm(env(&[(id, "7"), ("SLURM_ARRAY_TASK_MIN", "5"), ("SLURM_ARRAY_TASK_MAX", "8")]), None).unwrap(), Some(Shard { index: 2, count: 4 }));
        assert!(Shard::from_slurm(env(&[(id, "9"), ("SLURM_ARRAY_TASK_COUNT", "4")]), None).is_err());
        // --array=0-6:2: ids 0, 2, 4, 6 are shards 0..3 of 4.
        let got: Vec<usize> = ["0", "2", "4", "6"].iter().map(|task| {
            let vars = env(&[(id, task), ("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_MAX", "6"), ("SLURM_ARRAY_TASK_STEP", "2"), ("SLURM_ARRAY_TASK_COUNT", "4")]);
            Shard::from_slurm(vars, None).unwrap().unwrap().index
        }).collect();
        assert_eq!(got, [0, 1, 2, 3]);
        // --array=1,3 redoing two tasks of a 4-task array: --shards 4 keeps the original shards.
        let listed = env(&[(id, "3"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "3"), ("SLURM_ARRAY_TASK_COUNT", "2")]);
        assert!(Shard::from_slurm(&listed, None).unwrap_err().to_string().contains("pass --shards N"));
        assert_eq!(Shard::from_slurm(&listed, Some(4)).unwrap(), Some(Shard { index: 3, count: 4 }));
        // Its first id too, which lies on the span: the count gives the list away.
        let first = env(&[(id, "1"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "3"), ("SLURM_ARRAY_TASK_COUNT", "2")]);
        assert!(Shard::from_slurm(&first, None).unwrap_err().to_string().contains("pass --shards N"));
        // Nonsense in the variables is named, not wrapped around.
        let below = env(&[(id, "1"), ("SLURM_ARRAY_TASK_MIN", "4"), ("SLURM_ARRAY_TASK_MAX", "3")]);
        assert!(Shard::from_slurm(&below, None).unwrap_err().to_string().contains("is below SLURM_ARRAY_TASK_MIN=4"));
        let huge = env(&[(id, "1"), ("SLURM_ARRAY_TASK_MAX", &u64::MAX.to_string())]);
        assert!(Shard::from_slurm(&huge, None).unwrap_err().to_string().contains("is not an array's last id"));
    }

}
