//! The bare-metal lab (`image.run=lab`): cyclictest's method under the lab's workloads, one
//! JSON row per workload in the hosted lab's shape, every latency in TSC cycles.
//!
//! **Mechanism.** [`configure`] reads the `image.` options before the core boots (a bad value is
//! a `{"boot_error": ...}` line naming the option and what to use, and the image exits before
//! any task runs) and keeps them in atomics; [`init`], the core's first task, prints
//! `{"test":"clock","tsc_khz":K}` and runs each workload in turn as `crates/lab` does on
//! `cpus=N` CPUs: a controller (SCHED_FIFO 99) starts one SCHED_NORMAL worker bound to each
//! CPU, making system calls of the workload's atoms (`services::workloads::kernel_call`, a
//! preemption point after every atom), and one probe bound to each CPU (SCHED_FIFO
//! [`PROBE_PRIO`]) that loops `next += interval; sleep_until(next); record(late)`. The run's
//! clock starts once every task is in place (each worker past its first call, each probe on
//! its CPU), as the hosted lab's does; it ends when every probe has its samples, then the
//! workers stop. A sample is `rdtsc() - clock::tsc_at(next)` taken as the probe runs again:
//! `tsc_at` is the TSC value at which `now_ns` reaches `next`, the deadline the core armed the
//! timer for, so the sample is the cycles from the deadline to the probe running (its timer's
//! interrupt, the wake-up, whatever held the CPU, the switch). Under QEMU's
//! `-icount shift=0,sleep=off` the calibration is exactly 1 GHz (`arch_metal::clock`), the TSC
//! counts instructions, `tsc_at(next)` is the TSC base plus `next`, and every figure is a count
//! of instructions, the same for the same build on every boot. Per probe: min, p50, p99, max
//! (nearest rank) and a log2 histogram (`[lower bound, count]`, non-empty buckets only).
//! On more than one CPU each worker executes `pause` between calls: a hint on hardware, and
//! under QEMU 7.2's `-icount` the point where its round-robin vCPU thread moves to the next
//! vCPU. That thread gives the running vCPU every instruction up to the next timer deadline,
//! vCPU 0 first after each, and moves on early only when the vCPU pauses, halts or writes a
//! timer that becomes the earliest deadline; a worker that never did held CPU 1 to its tick
//! handler, whose timer write ended its turn each time (docs/BAREMETAL.md).
//!
//! **Invariant.** Every probe takes exactly `image.samples` samples on its own CPU, and every
//! line is valid JSON; [`init`] returns 0 only if every probe did, every sample was taken on
//! the probe's CPU and every worker completed calls.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use arch_metal::{clock, cpu::rdtsc, kprintln};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use kernel::model::patch::PatchStatsSnapshot;
use kernel::{BhMode, PreemptModel, TaskBuilder, WaitQueue};
use services::workloads::{self, Workload};

/// The probes' SCHED_FIFO priority (the hosted lab's default `prio`).
const PROBE_PRIO: u8 = 80;
/// The controller's priority (the hosted lab's `CONTROL_PRIO`).
const CONTROL_PRIO: u8 = 99;
/// Samples per probe unless `image.samples=` says.
const SAMPLES_DEFAULT: u64 = 64;
const SAMPLES_MAX: u64 = 100_000;
/// The probes' period unless `image.interval_us=` says (the hosted lab's default).
const INTERVAL_US_DEFAULT: u64 = 250;
const INTERVAL_US_RANGE: (u64, u64) = (10, 1_000_000);
/// The longest the controller waits for the tasks to be in place (ns).
const READY_LIMIT_NS: u64 = 2_000_000_000;
/// The most workloads one boot runs.
const MAX_WORKLOADS: usize = 8;

static SAMPLES: AtomicU64 = AtomicU64::new(SAMPLES_DEFAULT);
static INTERVAL_NS: AtomicU64 = AtomicU64::new(INTERVAL_US_DEFAULT * 1000);
static CPUS: AtomicUsize = AtomicUsize::new(1);
/// `image.size=`, 0 for each workload's default.
static SIZE: AtomicUsize = AtomicUsize::new(0);
/// The chosen workloads' indices in `WORKLOADS`, in the order asked.
static CHOSEN: [AtomicU8; MAX_WORKLOADS] = [const { AtomicU8::new(0) }; MAX_WORKLOADS];
static CHOSEN_N: AtomicUsize = AtomicUsize::new(0);

/// Reads and checks the lab's options (`image.samples`, `image.interval_us`, `image.workloads`,
/// `image.size`) and takes the core's `cpus=` from its parsed `config`; a bad one ends the boot
/// with a `boot_error` line, before any task runs.
pub(crate) fn configure(cmdline: &str, config: &kernel::Config) {
    crate::options::or_refuse(parse(cmdline, config));
}

fn parse(cmdline: &str, config: &kernel::Config) -> Result<(), String> {
    let opt = |k: &'static str| arch_metal::boot::cmdline_value(cmdline, k);
    let num = |k: &'static str, lo: u64, hi: u64, default: u64| crate::options::number(cmdline, k, lo, hi, default);
    let samples = num("image.samples", 1, SAMPLES_MAX, SAMPLES_DEFAULT)?;
    let interval_us = num("image.interval_us", INTERVAL_US_RANGE.0, INTERVAL_US_RANGE.1, INTERVAL_US_DEFAULT)?;
    let size = num("image.size", 1, usize::MAX as u64, 0)? as usize;
    let chosen: Vec<Workload> = match opt("image.workloads") {
        None => Workload::all(),
        Some(list) => list
            .split(',')
            .map(Workload::named)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("image.workloads={list}: {e}"))?,
    };
    if chosen.is_empty() || chosen.len() > MAX_WORKLOADS {
        return Err(format!("image.workloads: name 1..={MAX_WORKLOADS} workloads"));
    }
    for w in &chosen {
        if size != 0 {
            w.with_size(size).map_err(|e| format!("image.size={size}: {e}"))?;
        }
    }
    let cpus = config.cpus;
    SAMPLES.store(samples, Ordering::Relaxed);
    INTERVAL_NS.store(interval_us * 1000, Ordering::Relaxed);
    SIZE.store(size, Ordering::Relaxed);
    CPUS.store(cpus, Ordering::Relaxed);
    for (slot, w) in CHOSEN.iter().zip(&chosen) {
        slot.store(w.index as u8, Ordering::Relaxed);
    }
    CHOSEN_N.store(chosen.len(), Ordering::Relaxed);
    Ok(())
}

/// The lab's init (see the module's description): the clock line, then one row per workload;
/// the failed runs.
pub(crate) fn init(model: PreemptModel, _bh: BhMode) -> i64 {
    kprintln!("{{\"test\":\"clock\",\"tsc_khz\":{}}}", clock::tsc_hz() / 1000);
    let size = SIZE.load(Ordering::Relaxed);
    let mut failed = 0;
    for slot in &CHOSEN[..CHOSEN_N.load(Ordering::Relaxed)] {
        let w = Workload { index: usize::from(slot.load(Ordering::Relaxed)), size: 0 };
        let w = Workload { size: if size == 0 { w.info().size_default } else { size }, ..w };
        let run = Arc::new(Run::new(CPUS.load(Ordering::Relaxed), SAMPLES.load(Ordering::Relaxed)));
        let r = run.clone();
        let ok = kernel::spawn(TaskBuilder::new("lab-control").fifo(CONTROL_PRIO), move || control(&r, w))
            .join()
            .is_ok_and(|v| v == 0);
        failed += i64::from(!(ok && run.report(model, w)));
    }
    failed
}

/// One workload's run, shared by its tasks: each writes only its own slots.
struct Run {
    cpus: usize,
    interval_ns: u64,
    stop: AtomicBool,
    /// Tasks in place.
    ready: AtomicUsize,
    /// The run's start (`now_ns`, 0 before) and its TSC at the start and the end.
    began: AtomicU64,
    tsc: [AtomicU64; 2],
    go: WaitQueue,
    /// Per worker: calls, units.
    workers: Vec<[AtomicU64; 2]>,
    /// Per probe: its sample slots (cycles), the samples it took, those it took off its CPU.
    lat: Vec<Vec<AtomicU64>>,
    taken: Vec<AtomicU64>,
    off_cpu: Vec<AtomicU64>,
    /// The patch models' counters over the run (all zero under the other models).
    patch: kernel::sync::IrqSpinLock<Option<PatchStatsSnapshot>>,
}

impl Run {
    fn new(cpus: usize, samples: u64) -> Run {
        Run {
            cpus,
            interval_ns: INTERVAL_NS.load(Ordering::Relaxed),
            stop: AtomicBool::new(false),
            ready: AtomicUsize::new(0),
            began: AtomicU64::new(0),
            tsc: [const { AtomicU64::new(0) }; 2],
            go: WaitQueue::new(),
            workers: (0..cpus).map(|_| [const { AtomicU64::new(0) }; 2]).collect(),
            lat: (0..cpus).map(|_| (0..samples).map(|_| AtomicU64::new(0)).collect()).collect(),
            taken: (0..cpus).map(|_| AtomicU64::new(0)).collect(),
            off_cpu: (0..cpus).map(|_| AtomicU64::new(0)).collect(),
            patch: kernel::sync::IrqSpinLock::new(None),
        }
    }

    /// Prints the workload's row; whether the run held (samples on their CPUs, workers working).
    fn report(&self, model: PreemptModel, w: Workload) -> bool {
        let sum = |i: usize| self.workers.iter().map(|c| c[i].load(Ordering::Acquire)).sum::<u64>();
        let (calls, units) = (sum(0), sum(1));
        let workers: Vec<String> = (self.workers.iter().enumerate())
            .map(|(c, w)| {
                format!(
                    "{{\"cpu\":{c},\"calls\":{},\"units\":{}}}",
                    w[0].load(Ordering::Acquire),
                    w[1].load(Ordering::Acquire)
                )
            })
            .collect();
        let probes: Vec<String> = (0..self.cpus).map(|c| self.probe_json(c)).collect();
        kprintln!(
            "{{\"test\":\"lab\",\"model\":\"{model}\",\"cpus\":{},\"workload\":\"{}\",\"size\":{},\"calls\":{calls},\"units\":{units},\
             \"elapsed_cycles\":{},\"workers\":[{}],\"probes\":[{}],\"patch\":{}}}",
            self.cpus,
            w.name(),
            w.size,
            self.tsc[1].load(Ordering::Acquire).saturating_sub(self.tsc[0].load(Ordering::Acquire)),
            workers.join(","),
            probes.join(","),
            self.patch_json()
        );
        let off = self.off_cpu.iter().map(|o| o.load(Ordering::Acquire)).sum::<u64>();
        let all_taken = self.taken.iter().zip(&self.lat).all(|(t, l)| t.load(Ordering::Acquire) == l.len() as u64);
        off == 0
            && all_taken
            && self.workers.iter().all(|c| c[0].load(Ordering::Acquire) > 0 && c[1].load(Ordering::Acquire) > 0)
    }

    /// The patch handler over the run: its events, their mean and longest time (ns:
    /// instructions under `-icount`), what they armed and walked.
    fn patch_json(&self) -> String {
        let s = self.patch.lock().unwrap_or_default();
        format!(
            "{{\"events\":{},\"handler_ns\":{},\"handler_max_ns\":{},\"sites_armed\":{},\"frames_walked\":{},\
             \"redirects\":{},\"fallbacks\":{}}}",
            s.events, s.arm_ns, s.arm_max_ns, s.sites_armed, s.frames_walked, s.redirects, s.fallbacks
        )
    }

    fn probe_json(&self, c: usize) -> String {
        let taken = self.taken[c].load(Ordering::Acquire) as usize;
        let mut s: Vec<u64> = self.lat[c].iter().take(taken).map(|v| v.load(Ordering::Acquire)).collect();
        s.sort_unstable();
        let [min, p50, p99, max] = [0, 50, 99, 100].map(|q| rank(&s, q));
        let hist: Vec<String> = log2_hist(&s).iter().map(|(lo, n)| format!("[{lo},{n}]")).collect();
        format!(
            "{{\"cpu\":{c},\"prio\":{PROBE_PRIO},\"interval_ns\":{},\"samples\":{},\"off_cpu\":{},\"min\":{min},\"p50\":{p50},\"p99\":{p99},\"max\":{max},\"hist\":[{}]}}",
            self.interval_ns,
            s.len(),
            self.off_cpu[c].load(Ordering::Acquire),
            hist.join(",")
        )
    }
}

/// The `q`th percentile of `sorted` by nearest rank (`q` = 0: the least), 0 when empty.
fn rank(sorted: &[u64], q: usize) -> u64 {
    let i = (sorted.len() * q).div_ceil(100).saturating_sub(1);
    sorted.get(i).copied().unwrap_or(0)
}

/// A log2 histogram of `sorted`: (bucket's lower bound, count), ascending, non-empty only; a
/// value `v > 0` counts in the bucket of `2^floor(log2 v)`, 0 in the bucket of 0.
fn log2_hist(sorted: &[u64]) -> Vec<(u64, u64)> {
    let mut h: Vec<(u64, u64)> = Vec::new();
    for &v in sorted {
        let lo = if v == 0 { 0 } else { 1 << v.ilog2() };
        match h.last_mut() {
            Some((l, n)) if *l == lo => *n += 1,
            _ => h.push((lo, 1)),
        }
    }
    h
}

/// The controller: starts the workers and the probes, starts the clock once they are in
/// place, waits for the probes, stops the workers; 0 if every task finished.
fn control(run: &Arc<Run>, w: Workload) -> i64 {
    let workers: Vec<_> = (0..run.cpus)
        .map(|c| {
            let r = run.clone();
            kernel::spawn(TaskBuilder::new("lab-worker").cpus(1 << c), move || worker(&r, c, w))
        })
        .collect();
    let probes: Vec<_> = (0..run.cpus)
        .map(|c| {
            let r = run.clone();
            kernel::spawn(TaskBuilder::new("lab-probe").fifo(PROBE_PRIO).cpus(1 << c), move || probe(&r, c))
        })
        .collect();
    let limit = kernel::time::now_ns() + READY_LIMIT_NS;
    while run.ready.load(Ordering::Acquire) < 2 * run.cpus && kernel::time::now_ns() < limit {
        kernel::time::sleep_ns(100_000);
    }
    kernel::model::patch::reset_patch_stats();
    run.tsc[0].store(rdtsc(), Ordering::Release);
    run.began.store(kernel::time::now_ns(), Ordering::Release);
    run.go.wake_up();
    let mut ok = probes.iter().all(|p| p.join() == Ok(0));
    run.tsc[1].store(rdtsc(), Ordering::Release);
    *run.patch.lock() = Some(kernel::model::patch::patch_stats());
    run.stop.store(true, Ordering::Release);
    for t in workers {
        ok &= t.join() == Ok(0);
    }
    if ok {
        0
    } else {
        -1
    }
}

/// A worker on CPU `c`: one call to touch its memory, then calls until told to stop.
fn worker(run: &Run, c: usize, w: Workload) -> i64 {
    let mut atoms = w.make();
    if let Err(e) = atoms.open() {
        kprintln!("{{\"bug\":\"lab worker: {}\"}}", crate::scenarios::escape(&e));
        run.ready.fetch_add(1, Ordering::AcqRel);
        return -1;
    }
    workloads::kernel_call(&mut *atoms);
    run.ready.fetch_add(1, Ordering::AcqRel);
    let (mut calls, mut units) = (0, 0);
    while !run.stop.load(Ordering::Acquire) {
        units += workloads::kernel_call(&mut *atoms);
        calls += 1;
        if run.cpus > 1 {
            // `pause` between calls: a hint on hardware; under QEMU's round-robin `-icount`
            // (7.2) the point where this vCPU leaves the emulator to the others, without
            // which a busy CPU 0 starves CPU 1 (see the module's description)
            core::hint::spin_loop();
        }
    }
    run.workers[c][0].store(calls, Ordering::Release);
    run.workers[c][1].store(units, Ordering::Release);
    i64::from(atoms.close().is_err())
}

/// The probe on CPU `c`: the cyclictest loop on absolute deadlines (see the module's
/// description), `run.samples` times.
fn probe(run: &Run, c: usize) -> i64 {
    run.ready.fetch_add(1, Ordering::AcqRel);
    run.go.wait_event(|| run.began.load(Ordering::Acquire) != 0);
    let mut next = run.began.load(Ordering::Acquire);
    for slot in &run.lat[c] {
        next += run.interval_ns;
        kernel::time::sleep_until(next);
        let late = rdtsc().saturating_sub(clock::tsc_at(next));
        slot.store(late, Ordering::Release);
        run.taken[c].fetch_add(1, Ordering::AcqRel);
        if kernel::raw_smp_processor_id() != c {
            run.off_cpu[c].fetch_add(1, Ordering::AcqRel);
        }
    }
    0
}
