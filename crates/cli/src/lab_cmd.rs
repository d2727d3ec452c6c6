//! `atomkernel models`: every built model side by side (see `services::lab`): normal-path
//! throughput, its overhead against `none`, and RT wakeup latency under the same load.

use services::lab::{self, LabConfig, ModelResult};

#[derive(clap::Args)]
pub struct ModelsArgs {
    /// Preemption models as a comma list (none,voluntary,...) or `all` for every built model.
    #[arg(long, default_value = "all")]
    preempt: String,
    /// Length of each run in seconds (fractions allowed; above 0, at most 600).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Atoms per system call of the worker (each checksums one 4 KiB page), 1..=4096.
    #[arg(long, default_value_t = 64)]
    atoms: usize,
    /// Period of the RT probe in microseconds, 100..=1000000.
    #[arg(long, default_value_t = 1000)]
    interval_us: u64,
    /// Rounds over all models (medians of throughput, latency samples pooled), 1..=100.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Print one JSON object per model (one per line) instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &ModelsArgs) -> Result<(), String> {
    let cfg = LabConfig {
        models: lab::parse_models(&a.preempt)?,
        seconds: a.seconds,
        atoms: a.atoms,
        interval_us: a.interval_us,
        rounds: a.rounds,
    };
    cfg.validate()?;
    let names: Vec<&str> = cfg.models.iter().map(|m| m.name()).collect();
    eprintln!(
        "atomkernel models: {} x {} rounds x 2 runs of {} s (about {:.0} s): {}",
        cfg.models.len(),
        cfg.rounds,
        cfg.seconds,
        cfg.models.len() as f64 * cfg.rounds as f64 * 2.0 * cfg.seconds,
        names.join(", ")
    );
    let results = lab::run(&cfg)?;
    if a.json {
        for r in &results {
            println!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
        }
    } else {
        print!("{}", table(&cfg, &results));
    }
    Ok(())
}

fn table(cfg: &LabConfig, results: &[ModelResult]) -> String {
    let mut s = format!(
        "worker: system calls of {} atoms (1 page checksummed each); probe: SCHED_FIFO {} every {} us; \
         {} s per run, {} rounds, HZ={}\n",
        cfg.atoms,
        lab::PROBE_PRIO,
        cfg.interval_us,
        cfg.seconds,
        cfg.rounds,
        results.first().map_or(0, |r| r.hz)
    );
    s += &format!(
        "{:<10} {:>12} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10} {:>8}\n",
        "model",
        "pages/s",
        "overhead%",
        "loaded p/s",
        "lat_min_us",
        "lat_p50_us",
        "lat_p99_us",
        "lat_max_us",
        "samples"
    );
    let us = |ns: u64| ns as f64 / 1e3;
    for r in results {
        let overhead = r.overhead_pct.map_or_else(|| "-".to_string(), |o| format!("{o:.2}"));
        s += &format!(
            "{:<10} {:>12.0} {:>10} {:>12.0} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>8}\n",
            r.model,
            r.throughput_pages_s,
            overhead,
            r.loaded_throughput_pages_s,
            us(r.latency_ns.min),
            us(r.latency_ns.p50),
            us(r.latency_ns.p99),
            us(r.latency_ns.max),
            r.samples
        );
    }
    s
}
