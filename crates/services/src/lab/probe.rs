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
use super::watch::{hang_limit, run_watched};
use super::workloads::{self, Workload};
use kernel::{spawn, BhMode, Config, PreemptModel, TaskBuilder};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Where a task (a worker, a probe, an interrupt handler) of a run was bound, and every CPU it
/// was seen running on (read by the task itself after each call or sample).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The CPU it was bound to; `None` when nothing bound it (the tokio and Go peers).
    pub cpu: Option<usize>,
    /// The CPUs it was seen on: bit `n` = CPU `n` (0: it did not say).
    pub seen: u64,
}

impl Placement {
    /// Bound to `cpu`, not seen yet.
    pub fn bound(cpu: usize) -> Placement {
        Placement { cpu: Some(cpu), seen: 0 }
    }

    /// Notes that the task ran on `cpu` (CPUs past 63 are not recorded).
    pub fn saw(&mut self, cpu: usize) {
        self.seen |= 1u64.checked_shl(cpu as u32).unwrap_or(0);
    }

    /// The CPUs it was seen on, ascending.
    pub fn seen_cpus(&self) -> Vec<usize> {
        (0..64).filter(|c| self.seen & (1 << c) != 0).collect()
    }
}

/// One worker's figures: units it completed, over its own wall time, and where it ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerOut {
    pub units: u64,
    pub ns: u64,
    pub place: Placement,
    /// When it made its first call, in ns after the run began (0 where not measured).
    pub started_ns: u64,
}

/// The cross-CPU probe's figures: an interrupt on one CPU wakes an RT task bound to another.
#[derive(Clone, Debug)]
pub struct CrossOut {
    /// The RT task's priority and period.
    pub spec: ProbeSpec,
    /// Where the interrupt's handler ran (it is registered on one CPU).
    pub irq: Placement,
    /// Where the RT task ran.
    pub rt: Placement,
    /// Its lateness: from the deadline the interrupt was asked for to the RT task running.
    pub hist: LatencyHist,
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct RunOut {
    /// Workload units completed, all workers together.
    pub units: u64,
    /// The longest worker's wall time, first call to last.
    pub ns: u64,
    /// Each worker's figures (empty when the subject reports only the total).
    pub workers: Vec<WorkerOut>,
    /// One histogram per probe, in probe order (on several CPUs: CPU 0's probes, then CPU 1's,
    /// see [`layout`]).
    pub hists: Vec<LatencyHist>,
    /// Where each probe ran, in probe order (empty when the subject cannot say).
    pub probe_places: Vec<Placement>,
    /// The cross-CPU probe (on several CPUs; `None` on one, and for subjects without it).
    pub cross: Option<CrossOut>,
    /// The host policy the run's CPU threads (or the peer's probes) got, when one was asked for.
    pub policy: Option<String>,
    /// The patch models' counters of the run (zero under other models and for peers).
    pub patch: kernel::model::patch::PatchStatsSnapshot,
}

impl RunOut {
    /// Units per second: each worker's units over its own wall time, summed over the workers
    /// (the total over the wall time when there are no per-worker figures; 0 without work).
    pub fn units_per_s(&self) -> f64 {
        let rate = |units: u64, ns: u64| if ns == 0 { 0.0 } else { units as f64 * 1e9 / ns as f64 };
        if self.workers.is_empty() {
            rate(self.units, self.ns)
        } else {
            self.workers.iter().map(|w| rate(w.units, w.ns)).sum()
        }
    }

    /// Fills `units` and `ns` from `workers`.
    pub(crate) fn with_workers(mut self, workers: Vec<WorkerOut>) -> RunOut {
        self.units = workers.iter().map(|w| w.units).sum();
        self.ns = workers.iter().map(|w| w.ns).max().unwrap_or(0);
        self.workers = workers;
        self
    }
}

/// The probes of a run on `cpus` CPUs: each of `specs` on every CPU, CPU 0's first; probe `i`
/// of CPU `c` is at index `c * specs.len() + i`.
pub fn layout(specs: &[ProbeSpec], cpus: usize) -> Vec<(usize, ProbeSpec)> {
    (0..cpus).flat_map(|c| specs.iter().map(move |&s| (c, s))).collect()
}

/// Workers a run of `w` on `cpus` CPUs has: one per CPU, but one in all for a workload that
/// runs through bottom halves (`packet`: a kernel has one packet device, one receive queue).
pub fn workers_for(w: Workload, cpus: usize) -> usize {
    if w.info().bottom_half {
        1
    } else {
        cpus
    }
}

/// The cross-CPU probe of a run with `specs` on `cpus` CPUs: none on one CPU or without
/// probes; else at the first probe's priority, every [`CROSS_PERIOD_FACTOR`] of its periods.
pub fn cross_spec(specs: &[ProbeSpec], cpus: usize) -> Option<ProbeSpec> {
    let first = specs.first().filter(|_| cpus > 1)?;
    Some(ProbeSpec { prio: first.prio, interval_ns: first.interval_ns * CROSS_PERIOD_FACTOR })
}

/// The cross-CPU probe's period in periods of the first probe: its interrupt comes from a host
/// thread of its own, woken at each deadline, and its wakeup crosses CPUs (two CPU threads
/// are involved): at a quarter of the first probe's rate it adds a fifth to the probes' load.
pub const CROSS_PERIOD_FACTOR: u64 = 4;

/// Shared by the host and the tasks of one instance. The locks are taken once per task, as it
/// exits, and read after the instance is gone.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// When the controller started the run (`now_ns`).
    began: std::sync::atomic::AtomicU64,
    workers: Mutex<Vec<WorkerOut>>,
    hists: Mutex<Vec<Option<(LatencyHist, Placement)>>>,
    cross: Mutex<Option<CrossOut>>,
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
/// `stop`, its CPU threads scheduled on the host as `cpu`: one worker and the probes as given,
/// placed by the scheduler (`atomkernel latency`).
pub fn run_kernel(
    model: PreemptModel,
    cpus: usize,
    workload: Option<Workload>,
    probes: &[ProbeSpec],
    stop: Stop,
    cpu: CpuPolicy,
) -> Result<RunOut, String> {
    let config = Config { preempt: model, cpus, ..Config::default() };
    run(config, workload, probes, stop, cpu, false)
}

/// The lab's run on an instance booted with `config` (its `preempt`, `bh`, `bh_prio`, `cpus`):
/// one worker bound to each CPU ([`workers_for`]), each of `probes` on every CPU ([`layout`]),
/// and on several CPUs the cross-CPU probe ([`cross_spec`]).
pub fn run_instance(
    config: Config,
    workload: Option<Workload>,
    probes: &[ProbeSpec],
    stop: Stop,
    cpu: CpuPolicy,
) -> Result<RunOut, String> {
    run(config, workload, probes, stop, cpu, true)
}

/// What the controller starts: the workers (bound to their CPU when `bound`), the probes with
/// their CPU, the cross-CPU probe.
struct Plan {
    workers: Vec<(Option<usize>, Box<dyn workloads::Atoms>)>,
    probes: Vec<(Option<usize>, ProbeSpec)>,
    cross: Option<ProbeSpec>,
    stop: Stop,
}

fn plan(config: &Config, workload: Option<Workload>, probes: &[ProbeSpec], stop: Stop, spread: bool) -> Plan {
    if !spread {
        let workers = workload.map(|w| (None, w.make())).into_iter().collect();
        return Plan { workers, probes: probes.iter().map(|&p| (None, p)).collect(), cross: None, stop };
    }
    let workers =
        workload.map(|w| (0..workers_for(w, config.cpus)).map(|c| (Some(c), w.make())).collect()).unwrap_or_default();
    let cross = cross_spec(probes, config.cpus);
    let probes = layout(probes, config.cpus).into_iter().map(|(c, p)| (Some(c), p)).collect();
    Plan { workers, probes, cross, stop }
}

fn run(
    config: Config,
    workload: Option<Workload>,
    probes: &[ProbeSpec],
    stop: Stop,
    cpu: CpuPolicy,
    spread: bool,
) -> Result<RunOut, String> {
    let model = if config.bh == BhMode::Classic {
        format!("{}", config.preempt)
    } else {
        format!("{} bh={} bh_prio={}", config.preempt, config.bh, config.bh_prio)
    };
    let plan = plan(&config, workload, probes, stop, spread);
    let shared = Arc::new(Shared { hists: Mutex::new(vec![None; plan.probes.len()]), ..Shared::default() });
    let sh = shared.clone();
    let limit = hang_limit(stop, probes);
    let ncpus = config.cpus;
    // A lab run never idles long (its probes wake every interval): report a CPU idle for
    // 10 s with tasks asleep (a hang) on stderr, unless the caller chose a timeout.
    let config =
        Config { hung_timeout_ms: if config.hung_timeout_ms == 0 { 10_000 } else { config.hung_timeout_ms }, ..config }
            .with_watchdog_defaults();
    let report = run_watched(config, limit, move || {
        // The cross-CPU probe's device before the policy (see CrossProbe::register).
        let cross = plan.cross.map(|spec| super::cross::CrossProbe::register(super::cross::CPUS.0, spec));
        let _ = sh.policy.set(apply_on_every_cpu(ncpus, cpu));
        spawn(TaskBuilder::new("lab-control").fifo(CONTROL_PRIO), move || control(&sh, plan, cross))
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
    let (hists, probe_places): (Vec<LatencyHist>, Vec<Placement>) =
        lock(&shared.hists).drain(..).map(Option::unwrap_or_default).unzip();
    let workers = std::mem::take(&mut *lock(&shared.workers));
    let out = RunOut {
        hists,
        probe_places,
        cross: lock(&shared.cross).take(),
        policy: shared.policy.get().cloned(),
        patch: report.patch,
        ..RunOut::default()
    }
    .with_workers(workers);
    if let Some(w) = out.workers.iter().find(|w| w.units == 0).filter(|_| workload.is_some()) {
        let on = w.place.cpu.map_or_else(String::new, |c| format!(" on CPU {c}"));
        return Err(format!(
            "preempt={model}: the worker{on} did no work: it began {:.1} ms into the run and completed no system call in {:.1} ms",
            w.started_ns as f64 / 1e6,
            w.ns as f64 / 1e6
        ));
    }
    if out.hists.iter().chain(out.cross.as_ref().map(|c| &c.hist)).any(|h| h.count() == 0) {
        return Err(format!("preempt={model}: a probe took no sample (lengthen the run)"));
    }
    Ok(out)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applies `cpu` to every CPU thread of the instance (a task bound to each CPU runs on that
/// CPU's host thread) and says what they got: `CPU thread: ...`, once when all got the same.
fn apply_on_every_cpu(cpus: usize, cpu: CpuPolicy) -> String {
    let got = Arc::new(Mutex::new(vec![String::new(); cpus]));
    for c in 0..cpus {
        let g = got.clone();
        let t = spawn(TaskBuilder::new("lab-policy").fifo(CONTROL_PRIO).cpus(1 << c), move || {
            lock(&g)[c] = cpu.apply();
            0
        });
        let _ = t.join();
    }
    let got = lock(&got).clone();
    if got.windows(2).all(|w| w[0] == w[1]) {
        let each = if cpus > 1 { format!(" (each of {cpus})") } else { String::new() };
        format!("CPU thread: {}{each}", got[0])
    } else {
        let each: Vec<String> = got.iter().enumerate().map(|(c, p)| format!("CPU {c}: {p}")).collect();
        format!("CPU threads: {}", each.join("; "))
    }
}

/// A task builder bound to `cpu` when there is one.
fn on(b: TaskBuilder, cpu: Option<usize>) -> TaskBuilder {
    match cpu {
        Some(c) => b.cpus(1 << c),
        None => b,
    }
}

/// The controller: starts the workers and the probes, waits for the end, stops the workers.
fn control(sh: &Arc<Shared>, plan: Plan, cross: Option<super::cross::CrossProbe>) -> i64 {
    let start = kernel::time::now_ns();
    sh.began.store(start, Ordering::Release);
    let stop = plan.stop;
    let deadline = match stop {
        Stop::After(ns) => start + ns,
        Stop::Loops(_) => u64::MAX,
    };
    let workers: Vec<_> = plan
        .workers
        .into_iter()
        .map(|(cpu, mut w)| {
            let s = sh.clone();
            spawn(on(TaskBuilder::new("lab-worker"), cpu), move || worker(&s, cpu, &mut *w))
        })
        .collect();
    let mut probes: Vec<_> = plan
        .probes
        .iter()
        .enumerate()
        .map(|(i, &(cpu, spec))| {
            let s = sh.clone();
            let name = format!("lab-probe{i}");
            let t = on(TaskBuilder::new(&name).fifo(spec.prio), cpu);
            spawn(t, move || probe(&s, i, cpu, spec, start, deadline, stop))
        })
        .collect();
    probes.extend(cross.map(|x| {
        let s = sh.clone();
        let (prio, cpu) = (x.spec().prio, super::cross::CPUS.1);
        spawn(TaskBuilder::new("lab-cross").fifo(prio).cpus(1 << cpu), move || {
            *lock(&s.cross) = Some(x.run(start, deadline, stop));
            0
        })
    }));
    if let Stop::After(_) = stop {
        kernel::time::sleep_until(deadline);
    }
    let mut ok = probes.iter().all(|p| p.join().is_ok());
    sh.stop.store(true, Ordering::Release);
    for w in workers {
        ok &= w.join().is_ok();
    }
    if ok {
        0
    } else {
        -1
    }
}

/// A worker: opens the workload, makes system calls of it until told to stop (read between
/// calls), noting the CPU it ran each on, closes it.
fn worker(sh: &Shared, cpu: Option<usize>, w: &mut dyn workloads::Atoms) -> i64 {
    if let Err(e) = w.open() {
        let _ = sh.error.set(e);
        return -1;
    }
    let mut place = Placement { cpu, seen: 0 };
    let start = kernel::time::now_ns();
    let mut units = 0;
    while !sh.stop.load(Ordering::Acquire) {
        units += workloads::kernel_call(w);
        place.saw(kernel::raw_smp_processor_id());
    }
    let ns = kernel::time::now_ns() - start;
    let started_ns = start.saturating_sub(sh.began.load(Ordering::Acquire));
    lock(&sh.workers).push(WorkerOut { units, ns, place, started_ns });
    match w.close() {
        Ok(()) => 0,
        Err(e) => {
            let _ = sh.error.set(e);
            -1
        }
    }
}

/// The cyclictest loop on absolute deadlines. Each sample also notes whether the host took the
/// CPU thread away during its period (the worker and the probe share that thread), and the
/// CPU the probe woke on.
fn probe(sh: &Shared, i: usize, cpu: Option<usize>, spec: ProbeSpec, start: u64, deadline: u64, stop: Stop) -> i64 {
    let mut h = LatencyHist::new();
    let mut place = Placement { cpu, seen: 0 };
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
        place.saw(kernel::raw_smp_processor_id());
    }
    lock(&sh.hists)[i] = Some((h, place));
    0
}
