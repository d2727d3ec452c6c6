//! `atomkernel compare` (also the default job, and `models`): every model (under each chosen
//! bottom-half option) and peer × the chosen workloads in one interleaved run
//! (`lab::compare`); a progress bar while it runs, the verdict and a table per workload
//! (`compare_table.rs`; JSON lines with `--json`) at the end, and an HTML report on request. Cells the comparison leaves out (the peers of the
//! `packet` workload) are named on stderr, in the table and in the report.

use crate::cpus_arg::CpusArg;
use crate::input::OutDir;
use crate::output::{out, outln};
use crate::report;
use crate::values::{self, List};
use indicatif::{ProgressBar, ProgressStyle};
use kernel::{BhMode, PatchLeaf, PatchSync, PreemptModel, PtableMode};
use lab::compare::{self, CompareConfig};
use lab::measure::{CpuPolicy, ProbeSet};
use lab::peers::Peer;
use services::workloads::Workload;
use std::io::IsTerminal;

#[derive(clap::Args)]
#[command(mut_arg("cpus", |a| a.help(crate::cpus_arg::COMPARE_HELP)))]
pub(crate) struct CompareArgs {
    /// Preemption models as a comma list (none,voluntary,...) or `all` for every model.
    #[arg(long, default_value = "all", value_parser = values::list::<PreemptModel>())]
    preempt: List<PreemptModel>,
    /// Bottom-half options as a comma list (classic, threaded) or `all`; every model runs under
    /// each. Default: all for the packet workload, the kernel's default (classic) for the others.
    #[arg(long, value_parser = values::list::<BhMode>())]
    bh: Option<List<BhMode>>,
    /// ksoftirqd's SCHED_FIFO priority under bh=threaded (the bh_prio= boot option), 1..=99
    /// (default 50).
    #[arg(long)]
    bh_prio: Option<u8>,
    #[arg(long, value_parser = values::one::<PtableMode>(), help = values::defaulted(
        "The patch models' point table: exact (from the machine code) or function; only with a patch model",
        CompareConfig::default().ptable.name()))]
    ptable: Option<PtableMode>,
    #[arg(long, value_parser = values::one::<PatchLeaf>(), help = values::defaulted(
        "Where the patch models serve an event whose interrupted function reaches no point: walk (up the stack, at the first caller's next point) or return (at that function's return: one unwind step, the RT task no later, but at a return rather than a point); only with a patch model",
        CompareConfig::default().patch_leaf.name()))]
    patch_leaf: Option<PatchLeaf>,
    #[arg(long, value_parser = values::one::<PatchSync>(), help = values::defaulted(
        "How the patch models' patches synchronise the other CPUs: none (one byte alone) or ipi (Linux's text_poke_bp: int3 first, a serializing round on every CPU, the final byte, another round); only with a patch model",
        CompareConfig::default().patch_sync.name()))]
    patch_sync: Option<PatchSync>,
    /// Time the patch handler's parts too (look-up, unwinding, arming, redirect: the rows'
    /// handler_parts_ns_per_event), at the laps' own cost in the handler's time; only with a
    /// patch model.
    #[arg(long)]
    handler_parts: bool,
    /// Peers as a comma list (host-fifo, tokio, go), `all` (every peer this build has; go only
    /// when Go was installed at build time) or `none`.
    #[arg(long, default_value = "all", value_parser = values::list_or::<Peer>("none"))]
    peers: List<Peer>,
    /// Workloads as a comma list (loader, copy, checksum, hog, packet) or `all`.
    #[arg(long, default_value = "all", value_parser = values::list::<Workload>())]
    workload: List<Workload>,
    /// Workload sizes as NAME=N,... (loader: KiB of module; copy, checksum: pages per system
    /// call; hog: atoms per system call; packet: packets per system call at most).
    #[arg(long, default_value = "")]
    size: String,
    #[arg(long, help = format!(
        "Length of each run in seconds (above 0, at most 600). Default: {} on one CPU, {SMP_SECONDS} on several (--quick: {})",
        CompareConfig::default().seconds, default_length(1, true).0
    ))]
    duration: Option<f64>,
    /// The same as --duration, under the name `packets` and `trace` give it.
    #[arg(long, conflicts_with = "duration")]
    seconds: Option<f64>,
    /// Rounds over all cells (throughput medians, latency samples pooled), 1..=100.
    #[arg(long)]
    rounds: Option<usize>,
    /// A short run for smoke tests: --duration 0.1 --rounds 1 (explicit options win).
    #[arg(long)]
    quick: bool,
    /// Probes (cyclictest's -t), 1..=16.
    #[arg(long, default_value_t = ProbeSet::default().threads)]
    threads: usize,
    /// SCHED_FIFO priority of the first probe (cyclictest's -p); probe i runs at prio - i.
    #[arg(long, default_value_t = ProbeSet::default().prio)]
    prio: u8,
    /// Period of the first probe in microseconds (cyclictest's -i), 100..=1000000.
    #[arg(long, default_value_t = ProbeSet::default().interval_us)]
    interval_us: u64,
    /// Added to the period of each further probe, in microseconds (cyclictest's -d).
    #[arg(long, default_value_t = ProbeSet::default().distance_us)]
    distance_us: u64,
    /// Host nice value (-20..=19) for the threads that run workloads: each kernel instance's
    /// CPU thread, the host peer's hog, the tokio runtime's thread, the Go peer's process. `keep`
    /// leaves them alone.
    #[arg(long, default_value_t = cpu_nice_default(), allow_hyphen_values = true)]
    cpu_nice: String,
    /// Print one JSON object per model (or peer) and workload, one per line.
    #[arg(long)]
    json: bool,
    /// After the verdict and the compact tables, the full table: every figure of every row
    /// (min, p99.9, max, the undisturbed samples, per CPU, cross-CPU, scaling, collateral hits).
    #[arg(long)]
    wide: bool,
    /// Write a self-contained HTML report (table and SVG charts) to DIR/index.html and the rows
    /// as JSON to DIR/results.json; DIR is removed again if the run fails or is interrupted.
    #[arg(long, value_name = "DIR")]
    report: Option<std::path::PathBuf>,
    /// `--cpus` (its help is `cpus_arg::COMPARE_HELP`).
    #[command(flatten)]
    cpus: CpusArg,
}

/// The default length of a run and the rounds on `cpus` CPUs (`--quick`: 0.1 s, 1 round). On
/// several CPUs each cell has a third run (the throughput on one CPU), so the runs are shorter
/// (0.12 s instead of 0.2 s, rounds kept at 5), to keep the default comparison's length.
pub(crate) fn default_length(cpus: usize, quick: bool) -> (f64, usize) {
    let d = CompareConfig::default();
    match (quick, cpus > 1) {
        (true, _) => (0.1, 1),
        (false, true) => (SMP_SECONDS, d.rounds),
        (false, false) => (d.seconds, d.rounds),
    }
}

/// The default run length on several CPUs (see [`default_length`]).
pub(crate) const SMP_SECONDS: f64 = 0.12;

impl CompareArgs {
    /// The embedded defaults (`atomkernel` with no arguments): an empty argument list parsed
    /// by clap, so the defaults are the ones the options declare.
    pub(crate) fn defaults() -> CompareArgs {
        use clap::{Args, FromArgMatches};
        let cmd = CompareArgs::augment_args(clap::Command::new("compare"));
        let matches = cmd.try_get_matches_from(["compare"]).expect("compare takes no argument it needs");
        CompareArgs::from_arg_matches(&matches).expect("the defaults parse")
    }

    fn config(&self) -> Result<CompareConfig, String> {
        let cpus = self.cpus.or_host().0;
        let (seconds, rounds) = default_length(cpus, self.quick);
        let cfg = CompareConfig {
            models: self.preempt.0.clone(),
            bh: self.bh.clone().map(|b| b.0),
            bh_prio: self.bh_prio.unwrap_or(kernel::config::DEFAULT_BH_PRIO),
            ptable: self.ptable.unwrap_or(CompareConfig::default().ptable),
            patch_leaf: self.patch_leaf.unwrap_or(CompareConfig::default().patch_leaf),
            patch_sync: self.patch_sync.unwrap_or(CompareConfig::default().patch_sync),
            patch_parts: self.handler_parts,
            peers: self.peers.0.clone(),
            workloads: values::sized(&self.workload.0, &self.size)?,
            seconds: self.duration.or(self.seconds).unwrap_or(seconds),
            rounds: self.rounds.unwrap_or(rounds),
            probes: ProbeSet {
                threads: self.threads,
                prio: self.prio,
                interval_us: self.interval_us,
                distance_us: self.distance_us,
            },
            cpu: cpu_policy(&self.cpu_nice)?,
            cpus,
        };
        // `seconds=` is the option the user gave it by.
        let length = if self.seconds.is_some() { "--seconds" } else { "--duration" };
        let fields: Vec<(&str, &str)> =
            FLAGS.iter().map(|&(f, o)| if f == "seconds" { (f, length) } else { (f, o) }).collect();
        cfg.validate().map_err(|e| values::flags(e, &fields))?;
        let used: Vec<kernel::BhMode> = cfg.workloads.iter().flat_map(|&w| cfg.bh_for(w)).collect();
        crate::input::bh_prio_applies(self.bh_prio, &used)?;
        let given = [
            ("--ptable", self.ptable.map(|p| p.name())),
            ("--patch-leaf", self.patch_leaf.map(|p| p.name())),
            ("--patch-sync", self.patch_sync.map(|p| p.name())),
            ("--handler-parts", self.handler_parts.then_some("")),
        ];
        crate::input::patch_options_apply(&given, &cfg.models)?;
        if let Some(dir) = &self.report {
            OutDir::check("--report", dir, &[report::INDEX, report::RESULTS])?;
        }
        Ok(cfg)
    }
}

/// The fields of [`CompareConfig`] (its probe set's, and the kernel's `Config` it boots) and
/// the option that sets each.
const FLAGS: [(&str, &str); 12] = [
    ("cpus", "--cpus"),
    ("bh_prio", "--bh-prio"),
    ("rounds", "--rounds"),
    ("seconds", "--duration"),
    ("threads", "--threads"),
    ("prio", "--prio"),
    ("interval_us", "--interval-us"),
    ("distance_us", "--distance-us"),
    ("models", "--preempt"),
    ("peers", "--peers"),
    ("workloads", "--workload"),
    ("bh", "--bh"),
];

/// What `compare` runs, checked before anything starts (the `--report` directory too).
pub(crate) fn plan(a: &CompareArgs) -> Result<CompareConfig, String> {
    a.config()
}

/// The lab's default [`CpuPolicy`] (its `CompareConfig`'s) as `--cpu-nice` writes it.
pub(crate) fn cpu_nice_default() -> String {
    match CompareConfig::default().cpu {
        CpuPolicy::Shared => "keep".into(),
        CpuPolicy::Nice(n) => n.to_string(),
    }
}

/// `--cpu-nice N|keep`.
pub(crate) fn cpu_policy(arg: &str) -> Result<CpuPolicy, String> {
    if arg.trim() == "keep" {
        return Ok(CpuPolicy::Shared);
    }
    match arg.trim().parse::<i8>() {
        Ok(n) if (-20..=19).contains(&n) => Ok(CpuPolicy::Nice(n)),
        _ => Err(format!("--cpu-nice {arg}: use a nice value -20..=19, or keep")),
    }
}

pub(crate) fn run(a: &CompareArgs) -> Result<(), String> {
    let cfg = plan(a)?;
    let out =
        a.report.as_deref().map(|d| OutDir::prepare("--report", d, &[report::INDEX, report::RESULTS])).transpose()?;
    let subjects = cfg.subjects();
    let with_bh =
        subjects.iter().filter_map(|s| s.bh()).any(|b| subjects.iter().any(|s| s.bh().is_some_and(|x| x != b)));
    let names: Vec<String> = subjects.iter().map(|s| s.label(with_bh)).collect();
    let works: Vec<&str> = cfg.workloads.iter().map(|w| w.name()).collect();
    let cells: usize = cfg.workloads.iter().map(|&w| cfg.subjects_for(w).len()).sum();
    eprintln!(
        "atomkernel compare: cpus={} ({}): {cells} cells ({} subjects, {} workloads) x {} rounds: {} runs of {} s (about {:.0} s): {}; {}",
        cfg.cpus,
        a.cpus.or_host().1,
        names.len(),
        works.len(),
        cfg.rounds,
        cfg.steps(),
        cfg.seconds,
        cfg.estimated_seconds() * 1.15,
        names.join(", "),
        works.join(", ")
    );
    for note in cfg.skipped() {
        eprintln!("atomkernel compare: note: {note}");
    }
    let bar = progress_bar(cfg.steps());
    let mut started = 0;
    let rows = compare::run(&cfg, &mut |what| {
        bar.set_position(started);
        bar.set_message(what.to_string());
        started += 1;
    });
    bar.finish_and_clear();
    let rows = rows?;
    // The report first: a reader of stdout that goes away does not take it with it.
    if let Some(out) = out {
        let path = report::write(out.path(), &cfg, &rows)?;
        eprintln!("atomkernel compare: report written to {}", path.display());
        out.keep();
    }
    if a.json {
        for r in &rows {
            outln!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
        }
    } else {
        out!("{}", crate::compare_table::table(&cfg, &rows, a.wide));
    }
    Ok(())
}

/// A bar on stderr when it is a terminal; hidden otherwise (pipes, CI, tests).
fn progress_bar(steps: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    let style = ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs, eta {eta}: {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}
