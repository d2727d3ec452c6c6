//! The comparison: every model and peer × every chosen workload, in one interleaved run.
//!
//! **Mechanism.** A *cell* is one subject (a preemption model under one bottom-half option
//! (`bh=`), or a peer) with one workload. A workload that runs through bottom halves (`packet`)
//! has no peer cells (a host thread, a tokio or Go runtime has no softirq; [`CompareConfig::skipped`]
//! says so) and, unless [`CompareConfig::bh`] narrows it, runs under every `bh=` option; the others
//! run under the options it names, by default the kernel's own (`classic`).
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

use crate::host_peer::{self, Load};
use crate::measure::{self, Breakdown, CpuPolicy, CrossOut, Placement, ProbeSet, ProbeSpec, RunOut, Stop};
use crate::peers::{self, Peer};
use crate::probe;
use crate::row::{self, BreakdownRow, CrossRow, HandlerParts, ProbeRow, Row, StallRow};
use crate::stats::{median, Latency, LatencyHist};
use crate::symbols::Resolver;
use hostlab::stall::{Stall, Watcher};
use kernel::{BhMode, Config, PreemptModel};
use services::workloads::Workload;

/// Who is measured: the host's floor, a preemption model of atomkernel under a bottom-half
/// option, or a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// The host's floor: the same probes on the same host CPUs beside plain busy loops (one per
    /// CPU, at the workers' host policy), none of the lab's machinery. Every other subject is
    /// read as this plus what it adds.
    Floor,
    Model(PreemptModel, BhMode),
    Peer(Peer),
}

impl Subject {
    /// `floor`, `none`, `voluntary`, ... or `peer:host-fifo`, `peer:tokio`, `peer:go` (the
    /// `model` of a row).
    pub fn name(self) -> String {
        match self {
            Subject::Floor => "floor".into(),
            Subject::Model(m, _) => m.name().into(),
            Subject::Peer(p) => format!("peer:{}", p.name()),
        }
    }

    /// The bottom-half option of a model; `None` for the floor and a peer.
    pub fn bh(self) -> Option<BhMode> {
        match self {
            Subject::Model(_, bh) => Some(bh),
            Subject::Floor | Subject::Peer(_) => None,
        }
    }

    /// Where an RT task woken by an interrupt gets the CPU (a model's own answer; for the floor
    /// and the peers, who preempts the worker).
    pub fn rt_runs_at(self) -> &'static str {
        match self {
            Subject::Floor | Subject::Peer(Peer::HostFifo) => "host preempts",
            Subject::Model(m, _) => m.rt_runs_at(),
            Subject::Peer(Peer::Tokio) => "next yield",
            Subject::Peer(Peer::Go) => "Go preempts",
        }
    }

    /// Whether it has a throughput to measure (the floor's busy loops do no work).
    pub fn does_work(self) -> bool {
        self != Subject::Floor
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
        probes: &[ProbeSpec],
        ns: u64,
        cfg: &CompareConfig,
        cpus: usize,
    ) -> Result<(RunOut, String), String> {
        match self {
            Subject::Floor => Ok(host_peer::run(Load::Spin, probes, ns, cfg.cpu, cpus)),
            Subject::Model(m, bh) => {
                let boot = cfg.boot(m, bh, cpus);
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
    /// Bottom-half options (`bh=`); `None`: every option for a workload that runs through
    /// bottom halves (`packet`), the kernel's default (`classic`) for the others.
    pub bh: Option<Vec<BhMode>>,
    /// `ksoftirqd`'s SCHED_FIFO priority under `bh=threaded` (the kernel's `bh_prio=`, 1..=99).
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
    /// The patch models' point table (the `ptable=` boot option).
    pub ptable: kernel::PtableMode,
    /// Where the patch models serve an event whose interrupted function reaches no point (the
    /// `patch_leaf=` boot option).
    pub patch_leaf: kernel::PatchLeaf,
    /// How the patch models' patches synchronise the other CPUs (the `patch_sync=` boot option).
    pub patch_sync: kernel::PatchSync,
    /// Time the patch handler's parts too (the `patch_parts=` boot option): the rows'
    /// `handler_parts_ns_per_event`, at the laps' own cost in the handler's time.
    pub patch_parts: bool,
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
            patch_leaf: kernel::PatchLeaf::Walk,
            patch_sync: kernel::PatchSync::None,
            patch_parts: false,
            cpus: 1,
        }
    }
}

impl CompareConfig {
    /// Rejects settings the comparison cannot run, naming the field (`rounds=0`, the kernel's
    /// `cpus=65`) and the valid values.
    pub fn validate(&self) -> Result<(), String> {
        measure::validate_seconds(self.seconds)?;
        crate::measure::validate_rounds(self.rounds)?;
        self.probes.validate()?;
        if self.seconds * 1e6 < (self.probes.interval_us * 2) as f64 {
            return Err(format!(
                "seconds={} is shorter than two probe periods (interval_us={}): lengthen the run or shorten the period",
                self.seconds, self.probes.interval_us
            ));
        }
        if self.models.is_empty() && self.peers.is_empty() {
            return Err("models= and peers= are both empty: name at least one model or peer".into());
        }
        if self.workloads.is_empty() {
            return Err("workloads= is empty: name at least one workload, or all".into());
        }
        if self.bh.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!("bh= is empty: name at least one option ({}), or all", bh_names()));
        }
        self.boot(PreemptModel::None, BhMode::Classic, self.cpus).validate().map_err(|e| e.to_string())?;
        if let (true, Some(w)) = (self.models.is_empty(), self.workloads.iter().find(|w| w.info().bottom_half)) {
            return Err(format!(
                "models= names no model, but the {} workload (in workloads=) runs only under atomkernel's models (it needs bottom halves; the peers have none): name a model with models=, or leave {} out of workloads=",
                w.name(),
                w.name()
            ));
        }
        Ok(())
    }

    /// The boot configuration of a model's instance: this comparison's `bh_prio`, `ptable`,
    /// `patch_leaf`, `patch_sync` and `patch_parts` (which the kernel's `Config::validate` checks), on `cpus` CPUs, each CPU
    /// thread pinned (`pin=`) to the host CPU the floor's and the host peer's CPU of the same
    /// index run on ([`host_peer::host_cpus`]): left to the host, two new CPU threads often
    /// start on one host core and share it a host tick at a time until the host balances them.
    fn boot(&self, preempt: PreemptModel, bh: BhMode, cpus: usize) -> Config {
        let (bh_prio, ptable, patch_leaf) = (self.bh_prio, self.ptable, self.patch_leaf);
        let (patch_sync, patch_parts) = (self.patch_sync, self.patch_parts);
        // A count out of range is the kernel's to refuse (`Config::validate`), with no pins
        // computed for it (a count near `usize::MAX` would not fit a list).
        let pin = if (1..=kernel::config::MAX_CPUS).contains(&cpus) { host_peer::host_cpus(cpus) } else { Vec::new() };
        Config { preempt, bh, bh_prio, ptable, patch_leaf, patch_sync, patch_parts, cpus, pin, ..Config::default() }
    }

    /// The bottom-half options `w` runs under.
    pub fn bh_for(&self, w: Workload) -> Vec<BhMode> {
        match &self.bh {
            Some(list) => list.clone(),
            None if w.info().bottom_half => BhMode::ALL.to_vec(),
            None => vec![BhMode::Classic],
        }
    }

    /// Who runs `w`: the floor, each model under each of its `bh=` options, then the peers
    /// (none for a workload that needs bottom halves).
    pub fn subjects_for(&self, w: Workload) -> Vec<Subject> {
        let bh = self.bh_for(w);
        let models = self.models.iter().flat_map(|&m| bh.iter().map(move |&b| Subject::Model(m, b)));
        let peers = self.peers.iter().filter(|_| !w.info().bottom_half).map(|&p| Subject::Peer(p));
        std::iter::once(Subject::Floor).chain(models).chain(peers).collect()
    }

    /// Every subject of the comparison, once: the floor, models (each under its options), then
    /// peers.
    pub fn subjects(&self) -> Vec<Subject> {
        let mut all: Vec<Subject> = Vec::new();
        for s in self.workloads.iter().flat_map(|&w| self.subjects_for(w)) {
            if !all.contains(&s) {
                all.push(s);
            }
        }
        let (models, others): (Vec<Subject>, Vec<Subject>) = all.into_iter().partition(|s| s.bh().is_some());
        let order = |s: &Subject| match s {
            Subject::Model(m, b) => (self.models.iter().position(|x| x == m), BhMode::ALL.iter().position(|x| x == b)),
            Subject::Floor | Subject::Peer(_) => (None, None),
        };
        let mut models = models;
        models.sort_by_key(order);
        let peers = others.iter().copied().filter(|&s| s != Subject::Floor);
        std::iter::once(Subject::Floor).chain(models).chain(peers).collect()
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
        notes.extend(peers::skipped_note(&self.peers));
        notes
    }

    /// Runs per cell and round: throughput, latency, and on several CPUs throughput on one;
    /// the floor's latency only.
    pub fn runs_per_cell(&self, s: Subject) -> usize {
        match (s.does_work(), self.cpus > 1) {
            (false, _) => 1,
            (true, true) => 3,
            (true, false) => 2,
        }
    }

    /// Runs in the whole comparison (for a progress bar).
    pub fn steps(&self) -> u64 {
        let runs: usize =
            self.workloads.iter().flat_map(|&w| self.subjects_for(w)).map(|s| self.runs_per_cell(s)).sum();
        (runs * self.rounds) as u64
    }

    /// Seconds the runs take (without boot and teardown).
    pub fn estimated_seconds(&self) -> f64 {
        self.steps() as f64 * self.seconds
    }
}

fn bh_names() -> String {
    BhMode::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
}

/// Accumulates one cell over the rounds.
#[derive(Default)]
struct Cell {
    /// Each round's throughput (no probe running), on `cpus` CPUs and on one.
    quiet: Vec<f64>,
    single: Vec<f64>,
    loaded: Vec<f64>,
    hists: Vec<LatencyHist>,
    /// Each round's latency, every probe of the round pooled.
    rounds: Vec<Latency>,
    /// Where each probe and worker ran, over every round.
    probe_places: Vec<Placement>,
    workers: Vec<Placement>,
    cross: Option<CrossOut>,
    policy: Option<String>,
    /// Where the probes' wakeups went, over the loaded runs.
    breakdown: Breakdown,
    /// Patch counters summed over the loaded runs.
    patch: kernel::model::patch::PatchStatsSnapshot,
    /// Collateral hits (`int3` and `call`) and the ns spent in their hooks, summed over the
    /// loaded runs' CPUs.
    collateral: (u64, u64),
    /// The stall watcher's figures over the latency runs; `None` without a watcher.
    stalls: Option<Stalls>,
}

/// A cell's host stalls (`hostlab::stall`) over its latency runs.
#[derive(Default)]
struct Stalls {
    count: u64,
    longest_ns: u64,
    rounds_stalled: usize,
    /// Every probe's samples of the rounds without a stall.
    unstalled: LatencyHist,
}

impl Cell {
    /// Adds a latency run's samples, placements and counters, and the host stalls the watcher
    /// saw during it (`None` without a watcher).
    fn add_loaded(&mut self, loaded: RunOut, policy: String, stalls: Option<Vec<Stall>>) {
        if let Some(seen) = stalls {
            let c = self.stalls.get_or_insert_with(Stalls::default);
            c.count += seen.len() as u64;
            c.longest_ns = seen.iter().map(Stall::ns).fold(c.longest_ns, u64::max);
            c.rounds_stalled += !seen.is_empty() as usize;
            if seen.is_empty() {
                loaded.hists.iter().for_each(|h| c.unstalled.merge(h));
            }
        }
        self.loaded.push(loaded.units_per_s());
        self.breakdown.merge(&loaded.breakdown);
        let mut round = LatencyHist::new();
        loaded.hists.iter().for_each(|h| round.merge(h));
        self.rounds.push(round.summary());
        let p = &loaded.patch;
        self.patch.add(p);
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
    let watcher = Watcher::start(); // without one (no SCHED_FIFO), rows say null, not 0
    for _ in 0..cfg.rounds {
        for (wi, &w) in cfg.workloads.iter().enumerate() {
            let with_bh = cfg.bh_for(w).len() > 1;
            for (si, &s) in subjects[wi].iter().enumerate() {
                let cell = &mut cells[wi][si];
                let name = format!("{}/{}", s.label(with_bh), w.name());
                if s.does_work() {
                    progress(&format!("{name} throughput"));
                    cell.quiet.push(s.run(w, &[], ns, cfg, cfg.cpus)?.0.units_per_s());
                }
                if cfg.cpus > 1 && s.does_work() {
                    progress(&format!("{name} throughput cpus=1"));
                    cell.single.push(s.run(w, &[], ns, cfg, 1)?.0.units_per_s());
                }
                progress(&format!("{name} latency"));
                let t0 = hostlab::sched::now_ns();
                let (loaded, policy) = s.run(w, &specs, ns, cfg, cfg.cpus)?;
                let stalls = watcher.as_ref().ok().map(|x| x.stalls_between(t0, hostlab::sched::now_ns()));
                cell.add_loaded(loaded, policy, stalls);
            }
        }
    }
    Ok(rows(cfg, &subjects, &cells))
}

/// The rows of a comparison, in table order.
fn rows(cfg: &CompareConfig, subjects: &[Vec<Subject>], cells: &[Vec<Cell>]) -> Vec<Row> {
    let mut rows = Vec::new();
    let explained = cells.iter().flatten().any(|c| c.breakdown.explained > 0);
    let resolver = explained.then(Resolver::load);
    for (wi, w) in cfg.workloads.iter().enumerate() {
        let first_bh = cfg.bh_for(*w)[0];
        let base = |s: Subject| {
            let none = Subject::Model(PreemptModel::None, s.bh().unwrap_or(first_bh));
            subjects[wi].iter().position(|&x| x == none).map(|i| median(&cells[wi][i].quiet))
        };
        for (si, &s) in subjects[wi].iter().enumerate() {
            let c = &cells[wi][si];
            let work = s.does_work();
            let tp = median(&c.quiet);
            let mut pooled = LatencyHist::new();
            c.hists.iter().for_each(|h| pooled.merge(h));
            let latency = pooled.summary();
            let is_none = matches!(s, Subject::Model(PreemptModel::None, _));
            let single = (cfg.cpus > 1 && work).then(|| median(&c.single));
            let per_event = |n: u64| (c.patch.events > 0).then(|| n as f64 / c.patch.events as f64);
            rows.push(Row {
                model: s.name(),
                rt_runs_at: s.rt_runs_at().into(),
                bh: s.bh().map(|b| b.name().to_string()),
                workload: w.name().into(),
                unit: w.info().unit.into(),
                size: w.size,
                cpus: cfg.cpus,
                latency_ns: latency,
                samples: latency.count,
                latency_undisturbed_ns: pooled.undisturbed(),
                host_disturbed: pooled.disturbed(),
                host_stalls: c.stalls.as_ref().map(|x| StallRow {
                    count: x.count,
                    longest_ns: x.longest_ns,
                    rounds_stalled: x.rounds_stalled,
                    latency_unstalled_ns: x.unstalled.summary(),
                }),
                latency_per_cpu_ns: per_cpu(cfg, c),
                cross_cpu: c.cross.as_ref().map(|x| CrossRow {
                    irq: x.irq.into(),
                    rt: x.rt.into(),
                    prio: x.spec.prio,
                    interval_us: x.spec.interval_ns / 1000,
                    latency_ns: x.hist.summary(),
                    latency_undisturbed_ns: x.hist.undisturbed(),
                }),
                throughput_ops_s: work.then_some(tp),
                overhead_pct: base(s).filter(|_| work).map(|b| if is_none { 0.0 } else { (b / tp - 1.0) * 100.0 }),
                loaded_throughput_ops_s: work.then(|| median(&c.loaded)),
                rounds_throughput_ops_s: c.quiet.clone(),
                rounds_latency_ns: c.rounds.clone(),
                throughput_1cpu_ops_s: single,
                scaling: single.filter(|&t| t > 0.0).map(|t| tp / t),
                workers: (!c.workers.is_empty() && c.workers.iter().all(|p| p.cpu.is_some()))
                    .then(|| c.workers.iter().map(|&p| p.into()).collect()),
                probes: probe_rows(cfg, c),
                policy: c.policy.clone().unwrap_or_default(),
                histogram: pooled.bins(),
                cdf_ns: row::cdf(&pooled),
                seconds: cfg.seconds,
                rounds: cfg.rounds,
                hz: Config::default().hz,
                sites_armed_per_event: per_event(c.patch.sites_armed),
                handler_ns_per_event: per_event(c.patch.arm_ns),
                handler_parts_ns_per_event: (c.patch.events > 0 && cfg.patch_parts).then(|| HandlerParts {
                    lookup: c.patch.lookup_ns as f64 / c.patch.events as f64,
                    unwind: c.patch.unwind_ns as f64 / c.patch.events as f64,
                    poke: c.patch.poke_ns as f64 / c.patch.events as f64,
                    redirect: c.patch.redirect_ns as f64 / c.patch.events as f64,
                }),
                collateral_per_event: per_event(c.collateral.0),
                collateral_ns_per_event: per_event(c.collateral.1),
                breakdown: resolver.as_ref().and_then(|r| breakdown_row(&c.breakdown, r)),
            });
        }
    }
    rows
}

/// A cell's breakdown as a row's: each part's median, the worst wakeup's parts and the code
/// its interrupt found the CPU in; `None` without an explained wakeup.
fn breakdown_row(b: &Breakdown, resolver: &Resolver) -> Option<BreakdownRow> {
    let worst = b.worst?;
    Some(BreakdownRow {
        explained: b.explained,
        median_ns: b.parts.clone().map(|h| h.summary().p50).into(),
        worst_ns: worst.ns.into(),
        worst_total_ns: worst.total(),
        worst_preempted: worst.preempted,
        worst_held_at: match worst.held_ip {
            0 => "an IRQs-off section (the interrupt was replayed when IRQs came on)".into(),
            ip => resolver.innermost(ip).to_string(),
        },
    })
}

/// Each probe's row: probe `i` of CPU `c` is at `c * threads + i` (`measure::layout`).
fn probe_rows(cfg: &CompareConfig, c: &Cell) -> Vec<ProbeRow> {
    let specs = measure::layout(&cfg.probes.specs(), cfg.cpus);
    specs
        .iter()
        .zip(&c.hists)
        .enumerate()
        .map(|(i, ((_, sp), h))| {
            let place = c.probe_places.get(i).copied().unwrap_or_default();
            ProbeRow {
                prio: sp.prio,
                interval_us: sp.interval_ns / 1000,
                cpu: place.cpu,
                ran_on: place.seen_cpus(),
                latency_ns: h.summary(),
            }
        })
        .collect()
}

/// The probes bound to each CPU, pooled; `None` when the probes were not bound.
fn per_cpu(cfg: &CompareConfig, c: &Cell) -> Option<Vec<Latency>> {
    let threads = cfg.probes.threads;
    if c.probe_places.len() != c.hists.len() || c.probe_places.iter().any(|p| p.cpu.is_none()) {
        return None;
    }
    let per: Vec<Latency> = c
        .hists
        .chunks(threads)
        .map(|hs| {
            let mut h = LatencyHist::new();
            hs.iter().for_each(|x| h.merge(x));
            h.summary()
        })
        .collect();
    Some(per)
}
