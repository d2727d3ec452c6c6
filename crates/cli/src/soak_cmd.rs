//! `atomkernel soak`: the lab's workloads for minutes with model switches, interrupt storms
//! and probes, memory and counters printed each minute (see `lab::soak`).

use crate::cpus_arg::CpusArg;
use crate::output::outln;
use lab::soak::{self, SoakConfig};

#[derive(clap::Args)]
pub(crate) struct SoakArgs {
    /// How long to soak, in minutes (1..=1440).
    #[arg(long, default_value_t = 5)]
    minutes: u64,
    /// How long to soak, in seconds (at least 4: two instances), sampling every 10 s instead
    /// of every minute (for tests).
    #[arg(long, hide = true, conflicts_with = "minutes")]
    seconds: Option<u64>,
    /// Seed of the random model choices (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    cpus: CpusArg,
}

/// The fields of [`SoakConfig`] (and of the kernel's `Config` it boots) and the option that
/// sets each; `secs` is `--seconds`' (for `--minutes`, see [`plan`]).
const FLAGS: [(&str, &str); 2] = [("cpus", "--cpus"), ("secs", "--seconds")];

/// The soak to run, checked by [`SoakConfig::validate`]; its error for a length set by
/// `--minutes` is put in minutes.
pub(crate) fn plan(a: &SoakArgs) -> Result<SoakConfig, String> {
    // A sample every minute (every 10 s with --seconds), or twice in the soak if it is shorter:
    // the leak check compares the first sample with the last.
    let (secs, every_s) = match a.seconds {
        Some(s) => (s, 10.min(s / 2).max(1)),
        None => (a.minutes.saturating_mul(60), 60.min(a.minutes.saturating_mul(30)).max(1)),
    };
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let cfg = SoakConfig { secs, every_s, cpus: a.cpus.get(), seed };
    cfg.validate().map_err(|e| match a.seconds {
        None if e.starts_with("secs=") => format!("--minutes {}: use 1..={} minutes", a.minutes, soak::MAX_SECS / 60),
        _ => crate::values::flags(e, &FLAGS),
    })?;
    Ok(cfg)
}

pub(crate) fn run(a: &SoakArgs) -> Result<(), String> {
    let cfg = plan(a)?;
    outln!("soak: {} s on {} CPU(s), seed {}, a sample every {} s", cfg.secs, cfg.cpus, cfg.seed, cfg.every_s);
    outln!("  time  rss_kib  instances      units   switches       irqs  model_sw  storm_irqs  probe_n  probe_max_us  bugs");
    let samples = soak::run(&cfg, &mut |s| {
        outln!(
            "{:>5}s {:>8} {:>10} {:>10} {:>10} {:>10} {:>9} {:>11} {:>8} {:>13} {:>5}",
            s.at_s,
            s.rss_kib,
            s.instances,
            s.units,
            s.switches,
            s.irqs,
            s.model_switches,
            s.storm_irqs,
            s.probe_samples,
            s.probe_max_us,
            s.bugs
        );
    })?;
    // `soak::run` judged memory from two samples at least (or failed, saying so).
    if let (Some(f), Some(l)) = (samples.first(), samples.last()) {
        outln!(
            "soak: passed; RSS {} KiB at {} s, {} KiB at {} s ({} samples); no BUG",
            f.rss_kib,
            f.at_s,
            l.rss_kib,
            l.at_s,
            samples.len()
        );
    }
    Ok(())
}
