//! The comparison: every model and peer × every chosen workload, in one interleaved run.
//!
//! **Mechanism.** A *cell* is one subject (a preemption model under one bottom-half option
//! (`bh=`), or a peer) with one workload. A workload that runs through bottom halves (`packet`)
//! has no peer cells (a host thread, a tokio or Go runtime has no softirq; [`CompareConfig::skipped`]
//! says so) and, unless `--bh` narrows it, runs under every `bh=` option; the others run under the
//! options `--bh` names, by default the kernel's own (`classic`).
//! Each cell gets two runs per round: a **throughput** run (the workload alone) and a
//! **latency** run (the workload plus the probes). Rounds interleave everything: round 1 runs
//! every workload's cells in subject order, then round 2 does the same, so slow drift of the
//! machine hits every subject alike. Per cell, throughput is the median over rounds; latency
//! pools every sample of every round; overhead is `throughput(none) / throughput - 1` in
//! percent, for the same workload and `bh=` option (peers: against `none` under the first option).
//!
//! **Invariant.** The models are those of `PreemptModel::ALL` unless narrowed (so a new model
//! appears without a change here); every row comes from runs that completed
//! without a `BUG:`, or `run` fails.

use super::peers::Peer;
use super::probe::{self, CpuPolicy, CrossOut, Placement, ProbeSet, RunOut, Stop};
pub use super::row::{CrossRow, PlaceRow, ProbeRow, Row};
use super::stats::LatencyHist;
use super::workloads::Workload;
use kernel::{BhMode, Config, PreemptModel};

/// Who is measured: a preemption model of atomkernel under a bottom-half option, or a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Model(PreemptModel, BhMode),
    Peer(Peer),
}

impl Subject {
    /// `none`, `voluntary`, ... or `peer:host-fifo`, `peer:tokio`, `peer:go` (the `model` of a row).
    pub fn name(self) -> String {
        match self {
            Subject::Model(m, _) => m.name().into(),
            Subject::Peer(p) => format!("peer:{}", p.name()),
        }
    }

    /// The bottom-half option of a model; `None` for a peer.
    pub fn bh(self) -> Option<BhMode> {
        match self {
            Subject::Model(_, bh) => Some(bh),
            Subject::Peer(_) => None,
        }
    }

    /// The name, with the `bh=` option for a model when `with_bh` (`full/threaded`).
    pub fn label(self, with_bh: bool) -> String {
        match self {
            Subject::Model(m, bh) if with_bh => format!("{m}/{bh}"),
            _ => self.name(),
        }
    }

    fn run(
        self,
        w: Workload,
        probes: &[probe::ProbeSpec],
        ns: u64,
        cfg: &CompareConfig,
        cpus: usize,
    ) -> Result<(RunOut, String), String> {
        match self {
            Subject::Model(m, bh) => {
                let (bh_prio, ptable, patch_sync) = (cfg.bh_prio, cfg.ptable, cfg.patch_sync);
                let boot = Config { preempt: m, bh, bh_prio, ptable, patch_sync, cpus, ..Config::default() };
                let out = probe::run_instance(boot, Some(w), probes, Stop::After(ns), cfg.cpu)?;
                let policy = out.policy.clone().unwrap_or_default();
                Ok((out, policy))
            }
            Subject::Peer(_) if w.info().bottom_half => {
                Err(format!("{}: cannot run the {} workload (it needs atomkernel's softirqs)", self.name(), w.name()))
            }
            Subject::Peer(p) => p.run(Some(w), probes, ns, cfg.cpu, cpus),
        }
    }
}

/// What to compare, and for how long.
#[derive(Clone, Debug)]
pub struct CompareConfig {
    pub models: Vec<PreemptModel>,
    /// Bottom-half options (`--bh`); `None`: every option for a workload that runs through
    /// bottom halves (`packet`), the kernel's default (`classic`) for the others.
    pub bh: Option<Vec<BhMode>>,
    /// `ksoftirqd`'s SCHED_FIFO priority under `bh=threaded` (`--bh-prio`, 1..=99).
    pub bh_prio: u8,
    pub peers: Vec<Peer>,
    pub workloads: Vec<Workload>,
    /// Length of each run in seconds (0 < s <= 600).
    pub seconds: f64,
    /// Rounds over all cells, 1..=100.
    pub rounds: usize,
    pub probes: ProbeSet,
    /// How each kernel instance's CPU thread is scheduled on the host.
    pub cpu: CpuPolicy,
    /// The patch models' point table (`--ptable`, the `ptable=` boot option).
    pub ptable: kernel::PtableMode,
    /// How the patch models' patches synchronise the other CPUs (`--patch-sync`, `patch_sync=`).
    pub patch_sync: kernel::PatchSync,
    /// CPUs of every atomkernel instance (`cpus=`), and of the peers: one worker per CPU, each
    /// probe on every CPU; on more than one, also a throughput run on one CPU per cell and
    /// round (for the scaling figure) and the cross-CPU probe.
    pub cpus: usize,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            models: PreemptModel::ALL.to_vec(),
            bh: None,
            bh_prio: kernel::config::DEFAULT_BH_PRIO,
            peers: Peer::ALL.to_vec(),
            workloads: Workload::all(),
            seconds: 0.2,
            rounds: 5,
            probes: ProbeSet::default(),
            cpu: CpuPolicy::Nice(-20),
            ptable: kernel::PtableMode::Exact,
            patch_sync: kernel::PatchSync::None,
            cpus: 1,
        }
    }
}

impl CompareConfig {
    /// Rejects settings the comparison cannot run, naming the option and the valid values.
    pub fn validate(&self) -> Result<(), String> {
        probe::validate_seconds(self.seconds)?;
        super::validate_rounds(self.rounds)?;
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
        if self.workloads.is_empty() {
            return Err("--workload: name at least one workload, or all".into());
        }
        if !(1..=kernel::config::MAX_CPUS).contains(&self.cpus) {
            return Err(format!("--cpus {}: use 1..={} CPUs", self.cpus, kernel::config::MAX_CPUS));
        }
        if self.bh.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!("--bh: name at least one option ({}), or all", bh_names()));
        }
        super::validate_bh_prio(self.bh_prio)?;
        if let (true, Some(w)) = (self.models.is_empty(), self.workloads.iter().find(|w| w.info().bottom_half)) {
            return Err(format!(
                "--preempt names no model, but the {} workload (in --workload) runs only under atomkernel's models (it needs bottom halves; the peers have none): name a model with --preempt, or leave {} out of --workload",
                w.name(),
                w.name()
            ));
        }
        Ok(())
    }

    /// The bottom-half options `w` runs under.
    pub fn bh_for(&self, w: Workload) -> Vec<BhMode> {
        match &self.bh {
            Some(list) => list.clone(),
            None if w.info().bottom_half => BhMode::ALL.to_vec(),
            None => vec![BhMode::Classic],
        }
    }

    /// Who runs `w`: each model under each of its `bh=` options, then the peers (none for a
    /// workload that needs bottom halves).
    pub fn subjects_for(&self, w: Workload) -> Vec<Subject> {
        let bh = self.bh_for(w);
        let models = self.models.iter().flat_map(|&m| bh.iter().map(move |&b| Subject::Model(m, b)));
        let peers = self.peers.iter().filter(|_| !w.info().bottom_half).map(|&p| Subject::Peer(p));
        models.chain(peers).collect()
    }

    /// Every subject of the comparison, once: models (each under its options), then peers.
    pub fn subjects(&self) -> Vec<Subject> {
        let mut all: Vec<Subject> = Vec::new();
        for s in self.workloads.iter().flat_map(|&w| self.subjects_for(w)) {
            if !all.contains(&s) {
                all.push(s);
            }
        }
        let (models, peers): (Vec<Subject>, Vec<Subject>) = all.into_iter().partition(|s| s.bh().is_some());
        let order = |s: &Subject| match s {
            Subject::Model(m, b) => (self.models.iter().position(|x| x == m), BhMode::ALL.iter().position(|x| x == b)),
            Subject::Peer(_) => (None, None),
        };
        let mut models = models;
        models.sort_by_key(order);
        models.into_iter().chain(peers).collect()
    }

    /// What the comparison leaves out and why (the peers of a workload that needs bottom
    /// halves; the Go peer when every peer was asked for but it is not built), one line each,
    /// for the table, the report and stderr.
    pub fn skipped(&self) -> Vec<String> {
        if self.peers.is_empty() {
            return Vec::new();
        }
        let peers: Vec<String> = self.peers.iter().map(|&p| Subject::Peer(p).name()).collect();
        let mut notes: Vec<String> = self
            .workloads
            .iter()
            .filter(|w| w.info().bottom_half)
            .map(|w| {
                format!(
                    "{}: {} skipped: the workload runs through atomkernel's softirqs (NET_RX_SOFTIRQ), which a host thread, a tokio runtime or a Go runtime does not have",
                    w.name(),
                    peers.join(", ")
                )
            })
            .collect();
        notes.extend(super::go_peer::skipped_note(&self.peers));
        notes
    }

    /// Runs per cell and round: throughput, latency, and on several CPUs throughput on one.
    pub fn runs_per_cell(&self) -> usize {
        if self.cpus > 1 {
            3
        } else {
            2
        }
    }

    /// Runs in the whole comparison (for a progress bar).
    pub fn steps(&self) -> u64 {
        let cells: usize = self.workloads.iter().map(|&w| self.subjects_for(w).len()).sum();
        (cells * self.rounds * self.runs_per_cell()) as u64
    }

    /// Seconds the runs take (without boot and teardown).
    pub fn estimated_seconds(&self) -> f64 {
        self.steps() as f64 * self.seconds
    }
}

fn bh_names() -> String {
    BhMode::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
}

/// Parses `--bh` (of `compare` and `packets`): a comma list of bottom-half options (`classic`,
/// `threaded`) or `all`.
pub fn parse_bh(arg: &str) -> Result<Vec<BhMode>, String> {
    let modes = super::parse_list(arg, &BhMode::ALL, |name| name.parse().map_err(|e| format!("--{e}, or all")))?;
    if modes.is_empty() {
        return Err(format!("--bh: name at least one option ({}), or all", bh_names()));
    }
    Ok(modes)
}

/// Parses `--preempt`: a comma list of models, `all` for every model, or `none` ...
/// which is a model; use an empty list for no model.
pub fn parse_models(arg: &str) -> Result<Vec<PreemptModel>, String> {
    super::parse_list(arg, &PreemptModel::ALL, |name| name.parse().map_err(|e| format!("--preempt: {e}, or all")))
}

/// Accumulates one cell over the rounds.
#[derive(Default)]
pub(crate) struct Cell {
    /// Each round's throughput (no probe running), on `cpus` CPUs and on one.
    pub(crate) quiet: Vec<f64>,
    pub(crate) single: Vec<f64>,
    pub(crate) loaded: Vec<f64>,
    pub(crate) hists: Vec<LatencyHist>,
    /// Where each probe and worker ran, over every round.
    pub(crate) probe_places: Vec<Placement>,
    pub(crate) workers: Vec<Placement>,
    pub(crate) cross: Option<CrossOut>,
    pub(crate) policy: Option<String>,
    /// Patch counters summed over the loaded runs: (events, sites armed, arming ns).
    pub(crate) patch: (u64, u64, u64),
    /// Collateral hits (`int3` and `call`) and the ns spent in their hooks, summed over the
    /// loaded runs' CPUs.
    pub(crate) collateral: (u64, u64),
}

impl Cell {
    /// Adds a latency run's samples, placements and counters.
    fn add_loaded(&mut self, loaded: RunOut, policy: String) {
        self.loaded.push(loaded.units_per_s());
        let p = &loaded.patch;
        self.patch = (self.patch.0 + p.events, self.patch.1 + p.sites_armed, self.patch.2 + p.arm_ns);
        let hits = p.collateral_int3 + p.collateral_calls;
        self.collateral = (self.collateral.0 + hits, self.collateral.1 + p.collateral_ns);
        merge_all(&mut self.hists, loaded.hists, LatencyHist::merge);
        merge_all(&mut self.probe_places, loaded.probe_places, |a, b| a.seen |= b.seen);
        merge_all(&mut self.workers, loaded.workers.iter().map(|w| w.place).collect(), |a, b| a.seen |= b.seen);
        match (&mut self.cross, loaded.cross) {
            (Some(a), Some(b)) => {
                a.hist.merge(&b.hist);
                a.irq.seen |= b.irq.seen;
                a.rt.seen |= b.rt.seen;
            }
            (a, b) => *a = a.take().or(b),
        }
        self.policy = Some(policy);
    }
}

/// Merges `new` into `acc` element by element (`acc` takes `new` when empty).
fn merge_all<T>(acc: &mut Vec<T>, new: Vec<T>, merge: impl Fn(&mut T, &T)) {
    if acc.is_empty() {
        *acc = new;
    } else {
        acc.iter_mut().zip(&new).for_each(|(a, b)| merge(a, b));
    }
}

/// Runs the comparison; `progress` hears about each run as it starts (`"none/loader latency"`).
pub fn run(cfg: &CompareConfig, progress: &mut dyn FnMut(&str)) -> Result<Vec<Row>, String> {
    cfg.validate()?;
    let (specs, ns) = (cfg.probes.specs(), (cfg.seconds * 1e9) as u64);
    let subjects: Vec<Vec<Subject>> = cfg.workloads.iter().map(|&w| cfg.subjects_for(w)).collect();
    let mut cells: Vec<Vec<Cell>> = subjects.iter().map(|ss| ss.iter().map(|_| Cell::default()).collect()).collect();
    for _ in 0..cfg.rounds {
        for (wi, &w) in cfg.workloads.iter().enumerate() {
            let with_bh = cfg.bh_for(w).len() > 1;
            for (si, &s) in subjects[wi].iter().enumerate() {
                let cell = &mut cells[wi][si];
                let name = format!("{}/{}", s.label(with_bh), w.name());
                progress(&format!("{name} throughput"));
                cell.quiet.push(s.run(w, &[], ns, cfg, cfg.cpus)?.0.units_per_s());
                if cfg.cpus > 1 {
                    progress(&format!("{name} throughput cpus=1"));
                    cell.single.push(s.run(w, &[], ns, cfg, 1)?.0.units_per_s());
                }
                progress(&format!("{name} latency"));
                let (loaded, policy) = s.run(w, &specs, ns, cfg, cfg.cpus)?;
                cell.add_loaded(loaded, policy);
            }
        }
    }
    Ok(super::row::rows(cfg, &subjects, &cells))
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
