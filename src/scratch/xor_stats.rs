//! How many XOR runs converge and where the others stick, over many seeds. The final losses are
//! kept for exact quantiles, so the number of runs is bounded up front (8 bytes a run).
use super::xor::{XorConfig, XorPreset, CONVERGED_BELOW};
use serde::Serialize;

/// The most runs whose final losses are kept (80 MB).
pub const MAX_RUNS: u64 = 10_000_000;

#[derive(Serialize, Debug, Clone)]
pub struct ManySummary {
    pub preset: XorPreset,
    pub first_seed: u64,
    pub runs: usize,
    pub converged: usize,
    pub convergence_rate: f64,
    /// Final losses near 1/6 (one pattern stuck) and near 1/4.
    pub stuck_near_0_167: usize,
    pub stuck_near_0_25: usize,
    pub other: usize,
    /// min, 25%, median, 75%, max of the final losses: each the sorted losses' nearest rank
    /// (`round((n - 1) p)`), a loss some seed ended with, not interpolated between two.
    pub final_loss_quantiles: [f64; 5],
    pub wall_seconds: f64,
}

/// The seeds `first..first + runs`, or why they cannot be.
pub fn seed_range(first: u64, runs: u64) -> Result<std::ops::RangeInclusive<u64>, String> {
    if runs == 0 || runs > MAX_RUNS {
        return Err(format!("invalid --runs {runs}: must be between 1 and {MAX_RUNS}"));
    }
    // Inclusive: the largest seed may be the last.
    match first.checked_add(runs - 1) {
        Some(last) => Ok(first..=last),
        None => Err(format!("invalid --seed {first} with --runs {runs}: the last seed would pass {}", u64::MAX)),
    }
}

/// Sums up the runs' final losses (seeds from `first_seed` on).
pub fn summarize(cfg: &XorConfig, first_seed: u64, mut finals: Vec<f64>, wall_seconds: f64) -> ManySummary {
    let runs = finals.len();
    let converged = finals.iter().filter(|&&l| l < CONVERGED_BELOW).count();
    let near = |target: f64| finals.iter().filter(|&&l| (l - target).abs() < 0.02).count();
    let (s167, s25) = (near(1.0 / 6.0), near(0.25));
    finals.sort_by(f64::total_cmp);
    let q = |p: f64| finals.get(((finals.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(f64::NAN);
    ManySummary {
        preset: cfg.preset,
        first_seed,
        runs,
        converged,
        convergence_rate: converged as f64 / runs.max(1) as f64,
        stuck_near_0_167: s167,
        stuck_near_0_25: s25,
        other: runs - converged - s167 - s25,
        final_loss_quantiles: [q(0.0), q(0.25), q(0.5), q(0.75), q(1.0)],
        wall_seconds,
    }
}

pub fn describe_many(s: &ManySummary) -> String {
    let [min, q1, med, q3, max] = s.final_loss_quantiles;
    format!(
        "xor ({}) seeds {} to {}: {}/{} converged ({:.1}%), near 0.167: {}, near 0.25: {}, other: {}; final loss min {min:.2e} q1 {q1:.2e} median {med:.2e} q3 {q3:.2e} max {max:.2e}; {:.3} s",
        format!("{:?}", s.preset).to_lowercase(), s.first_seed, s.first_seed + (s.runs as u64).saturating_sub(1), s.converged, s.runs, 100.0 * s.convergence_rate,
        s.stuck_near_0_167, s.stuck_near_0_25, s.other, s.wall_seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_never_wrap() {
        assert_eq!(seed_range(5, 3).unwrap(), 5..=7);
        assert!(seed_range(u64::MAX - 1, 3).unwrap_err().contains("would pass"));
        assert_eq!(seed_range(u64::MAX - 1, 2).unwrap(), u64::MAX - 1..=u64::MAX);
        assert_eq!(seed_range(u64::MAX - 99, 100).unwrap().count(), 100);
        assert!(seed_range(0, MAX_RUNS + 1).unwrap_err().contains("invalid --runs"));
        assert!(seed_range(0, 0).is_err());
    }
}
