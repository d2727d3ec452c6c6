//! `atomkernel fuzz`: a campaign of random kernel programs (see `lab::fuzz`).

use crate::output::outln;
use lab::fuzz::{self, CampaignConfig};
use std::time::Instant;

#[derive(clap::Args)]
pub(crate) struct FuzzArgs {
    /// Programs to run (1..=10000000).
    #[arg(long, default_value_t = 1000)]
    cases: u32,
    /// The generator's seed (default: from the clock; printed, so a run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// CPUs of every program, 1..=4 (default: each program draws 1 to 4).
    #[arg(long)]
    cpus: Option<usize>,
    /// Shrinking steps at most after a failure (0..=100000).
    #[arg(long, default_value_t = 512)]
    shrink: u32,
}

/// The fields of [`CampaignConfig`] and the option that sets each.
const FLAGS: [(&str, &str); 3] = [("cases", "--cases"), ("cpus", "--cpus"), ("max_shrink_iters", "--shrink")];

/// The campaign to run, checked.
pub(crate) fn plan(a: &FuzzArgs) -> Result<CampaignConfig, String> {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let cfg = CampaignConfig { cases: a.cases, seed, cpus: a.cpus, max_shrink_iters: a.shrink };
    cfg.validate().map_err(|e| crate::values::flags(e, &FLAGS))?;
    Ok(cfg)
}

pub(crate) fn run(a: &FuzzArgs) -> Result<(), String> {
    let cfg = plan(a)?;
    let cpus = cfg.cpus.map_or("1..4".to_string(), |c| c.to_string());
    eprintln!("fuzz: {} programs, seed {}, cpus {cpus}", cfg.cases, cfg.seed);
    let t0 = Instant::now();
    let progress = |n: u64| {
        if n.is_multiple_of(100) {
            let per_min = n as f64 * 60.0 / t0.elapsed().as_secs_f64().max(1e-9);
            eprintln!("fuzz: {n} programs run, {per_min:.0} per minute");
        }
    };
    let r = fuzz::campaign(&cfg, &progress)?;
    let secs = t0.elapsed().as_secs_f64();
    match r.failure {
        None => {
            outln!(
                "fuzz: {} programs (seed {}, cpus {cpus}) passed every invariant in {secs:.1} s ({:.0} per minute)",
                r.runs,
                cfg.seed,
                r.runs as f64 * 60.0 / secs.max(1e-9)
            );
            Ok(())
        }
        Some(f) => {
            outln!("fuzz: program {} of seed {} failed; shrunk to:\n{}", f.case, cfg.seed, f.program);
            outln!("violations:\n{}", f.reason);
            outln!(
                "as JSON (for a regression test):\n{}",
                serde_json::to_string(&f.program).map_err(|e| e.to_string())?
            );
            if f.first.0 != f.program {
                outln!("the first failing program, before shrinking:\n{}violations:\n{}", f.first.0, f.first.1);
                outln!("as JSON:\n{}", serde_json::to_string(&f.first.0).map_err(|e| e.to_string())?);
            }
            Err(format!(
                "a kernel program failed (program {} of seed {}; {} runs with shrinking); rerun with --seed {} --cases {}",
                f.case, cfg.seed, r.runs, cfg.seed, f.case
            ))
        }
    }
}
