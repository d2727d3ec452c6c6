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

use crate::cross::{CrossProbe, CPUS};
use crate::measure::{
    cross_spec, layout, workers_for, Breakdown, CpuPolicy, CrossOut, Placement, ProbeSpec, RunOut, Stop, WorkerOut,
    CONTROL_PRIO,
};
use crate::stats::LatencyHist;
use crate::watch::{hang_limit, run_watched};
use kernel::{spawn, BhMode, Config, PreemptModel, TaskBuilder, WaitQueue};
use services::workloads::{self, Workload};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Shared by the host and the tasks of one instance. Each task writes its result once, into a
/// slot of its own (a `OnceLock`: no task ever waits on a host lock, which would block its CPU's
/// thread and with it whatever task held the lock on that CPU), and the host reads the slots
/// after the instance is gone.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// When the controller started the tasks (`now_ns`).
    spawned: AtomicU64,
    /// Tasks in place (a worker past its first call, a probe at its priority on its CPU).
    ready: AtomicUsize,
    /// When the run's clock started, once every task was in place (0 before).
    began: AtomicU64,
    /// When the run ends (`u64::MAX`: after a count of samples).
    deadline: AtomicU64,
    /// Where the probes wait for the clock to start.
    go: WaitQueue,
    /// One slot per worker, per probe (its histogram, where it ran, its wakeups' parts).
    workers: Vec<OnceLock<WorkerOut>>,
    probes: Vec<OnceLock<(LatencyHist, Placement, Breakdown)>>,
    cross: OnceLock<CrossOut>,
    policy: OnceLock<String>,
    /// Why the workload's `open` or `close` failed.
    error: OnceLock<String>,
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
    let shared =
        Arc::new(Shared { workers: slots(plan.workers.len()), probes: slots(plan.probes.len()), ..Shared::default() });
    let sh = shared.clone();
    let limit = hang_limit(stop, probes);
    let ncpus = config.cpus;
    let irq_host_cpu = config.pin.get(CPUS.0).copied();
    // A lab run never idles long (its probes wake every interval): report a CPU idle for
    // 10 s with tasks asleep (a hang) on stderr, unless the caller chose a timeout.
    let config =
        Config { hung_timeout_ms: if config.hung_timeout_ms == 0 { 10_000 } else { config.hung_timeout_ms }, ..config }
            .with_watchdog_defaults();
    let report = run_watched(config, limit, move || {
        // The cross-CPU probe's device before the policy (see CrossProbe::register).
        let cross = plan.cross.map(|spec| CrossProbe::register(CPUS.0, spec, irq_host_cpu));
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
    let mut breakdown = Breakdown::default();
    let (hists, probe_places): (Vec<LatencyHist>, Vec<Placement>) = shared
        .probes
        .iter()
        .map(|s| {
            let (h, p, b) = s.get().cloned().unwrap_or_default();
            breakdown.merge(&b);
            (h, p)
        })
        .unzip();
    let workers = shared.workers.iter().filter_map(|w| w.get().cloned()).collect();
    let out = RunOut {
        hists,
        probe_places,
        cross: shared.cross.get().cloned(),
        policy: shared.policy.get().cloned(),
        patch: report.patch,
        breakdown,
        ..RunOut::default()
    }
    .with_workers(workers);
    if let Some(w) = out.workers.iter().find(|w| w.units == 0).filter(|_| workload.is_some()) {
        let on = w.place.cpu.map_or_else(String::new, |c| format!(" on CPU {c}"));
        return Err(format!(
            "preempt={model}: the worker{on} did no work: in place {:.1} ms after it was started, it completed no further system call in {:.1} ms",
            w.started_ns as f64 / 1e6,
            w.ns as f64 / 1e6
        ));
    }
    if out.hists.iter().chain(out.cross.as_ref().map(|c| &c.hist)).any(|h| h.count() == 0) {
        return Err(format!("preempt={model}: a probe took no sample (lengthen the run)"));
    }
    Ok(out)
}

/// `n` empty write-once slots.
fn slots<T>(n: usize) -> Vec<OnceLock<T>> {
    (0..n).map(|_| OnceLock::new()).collect()
}

/// Applies `cpu` to every CPU thread of the instance (a task bound to each CPU runs on that
/// CPU's host thread) and says what they got: `CPU thread: ...`, once when all got the same.
fn apply_on_every_cpu(cpus: usize, cpu: CpuPolicy) -> String {
    let got: Arc<Vec<OnceLock<String>>> = Arc::new(slots(cpus));
    for c in 0..cpus {
        let g = got.clone();
        let t = spawn(TaskBuilder::new("lab-policy").fifo(CONTROL_PRIO).cpus(1 << c), move || {
            let _ = g[c].set(cpu.apply());
            0
        });
        let _ = t.join();
    }
    let got: Vec<String> = got.iter().map(|s| s.get().cloned().unwrap_or_default()).collect();
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

/// The controller: starts the workers and the probes, starts the run's clock once they are
/// all in place ([`crate::measure::READY_LIMIT_NS`] at most), waits for the end, stops the
/// workers.
fn control(sh: &Arc<Shared>, plan: Plan, cross: Option<CrossProbe>) -> i64 {
    sh.spawned.store(kernel::time::now_ns(), Ordering::Release);
    let stop = plan.stop;
    let workers: Vec<_> = plan
        .workers
        .into_iter()
        .enumerate()
        .map(|(i, (cpu, mut w))| {
            let s = sh.clone();
            spawn(on(TaskBuilder::new("lab-worker"), cpu), move || worker(&s, i, cpu, &mut *w))
        })
        .collect();
    let mut probes: Vec<_> = plan
        .probes
        .iter()
        .enumerate()
        .map(|(i, &(cpu, spec))| {
            let s = sh.clone();
            let name = format!("lab-probe{i}");
            let t = on(TaskBuilder::new(&name).fifo(spec.prio).timerlat(), cpu);
            spawn(t, move || probe(&s, i, cpu, spec, stop))
        })
        .collect();
    probes.extend(cross.map(|x| {
        let s = sh.clone();
        let (prio, cpu) = (x.spec().prio, CPUS.1);
        spawn(TaskBuilder::new("lab-cross").fifo(prio).cpus(1 << cpu), move || {
            let (start, deadline) = wait_for_start(&s);
            let _ = s.cross.set(x.run(start, deadline, stop));
            0
        })
    }));
    let deadline = start_clock(sh, workers.len() + probes.len(), stop);
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

/// Waits until `tasks` are in place (at most [`crate::measure::READY_LIMIT_NS`]), then starts the
/// run's clock and wakes the probes; the run's deadline.
fn start_clock(sh: &Shared, tasks: usize, stop: Stop) -> u64 {
    let limit = kernel::time::now_ns() + crate::measure::READY_LIMIT_NS;
    while sh.ready.load(Ordering::Acquire) < tasks && kernel::time::now_ns() < limit {
        kernel::time::sleep_ns(100_000);
    }
    let start = kernel::time::now_ns();
    let deadline = match stop {
        Stop::After(ns) => start + ns,
        Stop::Loops(_) => u64::MAX,
    };
    sh.deadline.store(deadline, Ordering::Release);
    sh.began.store(start, Ordering::Release);
    sh.go.wake_up();
    deadline
}

/// A probe's side of [`start_clock`]: says it is in place, sleeps until the clock starts; the
/// run's start and deadline.
fn wait_for_start(sh: &Shared) -> (u64, u64) {
    sh.ready.fetch_add(1, Ordering::AcqRel);
    sh.go.wait_event(|| sh.began.load(Ordering::Acquire) != 0);
    (sh.began.load(Ordering::Acquire), sh.deadline.load(Ordering::Acquire))
}

/// A worker: opens the workload, makes one call of it (its first touch of memory, not
/// counted) and says it is in place, then makes system calls of it until told to stop (read
/// between calls), noting the CPU it ran each on, and closes it.
fn worker(sh: &Shared, i: usize, cpu: Option<usize>, w: &mut dyn workloads::Atoms) -> i64 {
    if let Err(e) = w.open() {
        let _ = sh.error.set(e);
        sh.ready.fetch_add(1, Ordering::AcqRel);
        return -1;
    }
    let _ = workloads::kernel_call(w);
    sh.ready.fetch_add(1, Ordering::AcqRel);
    let mut place = Placement { cpu, seen: 0 };
    let start = kernel::time::now_ns();
    let mut units = 0;
    while !sh.stop.load(Ordering::Acquire) {
        units += workloads::kernel_call(w);
        place.saw(kernel::raw_smp_processor_id());
    }
    let ns = kernel::time::now_ns() - start;
    let started_ns = start.saturating_sub(sh.spawned.load(Ordering::Acquire));
    let _ = sh.workers[i].set(WorkerOut { units, ns, place, started_ns });
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
fn probe(sh: &Shared, i: usize, cpu: Option<usize>, spec: ProbeSpec, stop: Stop) -> i64 {
    let (start, deadline) = wait_for_start(sh);
    let mut h = LatencyHist::new();
    let mut parts = Breakdown::default();
    let mut place = Placement { cpu, seen: 0 };
    let mut next = start;
    loop {
        next += spec.interval_ns;
        if next > deadline || matches!(stop, Stop::Loops(n) if h.count() >= n) {
            break;
        }
        let host = hostlab::sched::involuntary_switches();
        kernel::time::sleep_until(next);
        let now = kernel::time::now_ns();
        let late = now.saturating_sub(next);
        h.record_sample(late, hostlab::sched::involuntary_switches() != host);
        if let Some(p) = kernel::time::wakeup_parts(next, now) {
            parts.record(p);
        }
        place.saw(kernel::raw_smp_processor_id());
    }
    let _ = sh.probes[i].set((h, place, parts));
    0
}
