//! The probe: cyclictest's method inside atomkernel, and the run that hosts it.
//!
//! **Mechanism.** A probe is an RT task (SCHED_FIFO at its priority) that loops `next +=
//! interval; sleep_until(next); record(now - next)`: how late it ran after the deadline it
//! asked for, which is the interrupt's delivery plus whatever kept the CPU from it. As with
//! cyclictest's `-t N -p P -i I -d D`, probe `i` runs at priority `P - i` with interval
//! `I + i * D`. [`run_kernel`] boots a fresh instance under one model ([`run_instance`]: under
//! a whole boot configuration, e.g. with a `bh=` option), its CPU thread at the host scheduling
//! asked for (see [`CpuPolicy`]), with a controller task (SCHED_FIFO 99), a SCHED_NORMAL worker
//! that opens the workload and makes system calls of its atoms, and the probes; it stops after a duration (or after every probe took its count of samples).
//!
//! **Invariant.** Every number is observed inside the kernel under test: units by the worker,
//! lateness by the probe when it runs, all on the kernel's clock. A run whose kernel reported a
//! `BUG:` is an error, never a figure.

use super::stats::LatencyHist;
use super::workloads::{self, Workload};
use kernel::{spawn, BhMode, Config, PreemptModel, TaskBuilder};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The smallest probe interval: one host timer signal and a thread wakeup cost several µs, so
/// below this the probe would mostly measure itself.
pub const MIN_INTERVAL_US: u64 = 100;
/// Priority of the controller that ends a run (above every probe).
pub const CONTROL_PRIO: u8 = 99;

/// The probes of a run, as cyclictest's `-t -p -i -d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSet {
    /// Number of probes, 1..=16.
    pub threads: usize,
    /// Priority of the first probe (SCHED_FIFO 1..=98); probe `i` runs at `prio - i`.
    pub prio: u8,
    /// Period of the first probe in µs.
    pub interval_us: u64,
    /// Added to the period of each further probe, in µs.
    pub distance_us: u64,
}

impl Default for ProbeSet {
    fn default() -> Self {
        ProbeSet { threads: 1, prio: 80, interval_us: 250, distance_us: 50 }
    }
}

/// One probe: its priority and period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub prio: u8,
    pub interval_ns: u64,
}

impl ProbeSet {
    /// Rejects impossible settings, naming the option and the valid values.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=16).contains(&self.threads) {
            return Err(format!("--threads {}: use 1..=16 probes", self.threads));
        }
        if !(1..=98).contains(&self.prio) {
            return Err(format!("--prio {}: use SCHED_FIFO priority 1..=98 (99 is the lab's controller)", self.prio));
        }
        if self.threads > self.prio as usize {
            return Err(format!(
                "--threads {} with --prio {}: probe i runs at prio - i, so use at most {} probes",
                self.threads, self.prio, self.prio
            ));
        }
        if self.interval_us < MIN_INTERVAL_US {
            return Err(format!(
                "--interval-us {}: below the timer resolution atomkernel delivers ({MIN_INTERVAL_US} us); use {MIN_INTERVAL_US}..=1000000",
                self.interval_us
            ));
        }
        if self.interval_us > 1_000_000 || self.distance_us > 1_000_000 {
            return Err(format!(
                "--interval-us {} / --distance-us {}: use at most 1000000 us",
                self.interval_us, self.distance_us
            ));
        }
        Ok(())
    }

    /// Each probe's priority and period.
    pub fn specs(&self) -> Vec<ProbeSpec> {
        (0..self.threads)
            .map(|i| ProbeSpec {
                prio: self.prio - i as u8,
                interval_ns: (self.interval_us + i as u64 * self.distance_us) * 1000,
            })
            .collect()
    }
}

/// The longest run of the lab, in seconds (`--duration`, and `--loops` times the slowest
/// probe's period).
pub const MAX_SECONDS: f64 = 600.0;

/// Checks a `--duration` in seconds: above 0, at most [`MAX_SECONDS`].
pub fn validate_seconds(s: f64) -> Result<(), String> {
    if s > 0.0 && s <= MAX_SECONDS {
        Ok(())
    } else {
        Err(format!("--duration {s}: use a duration above 0 and at most {MAX_SECONDS} seconds"))
    }
}

/// Checks `--loops`: at least 1, and no more than the slowest of `probes` takes in
/// [`MAX_SECONDS`] (a count of samples is a length of run too, and must be bounded like one).
pub fn validate_loops(loops: u64, probes: &[ProbeSpec]) -> Result<(), String> {
    let slowest = probes.iter().map(|p| p.interval_ns).max().unwrap_or(1).max(1);
    let most = (MAX_SECONDS * 1e9) as u64 / slowest;
    if loops == 0 {
        return Err("--loops 0: take at least 1 sample per probe".into());
    }
    if loops > most {
        return Err(format!(
            "--loops {loops}: the slowest probe (every {} us) would run {:.0} s; use at most {most} loops ({MAX_SECONDS} s), or --duration",
            slowest / 1000,
            loops as f64 * slowest as f64 / 1e9
        ));
    }
    Ok(())
}

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this many nanoseconds.
    After(u64),
    /// When every probe has taken this many samples.
    Loops(u64),
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct RunOut {
    /// Workload units completed.
    pub units: u64,
    /// The worker's wall time, first call to last.
    pub ns: u64,
    /// One histogram per probe, in probe order.
    pub hists: Vec<LatencyHist>,
    /// The host policy the run's CPU thread (or the peer's probes) got, when one was asked for.
    pub policy: Option<String>,
    /// The patch models' counters of the run (zero under other models and for peers).
    pub patch: kernel::model::patch::PatchStatsSnapshot,
}

impl RunOut {
    /// Units per second of the worker's own wall time (0 without a workload).
    pub fn units_per_s(&self) -> f64 {
        if self.ns == 0 {
            0.0
        } else {
            self.units as f64 * 1e9 / self.ns as f64
        }
    }
}

/// Shared by the host and the tasks of one instance. The lock is taken once per probe, as it
/// exits, and read after the instance is gone.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    units: AtomicU64,
    ns: AtomicU64,
    hists: Mutex<Vec<Option<LatencyHist>>>,
    policy: std::sync::OnceLock<String>,
    /// Why the workload's `open` or `close` failed.
    error: std::sync::OnceLock<String>,
}

/// How the host schedules a thread that runs a workload: a kernel instance's CPU thread, the
/// host peer's hog, the tokio runtime's thread.
///
/// Not SCHED_FIFO: a FIFO thread that computes without pause hits the host's RT throttling
/// (`sched_rt_runtime_us`: 950 ms of every second) and is stopped for 50 ms, which the probe
/// then records (seen on the project's VM: p99 of 20-90 ms under every model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuPolicy {
    /// Left as the host made it.
    Shared,
    /// SCHED_OTHER at this nice value (-20 = the largest share the host gives a normal
    /// thread, about 87 times a nice-0 thread's), or what the host allows.
    Nice(i8),
}

impl CpuPolicy {
    /// Applies the policy to the calling thread; says what it got.
    pub fn apply(self) -> String {
        match self {
            CpuPolicy::Shared => "host default".into(),
            CpuPolicy::Nice(n) => hostlab::sched::set_nice(n),
        }
    }
}

/// Runs `workload` (if any) and `probes` on a fresh instance of `cpus` CPUs under `model` until
/// `stop`, its CPU threads scheduled on the host as `cpu`.
pub fn run_kernel(
    model: PreemptModel,
    cpus: usize,
    workload: Option<Workload>,
    probes: &[ProbeSpec],
    stop: Stop,
    cpu: CpuPolicy,
) -> Result<RunOut, String> {
    run_instance(Config { preempt: model, cpus, ..Config::default() }, workload, probes, stop, cpu)
}

/// [`run_kernel`] on an instance booted with `config` (its `preempt`, `bh`, `bh_prio`).
pub fn run_instance(
    config: Config,
    workload: Option<Workload>,
    probes: &[ProbeSpec],
    stop: Stop,
    cpu: CpuPolicy,
) -> Result<RunOut, String> {
    let model = if config.bh == BhMode::Classic {
        format!("{}", config.preempt)
    } else {
        format!("{} bh={} bh_prio={}", config.preempt, config.bh, config.bh_prio)
    };
    let shared = Arc::new(Shared { hists: Mutex::new(vec![None; probes.len()]), ..Shared::default() });
    let (sh, specs) = (shared.clone(), probes.to_vec());
    let work = workload.map(|w| w.make());
    let limit = hang_limit(stop, probes);
    // A lab run never idles long (its probes wake every interval): report a CPU idle for
    // 10 s with tasks asleep (a hang) on stderr, unless the caller chose a timeout.
    let config =
        Config { hung_timeout_ms: if config.hung_timeout_ms == 0 { 10_000 } else { config.hung_timeout_ms }, ..config }
            .with_watchdog_defaults();
    let report = run_watched(config, limit, move || {
        let _ = sh.policy.set(format!("CPU thread: {}", cpu.apply()));
        spawn(TaskBuilder::new("lab-control").fifo(CONTROL_PRIO), move || control(&sh, work, &specs, stop))
            .join()
            .unwrap_or(-1)
    })
    .map_err(|e| format!("preempt={model}: {e}"))?;
    if !report.bugs.is_empty() {
        return Err(format!("preempt={model}: the kernel reported {}", report.bugs.join("; ")));
    }
    if let Some(e) = shared.error.get() {
        return Err(format!("preempt={model}: {e}"));
    }
    if report.init != Ok(0) {
        return Err(format!("preempt={model}: the run failed inside the kernel: {:?}", report.init));
    }
    let hists: Vec<LatencyHist> =
        shared.hists.lock().unwrap_or_else(|e| e.into_inner()).drain(..).map(Option::unwrap_or_default).collect();
    let (units, ns, policy) =
        (shared.units.load(Ordering::Acquire), shared.ns.load(Ordering::Acquire), shared.policy.get().cloned());
    let out = RunOut { units, ns, hists, policy, patch: report.patch };
    if workload.is_some() && out.units == 0 {
        return Err(format!("preempt={model}: the worker did no work"));
    }
    if out.hists.iter().any(|h| h.count() == 0) {
        return Err(format!("preempt={model}: a probe took no sample (lengthen the run)"));
    }
    Ok(out)
}

/// Time a run may take past twice its planned length before the lab calls the instance hung.
pub const HANG_GRACE_NS: u64 = 60_000_000_000;

/// How long a run with this stop condition may take: twice its planned length (a probe's
/// interval times its loops, or the duration) plus [`HANG_GRACE_NS`].
fn hang_limit(stop: Stop, probes: &[ProbeSpec]) -> std::time::Duration {
    let planned = match stop {
        Stop::After(ns) => ns,
        Stop::Loops(n) => probes.iter().map(|p| p.interval_ns.saturating_mul(n)).max().unwrap_or(0),
    };
    std::time::Duration::from_nanos(planned.saturating_mul(2).saturating_add(HANG_GRACE_NS))
}

/// `kernel::run` on a host thread of its own, watched: a run that has not ended within `limit`
/// is reported as a hang (an error naming the limit) instead of stopping the whole lab
/// forever. The hung instance cannot be killed (its tasks are host-thread contexts); it is
/// left behind, idle, and the caller's error ends the command.
pub(crate) fn run_watched(
    config: Config,
    limit: std::time::Duration,
    init: impl FnOnce() -> i64 + Send + 'static,
) -> Result<kernel::RunReport, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("lab-instance".into())
        .spawn(move || {
            let _ = tx.send(kernel::run(config, init));
        })
        .map_err(|e| format!("cannot start a host thread for the kernel instance: {e}"))?;
    match rx.recv_timeout(limit) {
        Ok(report) => report.map_err(|e| e.to_string()),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "the kernel instance did not finish within {:.0} s (twice the run's length plus {} s): it hung, a bug of atomkernel; please report it with the command line (the instance is left behind)",
            limit.as_secs_f64(),
            HANG_GRACE_NS / 1_000_000_000
        )),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err("the kernel instance's host thread panicked (see the message above)".into())
        }
    }
}

/// The controller: starts the worker and the probes, waits for the end, stops the worker.
fn control(sh: &Arc<Shared>, work: Option<Box<dyn workloads::Atoms>>, specs: &[ProbeSpec], stop: Stop) -> i64 {
    let start = kernel::time::now_ns();
    let deadline = match stop {
        Stop::After(ns) => start + ns,
        Stop::Loops(_) => u64::MAX,
    };
    let worker = work.map(|mut w| {
        let s = sh.clone();
        spawn(TaskBuilder::new("lab-worker"), move || worker(&s, &mut *w))
    });
    let probes: Vec<_> = specs
        .iter()
        .enumerate()
        .map(|(i, &spec)| {
            let s = sh.clone();
            let name = format!("lab-probe{i}");
            spawn(TaskBuilder::new(&name).fifo(spec.prio), move || probe(&s, i, spec, start, deadline, stop))
        })
        .collect();
    if let Stop::After(_) = stop {
        kernel::time::sleep_until(deadline);
    }
    let mut ok = probes.iter().all(|p| p.join().is_ok());
    sh.stop.store(true, Ordering::Release);
    if let Some(w) = worker {
        ok &= w.join().is_ok();
    }
    if ok {
        0
    } else {
        -1
    }
}

/// The worker: opens the workload, makes system calls of it until told to stop (read between
/// calls), closes it.
fn worker(sh: &Shared, w: &mut dyn workloads::Atoms) -> i64 {
    if let Err(e) = w.open() {
        let _ = sh.error.set(e);
        return -1;
    }
    let start = kernel::time::now_ns();
    let mut units = 0;
    while !sh.stop.load(Ordering::Acquire) {
        units += workloads::kernel_call(w);
    }
    sh.ns.store(kernel::time::now_ns() - start, Ordering::Release);
    sh.units.store(units, Ordering::Release);
    match w.close() {
        Ok(()) => 0,
        Err(e) => {
            let _ = sh.error.set(e);
            -1
        }
    }
}

/// The cyclictest loop on absolute deadlines. Each sample also notes whether the host took the
/// CPU thread away during its period (the worker and the probe share that thread).
fn probe(sh: &Shared, i: usize, spec: ProbeSpec, start: u64, deadline: u64, stop: Stop) -> i64 {
    let mut h = LatencyHist::new();
    let mut next = start;
    loop {
        next += spec.interval_ns;
        if next > deadline || matches!(stop, Stop::Loops(n) if h.count() >= n) {
            break;
        }
        let host = hostlab::sched::involuntary_switches();
        kernel::time::sleep_until(next);
        let late = kernel::time::now_ns().saturating_sub(next);
        h.record_sample(late, hostlab::sched::involuntary_switches() != host);
    }
    sh.hists.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(h);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that never ends is reported as hung within its limit, not waited for forever.
    #[test]
    fn a_hung_instance_is_an_error_not_a_hang() {
        let limit = std::time::Duration::from_millis(500);
        let e = run_watched(Config::default(), limit, || {
            let wq = kernel::WaitQueue::new();
            wq.wait_event(|| false); // never woken: the instance hangs
            0
        })
        .unwrap_err();
        assert!(e.contains("did not finish within 0 s") && e.contains("hung"), "{e}");
    }

    #[test]
    fn the_hang_limit_follows_the_runs_length() {
        let p = [ProbeSpec { prio: 80, interval_ns: 1_000_000 }];
        let grace = std::time::Duration::from_nanos(HANG_GRACE_NS);
        assert_eq!(hang_limit(Stop::After(2_000_000_000), &p), grace + std::time::Duration::from_secs(4));
        assert_eq!(hang_limit(Stop::Loops(1000), &p), grace + std::time::Duration::from_secs(2));
    }
}
