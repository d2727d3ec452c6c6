//! The models lab: what each preemption model costs on the normal path and what it buys an RT
//! task, measured side by side.
//!
//! **Mechanism.** Every measurement boots a fresh kernel instance under one model. A
//! SCHED_NORMAL *worker* makes system calls in a loop; each system call is `atoms` atoms, an
//! atom being the checksum of one 4 KiB page ([`crate::atoms::csum`]) followed by a preemption
//! point. Two runs per model and round:
//!
//! 1. **throughput**: the worker alone (with idle and the tick) for the duration; pages per
//!    second of the worker's own wall time, from its first system call to its last;
//! 2. **latency**: the same worker plus an RT probe (SCHED_FIFO 80) doing the cyclictest loop,
//!    `next += interval; sleep_until(next); sample now - next`, until the duration is over.
//!
//! A controller task (SCHED_FIFO 90, above both) sleeps until the deadline and raises a stop
//! flag that the worker reads between system calls. Rounds interleave the models (round 1: every
//! model's throughput run, then its latency run, in model order; then round 2, ...) so slow
//! drift of the host hits every model alike. Per model the report gives the median throughput
//! over rounds and latency percentiles over every sample of every round pooled.
//!
//! **Invariant.** Every number is observed inside the kernel under test: pages are counted by
//! the worker, time by the kernel's clock, lateness by the probe when it runs. A run whose
//! kernel reported a `BUG:` is an error, never a figure.

use crate::atoms::{csum, PAGE};
use kernel::{spawn, syscall, Config, PreemptModel, TaskBuilder};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Priority of the cyclictest probe (SCHED_FIFO).
pub const PROBE_PRIO: u8 = 80;
/// Priority of the controller that ends a run (SCHED_FIFO, above the probe).
pub const CONTROL_PRIO: u8 = 90;

/// What to measure and for how long.
#[derive(Clone, Debug)]
pub struct LabConfig {
    /// The models, in report order (each must be built).
    pub models: Vec<PreemptModel>,
    /// Length of each run in seconds (0 < s <= 600).
    pub seconds: f64,
    /// Atoms (pages) per system call of the worker, 1..=4096.
    pub atoms: usize,
    /// The probe's period in microseconds, 100..=1_000_000.
    pub interval_us: u64,
    /// Rounds over all models, 1..=100.
    pub rounds: usize,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig { models: PreemptModel::BUILT.to_vec(), seconds: 2.0, atoms: 64, interval_us: 1000, rounds: 3 }
    }
}

impl LabConfig {
    /// Rejects settings the lab cannot run, naming the option and the valid range.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.seconds > 0.0 && self.seconds <= 600.0) {
            return Err(format!("--seconds {}: use a duration above 0 and at most 600 seconds", self.seconds));
        }
        if !(1..=4096).contains(&self.atoms) {
            return Err(format!("--atoms {}: use 1..=4096 atoms per system call", self.atoms));
        }
        if !(100..=1_000_000).contains(&self.interval_us) {
            return Err(format!(
                "--interval-us {}: use 100..=1000000 microseconds (below 100 us is under the timer resolution the kernel delivers)",
                self.interval_us
            ));
        }
        if self.duration_ns() < self.interval_us * 1000 {
            return Err(format!(
                "--seconds {} is shorter than one probe period (--interval-us {}): lengthen the run or shorten the period",
                self.seconds, self.interval_us
            ));
        }
        if !(1..=100).contains(&self.rounds) {
            return Err(format!("--rounds {}: use 1..=100 rounds", self.rounds));
        }
        if self.models.is_empty() {
            return Err("--preempt: name at least one model, or `all`".into());
        }
        if let Some(m) = self.models.iter().find(|m| !m.is_built()) {
            return Err(format!("--preempt {m}: not built yet; this build runs: {}", built_names()));
        }
        Ok(())
    }

    /// The length of each run in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        (self.seconds * 1e9) as u64
    }
}

fn built_names() -> String {
    PreemptModel::BUILT.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
}

/// Parses a `--preempt` value: a comma list of model names, or `all` for every built model.
/// Duplicates are dropped, the first occurrence keeping its place.
pub fn parse_models(arg: &str) -> Result<Vec<PreemptModel>, String> {
    if arg.trim() == "all" {
        return Ok(PreemptModel::BUILT.to_vec());
    }
    let mut models = Vec::new();
    for name in arg.split(',').map(str::trim) {
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

/// A latency distribution in nanoseconds (nearest-rank percentiles).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub min: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    /// Samples the figures come from (all zero when there are none).
    pub count: u64,
}

/// Nearest-rank percentiles of `samples`: the p-th percentile is the smallest sample with at
/// least p% of the samples at or below it.
pub fn percentiles(samples: &[u64]) -> Latency {
    if samples.is_empty() {
        return Latency::default();
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let n = s.len();
    // rank = ceil(p/1000 * n), in integers (p in tenths of a percent).
    let at = |per_mille: usize| s[(per_mille * n).div_ceil(1000).clamp(1, n) - 1];
    Latency { min: s[0], p50: at(500), p99: at(990), p999: at(999), max: s[n - 1], count: n as u64 }
}

/// The median of `v` (mean of the middle two for an even count; 0 for none).
fn median(v: &[f64]) -> f64 {
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

/// One model's figures over every round.
#[derive(Clone, Debug, Serialize)]
pub struct ModelResult {
    /// The preemption model.
    pub model: String,
    /// Median over rounds of the worker's pages per second with nothing else running.
    pub throughput_pages_s: f64,
    /// `(throughput_none / throughput - 1) * 100`; absent when `none` was not measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overhead_pct: Option<f64>,
    /// The probe's lateness over every sample of every round.
    pub latency_ns: Latency,
    /// Probe samples behind `latency_ns`.
    pub samples: u64,
    /// Median over rounds of the worker's pages per second while the probe ran.
    pub loaded_throughput_pages_s: f64,
    /// Each round's throughput (no RT task), in round order.
    pub rounds_throughput_pages_s: Vec<f64>,
    /// Settings: seconds per run, atoms per system call, probe period, rounds, tick rate.
    pub seconds: f64,
    pub atoms: usize,
    pub interval_us: u64,
    pub rounds: usize,
    pub hz: u32,
}

/// Measures every model of `cfg` (see the module docs) and returns one result per model, in
/// `cfg.models` order.
pub fn run(cfg: &LabConfig) -> Result<Vec<ModelResult>, String> {
    cfg.validate()?;
    let n = cfg.models.len();
    let mut quiet: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut loaded: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut lateness: Vec<Vec<u64>> = vec![Vec::new(); n];
    for _ in 0..cfg.rounds {
        for (i, &model) in cfg.models.iter().enumerate() {
            quiet[i].push(measure(model, cfg, false)?.pages_per_s);
            let r = measure(model, cfg, true)?;
            loaded[i].push(r.pages_per_s);
            lateness[i].extend(r.lateness);
        }
    }
    let none_tp = cfg.models.iter().position(|&m| m == PreemptModel::None).map(|i| median(&quiet[i]));
    let results = cfg
        .models
        .iter()
        .enumerate()
        .map(|(i, &model)| {
            let tp = median(&quiet[i]);
            let overhead_pct =
                none_tp.map(|base| if model == PreemptModel::None { 0.0 } else { (base / tp - 1.0) * 100.0 });
            let latency_ns = percentiles(&lateness[i]);
            ModelResult {
                model: model.name().into(),
                throughput_pages_s: tp,
                overhead_pct,
                latency_ns,
                samples: latency_ns.count,
                loaded_throughput_pages_s: median(&loaded[i]),
                rounds_throughput_pages_s: quiet[i].clone(),
                seconds: cfg.seconds,
                atoms: cfg.atoms,
                interval_us: cfg.interval_us,
                rounds: cfg.rounds,
                hz: Config::default().hz,
            }
        })
        .collect();
    Ok(results)
}

/// What one kernel instance measured.
struct Run {
    pages_per_s: f64,
    lateness: Vec<u64>,
}

/// Shared between the host and the tasks of one instance. The lock is taken once, by the
/// probe as it exits (nothing else in the kernel touches it), and read after the instance is
/// gone.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    pages: AtomicU64,
    worker_ns: AtomicU64,
    lateness: Mutex<Vec<u64>>,
}

/// One run on a fresh instance under `model`: the worker alone, or with the probe.
fn measure(model: PreemptModel, cfg: &LabConfig, probe: bool) -> Result<Run, String> {
    let shared = Arc::new(Shared::default());
    let (sh, atoms, duration, interval) = (shared.clone(), cfg.atoms, cfg.duration_ns(), cfg.interval_us * 1000);
    let config = Config { preempt: model, ..Config::default() };
    let report = kernel::run(config, move || {
        spawn(TaskBuilder::new("lab-control").fifo(CONTROL_PRIO), move || {
            control(&sh, atoms, duration, probe.then_some(interval))
        })
        .join()
        .unwrap_or(-1)
    })
    .map_err(|e| format!("preempt={model}: {e}"))?;
    let which = if probe { "latency" } else { "throughput" };
    if !report.bugs.is_empty() {
        return Err(format!("preempt={model} {which} run: the kernel reported {}", report.bugs.join("; ")));
    }
    match &report.init {
        Ok(0) => {}
        other => return Err(format!("preempt={model} {which} run failed inside the kernel: {other:?}")),
    }
    let (pages, ns) = (shared.pages.load(Ordering::Acquire), shared.worker_ns.load(Ordering::Acquire));
    if pages == 0 || ns == 0 {
        return Err(format!("preempt={model} {which} run: the worker did no work"));
    }
    let lateness = std::mem::take(&mut *shared.lateness.lock().unwrap_or_else(|e| e.into_inner()));
    if probe && lateness.is_empty() {
        return Err(format!("preempt={model} latency run: the probe took no sample"));
    }
    Ok(Run { pages_per_s: pages as f64 * 1e9 / ns as f64, lateness })
}

/// The controller (FIFO 90): starts the worker and, with `interval`, the probe; sleeps to the
/// deadline; stops the worker; waits for both. Returns 0, or -1 if a task failed.
fn control(sh: &Arc<Shared>, atoms: usize, duration: u64, interval: Option<u64>) -> i64 {
    let deadline = kernel::time::now_ns() + duration;
    let s = sh.clone();
    let worker = spawn(TaskBuilder::new("lab-worker"), move || worker(&s, atoms));
    let probe = interval.map(|interval| {
        let s = sh.clone();
        spawn(TaskBuilder::new("lab-probe").fifo(PROBE_PRIO), move || probe(&s, interval, deadline))
    });
    kernel::time::sleep_until(deadline);
    sh.stop.store(true, Ordering::Release);
    let mut ok = worker.join().is_ok();
    if let Some(p) = probe {
        ok &= p.join().is_ok();
    }
    if ok {
        0
    } else {
        -1
    }
}

/// The worker: system calls of `atoms` page checksums, each followed by a preemption point,
/// until told to stop (read between system calls). Publishes its pages and its wall time.
fn worker(sh: &Shared, atoms: usize) -> i64 {
    let page = [0x5au8; PAGE];
    let start = kernel::time::now_ns();
    let mut pages = 0u64;
    let mut acc = 0u16;
    loop {
        acc ^= syscall(|| {
            let mut a = 0u16;
            for _ in 0..atoms {
                a ^= csum(std::hint::black_box(&page));
                kernel::preempt_point!();
            }
            a
        });
        pages += atoms as u64;
        if sh.stop.load(Ordering::Acquire) {
            break;
        }
    }
    std::hint::black_box(acc);
    sh.worker_ns.store(kernel::time::now_ns() - start, Ordering::Release);
    sh.pages.store(pages, Ordering::Release);
    0
}

/// The cyclictest probe: wakes every `interval` ns on absolute deadlines until `deadline` and
/// records how late each wakeup ran.
fn probe(sh: &Shared, interval: u64, deadline: u64) -> i64 {
    let mut lateness = Vec::with_capacity((deadline.saturating_sub(kernel::time::now_ns()) / interval) as usize + 1);
    let mut next = kernel::time::now_ns();
    loop {
        next += interval;
        if next > deadline {
            break;
        }
        kernel::time::sleep_until(next);
        lateness.push(kernel::time::now_ns().saturating_sub(next));
    }
    *sh.lateness.lock().unwrap_or_else(|e| e.into_inner()) = lateness;
    0
}
