//! Workloads for `atomkernel trace`: any of them runs on a fresh kernel booted with the tracers
//! asked for, and hands back the kernel's report with its trace.
//!
//! - `scenario`: the 1996 scenario ([`services::scenario`]): a device IRQ in atom 1 wakes an RT task.
//! - `load`: the models lab's load: a SCHED_NORMAL worker in system calls of page-checksum
//!   atoms, and a SCHED_FIFO 80 cyclictest probe waking every `interval_us`.
//! - `long-atom`: the same worker, whose system calls contain one deliberately long atom
//!   ([`deliberately_long_atom`]); the tracers should name it.
//! - `torture`: the register torture ([`crate::torture`]), 20,000 preemptions of SCHED_RR tasks
//!   at HZ=10000 plus a device storm; in user mode under `none`, in kernel mode under `full`.
//!
//! **Invariant.** The workload ends by itself (a duration or a fixed amount of work), and a
//! run whose kernel reported a `BUG:` is an error, never a trace.

use crate::torture::TortureConfig;
use kernel::{spawn, syscall, Config, PreemptModel, RunReport, TaskBuilder};
use services::atoms::{csum, run_atom, PAGE};
use services::scenario::{self, ScenarioConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The workloads `atomkernel trace` runs.
pub const WORKLOADS: [&str; 4] = ["scenario", "load", "long-atom", "torture"];

/// The settings each workload reads: fields of [`TraceRun`], and `hz` of its kernel's
/// `Config`. The others it leaves alone (`scenario` has the seed's fixed shape and length, the
/// torture its own amount of work and tick rate), so setting one for it would change nothing.
pub fn reads(workload: &str) -> &'static [&'static str] {
    match workload {
        "scenario" => &["hz"],
        "load" => &["hz", "seconds", "atoms", "interval_us"],
        "long-atom" => &["hz", "seconds", "atoms", "interval_us", "long_atom_us"],
        _ => &[],
    }
}

/// The model a workload runs under when none is asked for: `voluntary` (points that act),
/// but for the torture, which preempts kernel code and so runs under `full`.
pub fn default_model(workload: &str) -> PreemptModel {
    match workload {
        "torture" => PreemptModel::Full,
        _ => PreemptModel::Voluntary,
    }
}

/// What to trace.
#[derive(Clone, Debug)]
pub struct TraceRun {
    /// One of [`WORKLOADS`].
    pub workload: String,
    /// The kernel's boot configuration (with `trace` set).
    pub config: Config,
    /// Length of `load` and `long-atom` in seconds.
    pub seconds: f64,
    /// Atoms per system call of the worker.
    pub atoms: usize,
    /// Period of the RT task in microseconds.
    pub interval_us: u64,
    /// Length of the long atom of `long-atom`, in microseconds.
    pub long_atom_us: u64,
}

impl Default for TraceRun {
    fn default() -> Self {
        TraceRun {
            workload: "scenario".into(),
            config: Config::default(),
            seconds: 0.5,
            atoms: 16,
            interval_us: 1000,
            long_atom_us: 2000,
        }
    }
}

impl TraceRun {
    /// Rejects settings that cannot run, naming the field (`atoms=0`, the kernel's `hz=0`) and
    /// what to use.
    pub fn validate(&self) -> Result<(), String> {
        if !WORKLOADS.contains(&self.workload.as_str()) {
            return Err(format!("workload={}: choose one of {}", self.workload, WORKLOADS.join(", ")));
        }
        if !(self.seconds > 0.0 && self.seconds <= 600.0) {
            return Err(format!("seconds={}: use a duration above 0 and at most 600 seconds", self.seconds));
        }
        if !(1..=4096).contains(&self.atoms) {
            return Err(format!("atoms={}: use 1..=4096 atoms per system call", self.atoms));
        }
        if !(100..=1_000_000).contains(&self.interval_us) {
            return Err(format!("interval_us={}: use 100..=1000000 microseconds", self.interval_us));
        }
        if !(1..=1_000_000).contains(&self.long_atom_us) {
            return Err(format!("long_atom_us={}: use 1..=1000000 microseconds", self.long_atom_us));
        }
        if self.workload == "torture" && !matches!(self.config.preempt, PreemptModel::None | PreemptModel::Full) {
            return Err(format!(
                "workload=torture with preempt={}: the torture runs under preempt=none (user mode) or full (kernel mode)",
                self.config.preempt
            ));
        }
        self.config.validate().map_err(|e| e.to_string())
    }
}

/// Runs the workload and returns the kernel's report.
pub fn run(t: &TraceRun) -> Result<RunReport, String> {
    t.validate()?;
    let report = match t.workload.as_str() {
        "scenario" => scenario::run_report(t.config.clone(), &ScenarioConfig::default()).map_err(|e| e.to_string())?.1,
        "torture" => torture(t)?,
        w => {
            let (atoms, interval, long) = (t.atoms, t.interval_us * 1000, (w == "long-atom").then_some(t.long_atom_us));
            let duration = (t.seconds * 1e9) as u64;
            kernel::run(t.config.clone(), move || load(atoms, duration, interval, long)).map_err(|e| e.to_string())?
        }
    };
    if !report.bugs.is_empty() {
        return Err(format!("the kernel reported {}", report.bugs.join("; ")));
    }
    report.init.clone().map_err(|e| format!("the workload failed inside the kernel: {e}"))?;
    Ok(report)
}

/// The register torture with the tracers on; a register mismatch is an error.
fn torture(t: &TraceRun) -> Result<RunReport, String> {
    let kernel_mode = t.config.preempt == PreemptModel::Full;
    let cfg = TortureConfig {
        preemptions: 20_000,
        max_secs: 120,
        kernel_mode,
        cpus: t.config.cpus,
        ..TortureConfig::default()
    };
    let (r, report) = crate::torture::run_traced(&cfg, t.config.trace).map_err(|e| e.to_string())?;
    match r.mismatches.first() {
        Some(m) => Err(format!("the torture found {} register mismatches, the first: {m}", r.mismatches.len())),
        None => Ok(report),
    }
}

/// init: a worker and an RT probe until the duration is over.
fn load(atoms: usize, duration: u64, interval: u64, long_us: Option<u64>) -> i64 {
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = kernel::time::now_ns() + duration;
    let s = stop.clone();
    let worker = spawn(TaskBuilder::new("worker"), move || worker(&s, atoms, long_us));
    let probe = spawn(TaskBuilder::new("rt").fifo(80), move || {
        let mut next = kernel::time::now_ns();
        while next + interval <= deadline {
            next += interval;
            kernel::time::sleep_until(next);
        }
        0
    });
    let ok = probe.join().is_ok();
    stop.store(true, Ordering::Release);
    if worker.join().is_ok() && ok {
        0
    } else {
        -1
    }
}

/// The worker: system calls of `atoms` page-checksum atoms, each followed by a preemption
/// point; with `long_us`, one deliberately long atom in the middle of each call.
fn worker(stop: &AtomicBool, atoms: usize, long_us: Option<u64>) -> i64 {
    let page = [0x5au8; PAGE];
    let mut acc = 0u16;
    while !stop.load(Ordering::Acquire) {
        acc ^= syscall(|| {
            let mut a = 0u16;
            for i in 0..atoms {
                a ^= csum(std::hint::black_box(&page));
                kernel::preempt_point!();
                if let (true, Some(us)) = (i == atoms / 2, long_us) {
                    deliberately_long_atom(&page, us);
                }
            }
            a
        });
    }
    std::hint::black_box(acc);
    0
}

/// An atom `us` microseconds long between two preemption points of its own: the longest
/// stretch without a preemption opportunity in the `long-atom` workload, by construction.
#[inline(never)]
pub fn deliberately_long_atom(page: &[u8], us: u64) -> u64 {
    kernel::preempt_point!();
    let end = kernel::time::now_ns() + us * 1000;
    let pages = run_atom(page, || kernel::time::now_ns() >= end);
    kernel::preempt_point!();
    pages
}
