//! The comparison: every model and peer × every chosen workload, in one interleaved run.
//!
//! **Mechanism.** A *cell* is one subject (a preemption model, or a peer) with one workload.
//! Each cell gets two runs per round: a **throughput** run (the workload alone) and a
//! **latency** run (the workload plus the probes). Rounds interleave everything: round 1 runs
//! every workload's cells in subject order, then round 2 does the same, so slow drift of the
//! machine hits every subject alike. Per cell, throughput is the median over rounds; latency
//! pools every sample of every round; overhead is `throughput(none) / throughput - 1` in
//! percent, for the same workload.
//!
//! **Invariant.** The models are those of `PreemptModel::BUILT` unless narrowed (so a newly
//! built model appears without a change here); every row comes from runs that completed
//! without a `BUG:`, or `run` fails.

use super::peers::Peer;
use super::probe::{self, CpuPolicy, ProbeSet, RunOut, Stop};
use super::stats::{Bin, Latency, LatencyHist};
use super::workloads::Workload;
use kernel::{Config, PreemptModel};
use serde::Serialize;

/// Who is measured: a preemption model of atomkernel, or a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Model(PreemptModel),
    Peer(Peer),
}

impl Subject {
    /// `none`, `voluntary`, ... or `peer:host-fifo`, `peer:tokio`.
    pub fn name(self) -> String {
        match self {
            Subject::Model(m) => m.name().into(),
            Subject::Peer(p) => format!("peer:{}", p.name()),
        }
    }

    fn run(
        self,
        w: Workload,
        probes: &[probe::ProbeSpec],
        ns: u64,
        cpu: CpuPolicy,
    ) -> Result<(RunOut, String), String> {
        match self {
            Subject::Model(m) => {
                let out = probe::run_kernel(m, Some(w), probes, Stop::After(ns), cpu)?;
                let policy = out.policy.clone().unwrap_or_default();
                Ok((out, policy))
            }
            Subject::Peer(p) => p.run(Some(w), probes, ns, cpu),
        }
    }
}

/// What to compare, and for how long.
#[derive(Clone, Debug)]
pub struct CompareConfig {
    pub models: Vec<PreemptModel>,
    pub peers: Vec<Peer>,
    pub workloads: Vec<Workload>,
    /// Length of each run in seconds (0 < s <= 600).
    pub seconds: f64,
    /// Rounds over all cells, 1..=100.
    pub rounds: usize,
    pub probes: ProbeSet,
    /// How each kernel instance's CPU thread is scheduled on the host.
    pub cpu: CpuPolicy,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            models: PreemptModel::BUILT.to_vec(),
            peers: Peer::ALL.to_vec(),
            workloads: Workload::all(),
            seconds: 0.2,
            rounds: 5,
            probes: ProbeSet::default(),
            cpu: CpuPolicy::Nice(-20),
        }
    }
}

impl CompareConfig {
    /// Rejects settings the comparison cannot run, naming the option and the valid values.
    pub fn validate(&self) -> Result<(), String> {
        probe::validate_seconds(self.seconds)?;
        if !(1..=100).contains(&self.rounds) {
            return Err(format!("--rounds {}: use 1..=100 rounds", self.rounds));
        }
        self.probes.validate()?;
        if self.seconds * 1e6 < (self.probes.interval_us * 2) as f64 {
            return Err(format!(
                "--duration {} is shorter than two probe periods (--interval-us {}): lengthen the run or shorten the period",
                self.seconds, self.probes.interval_us
            ));
        }
        if self.models.is_empty() && self.peers.is_empty() {
            return Err("--preempt/--peers: name at least one model or peer".into());
        }
        if let Some(m) = self.models.iter().find(|m| !m.is_built()) {
            return Err(format!("--preempt {m}: not built yet; this build runs: {}", built_names()));
        }
        if self.workloads.is_empty() {
            return Err("--workload: name at least one workload, or all".into());
        }
        Ok(())
    }

    /// Models first, then peers.
    pub fn subjects(&self) -> Vec<Subject> {
        self.models.iter().map(|&m| Subject::Model(m)).chain(self.peers.iter().map(|&p| Subject::Peer(p))).collect()
    }

    /// Runs in the whole comparison (for a progress bar).
    pub fn steps(&self) -> u64 {
        (self.subjects().len() * self.workloads.len() * self.rounds * 2) as u64
    }

    /// Seconds the runs take (without boot and teardown).
    pub fn estimated_seconds(&self) -> f64 {
        self.steps() as f64 * self.seconds
    }
}

fn built_names() -> String {
    PreemptModel::BUILT.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
}

/// Parses `--preempt`: a comma list of models, `all` for every built model, or `none` ...
/// which is a model; use an empty list for no model.
pub fn parse_models(arg: &str) -> Result<Vec<PreemptModel>, String> {
    if arg.trim() == "all" {
        return Ok(PreemptModel::BUILT.to_vec());
    }
    let mut models = Vec::new();
    for name in arg.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let m: PreemptModel = name.parse().map_err(|e| format!("--preempt: {e}, or all"))?;
        if !m.is_built() {
            return Err(format!("--preempt {m}: not built yet; this build runs: {}", built_names()));
        }
        if !models.contains(&m) {
            models.push(m);
        }
    }
    Ok(models)
}

/// One probe's figures in a row.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeRow {
    pub prio: u8,
    pub interval_us: u64,
    pub latency_ns: Latency,
}

/// One subject × workload: the documented JSON row (docs/LAB.md).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The model, or `peer:NAME`.
    pub model: String,
    pub workload: String,
    /// What `throughput_ops_s` counts (pages, modules, atoms).
    pub unit: String,
    /// The workload's size (see `--size`).
    pub size: usize,
    /// Every probe's samples pooled.
    pub latency_ns: Latency,
    pub samples: u64,
    /// As `latency_ns`, over the samples during whose period the host did not preempt the
    /// thread the subject runs on (the kernel's CPU thread, the runtime's thread, the probe).
    pub latency_undisturbed_ns: Latency,
    /// Samples whose period the host disturbed (`samples - latency_undisturbed_ns.count`).
    pub host_disturbed: u64,
    /// Median over rounds of units per second with no probe running.
    pub throughput_ops_s: f64,
    /// `(throughput of none / throughput - 1) * 100` for the same workload; null without `none`.
    pub overhead_pct: Option<f64>,
    /// Median over rounds of units per second while the probes ran.
    pub loaded_throughput_ops_s: f64,
    /// Each round's throughput, in round order.
    pub rounds_throughput_ops_s: Vec<f64>,
    /// Per probe (cyclictest's threads).
    pub probes: Vec<ProbeRow>,
    /// How the host scheduled the subject: a model's kernel CPU thread, a peer's probes.
    pub policy: String,
    /// Half-octave bins of the pooled lateness; their counts add up to `samples`.
    pub histogram: Vec<Bin>,
    pub seconds: f64,
    pub rounds: usize,
    pub hz: u32,
}

/// Accumulates one cell over the rounds.
#[derive(Default)]
struct Cell {
    quiet: Vec<f64>,
    loaded: Vec<f64>,
    hists: Vec<LatencyHist>,
    policy: Option<String>,
}

/// Runs the comparison; `progress` hears about each run as it starts (`"none/loader latency"`).
pub fn run(cfg: &CompareConfig, progress: &mut dyn FnMut(&str)) -> Result<Vec<Row>, String> {
    cfg.validate()?;
    let (subjects, specs, ns) = (cfg.subjects(), cfg.probes.specs(), (cfg.seconds * 1e9) as u64);
    let mut cells: Vec<Vec<Cell>> =
        cfg.workloads.iter().map(|_| subjects.iter().map(|_| Cell::default()).collect()).collect();
    for _ in 0..cfg.rounds {
        for (wi, &w) in cfg.workloads.iter().enumerate() {
            for (si, &s) in subjects.iter().enumerate() {
                let cell = &mut cells[wi][si];
                progress(&format!("{}/{} throughput", s.name(), w.name()));
                let (quiet, _) = s.run(w, &[], ns, cfg.cpu)?;
                cell.quiet.push(quiet.units_per_s());
                progress(&format!("{}/{} latency", s.name(), w.name()));
                let (loaded, policy) = s.run(w, &specs, ns, cfg.cpu)?;
                cell.loaded.push(loaded.units_per_s());
                if cell.hists.is_empty() {
                    cell.hists = loaded.hists;
                } else {
                    cell.hists.iter_mut().zip(&loaded.hists).for_each(|(a, b)| a.merge(b));
                }
                cell.policy = Some(policy);
            }
        }
    }
    Ok(rows(cfg, &subjects, &cells))
}

fn rows(cfg: &CompareConfig, subjects: &[Subject], cells: &[Vec<Cell>]) -> Vec<Row> {
    let none = subjects.iter().position(|&s| s == Subject::Model(PreemptModel::None));
    let specs = cfg.probes.specs();
    let mut rows = Vec::new();
    for (wi, w) in cfg.workloads.iter().enumerate() {
        let base = none.map(|i| median(&cells[wi][i].quiet));
        for (si, s) in subjects.iter().enumerate() {
            let c = &cells[wi][si];
            let tp = median(&c.quiet);
            let mut pooled = LatencyHist::new();
            c.hists.iter().for_each(|h| pooled.merge(h));
            let latency = pooled.summary();
            rows.push(Row {
                model: s.name(),
                workload: w.name().into(),
                unit: w.info().unit.into(),
                size: w.size,
                latency_ns: latency,
                samples: latency.count,
                latency_undisturbed_ns: pooled.undisturbed(),
                host_disturbed: pooled.disturbed(),
                throughput_ops_s: tp,
                overhead_pct: base.map(|b| if Some(si) == none { 0.0 } else { (b / tp - 1.0) * 100.0 }),
                loaded_throughput_ops_s: median(&c.loaded),
                rounds_throughput_ops_s: c.quiet.clone(),
                probes: specs
                    .iter()
                    .zip(&c.hists)
                    .map(|(sp, h)| ProbeRow {
                        prio: sp.prio,
                        interval_us: sp.interval_ns / 1000,
                        latency_ns: h.summary(),
                    })
                    .collect(),
                policy: c.policy.clone().unwrap_or_default(),
                histogram: pooled.bins(),
                seconds: cfg.seconds,
                rounds: cfg.rounds,
                hz: Config::default().hz,
            });
        }
    }
    rows
}

/// The median of `v` (mean of the middle two for an even count; 0 for none).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}
