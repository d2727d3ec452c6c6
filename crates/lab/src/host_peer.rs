//! The host peer, `peer:host-fifo`: the workload on hog host threads beside SCHED_FIFO probe
//! threads, i.e. the latency Linux itself gives.
//!
//! **Mechanism.** The peer has as many "CPUs" as the kernel instances it is compared with:
//! peer CPU `c` is a host CPU ([`host_cpus`]) with a hog thread pinned to it, running the
//! workload's atoms back to back at the kernel's CPU-thread policy, and each probe pinned
//! beside it at SCHED_FIFO (or the best policy the host allows, which the result names), doing
//! cyclictest's loop with `clock_nanosleep(TIMER_ABSTIME)`. The host kernel preempts the hog
//! whenever a probe wakes. On two or more CPUs a cross-CPU probe does what the kernel's does
//! (see [`crate::cross`]) the host's way: a SCHED_FIFO waker thread on peer CPU 0, woken by its
//! host timer at the deadline, wakes (a futex, `Thread::unpark`) a SCHED_FIFO probe thread on
//! peer CPU 1, which records how late it runs after the deadline.
//!
//! **Invariant.** Every thread notes the host CPU it ran on (`sched_getcpu`) after each call
//! or sample, so a result shows where the threads really were; they leave with their host
//! policy restored.

use crate::measure::{self, CpuPolicy, CrossOut, Placement, ProbeSpec, RunOut, WorkerOut};
use crate::stats::LatencyHist;
use hostlab::sched;
use services::workloads::{self, Atoms, Workload};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The host CPUs of the peer's `n` CPUs: with one, the last host CPU this process may use
/// (beside whatever else runs on the first); with more, the allowed CPUs in order, round
/// robin when there are fewer host CPUs than `n`.
pub fn host_cpus(n: usize) -> Vec<usize> {
    let all = sched::allowed_cpus();
    if n == 1 {
        return vec![*all.last().unwrap_or(&0)];
    }
    (0..n).map(|c| all[c % all.len()]).collect()
}

/// Pins the calling thread to `cpu`; the placement it gets (bound or not).
fn pin(cpu: usize) -> Placement {
    Placement { cpu: sched::pin_current_thread(cpu).ok().map(|_| cpu), seen: 0 }
}

fn saw_host_cpu(p: &mut Placement) {
    if let Some(c) = sched::current_cpu() {
        p.saw(c);
    }
}

/// Runs `workload` (if any) on `n` hog threads and each of `probes` beside each, for `ns`
/// nanoseconds; the figures and how the host scheduled them.
pub(crate) fn run(
    workload: Option<Workload>,
    probes: &[ProbeSpec],
    ns: u64,
    cpu_policy: CpuPolicy,
    n: usize,
) -> (RunOut, String) {
    let cpus = host_cpus(n);
    let start = kernel::time::now_ns();
    let deadline = start + ns;
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = workload
        .map(|w| {
            let hog = |&cpu: &usize| {
                let (stop, mut atoms) = (stop.clone(), w.make());
                std::thread::spawn(move || {
                    let place = pin(cpu);
                    let policy = cpu_policy.apply();
                    (host_worker(&stop, &mut *atoms, place), policy)
                })
            };
            cpus.iter().take(measure::workers_for(w, n)).map(hog).collect()
        })
        .unwrap_or_default();
    let threads: Vec<_> = measure::layout(probes, n)
        .into_iter()
        .map(|(c, spec)| {
            let cpu = cpus[c];
            std::thread::spawn(move || {
                let place = pin(cpu);
                let policy = sched::set_best_rt_policy(spec.prio);
                let (h, place) = host_probe(spec, start, deadline, place);
                sched::set_normal_policy();
                let on = if place.cpu.is_some() { format!("host CPU {cpu}") } else { "unpinned".into() };
                (h, place, format!("{policy}, {on}"))
            })
        })
        .collect();
    let cross = measure::cross_spec(probes, n)
        .filter(|_| cpus[0] != cpus[1])
        .map(|spec| std::thread::spawn(move || cross_probe(spec, (cpus[0], cpus[1]), start, deadline)));
    sched::sleep_until_ns(deadline);
    let results: Vec<(LatencyHist, Placement, String)> =
        threads.into_iter().map(|t| t.join().expect("probe thread")).collect();
    let cross = cross.map(|t| t.join().expect("cross-CPU probe thread"));
    stop.store(true, Ordering::Release);
    let mut hog_policy = String::new();
    let mut workers = Vec::new();
    for h in hogs {
        let (w, policy) = h.join().expect("hog thread");
        workers.push(w);
        hog_policy = policy;
    }
    let probe_policy = results.first().map_or_else(|| "no probe".into(), |r| r.2.clone());
    let many = if results.len() > 1 { format!(" (and {} more)", results.len() - 1) } else { String::new() };
    let hogs = if workers.len() > 1 { format!("{} hogs", workers.len()) } else { "hog".into() };
    let policy = format!("probe: {probe_policy}{many}; {hogs}: {hog_policy}");
    let (hists, probe_places) = results.into_iter().map(|r| (r.0, r.1)).unzip();
    let out = RunOut { hists, probe_places, cross, ..RunOut::default() }.with_workers(workers);
    (out, policy)
}

/// A hog: calls until `stop`, one call at least, so that a hog the host started late (after
/// a short run's end, on a busy host) still has a rate, its units over its own time, not 0.
fn host_worker(stop: &AtomicBool, w: &mut dyn Atoms, mut place: Placement) -> WorkerOut {
    let start = kernel::time::now_ns();
    let mut units = 0;
    loop {
        units += workloads::host_call(w);
        saw_host_cpu(&mut place);
        if stop.load(Ordering::Acquire) {
            break;
        }
    }
    WorkerOut { units, ns: kernel::time::now_ns() - start, place, started_ns: 0 }
}

fn host_probe(spec: ProbeSpec, start: u64, deadline: u64, mut place: Placement) -> (LatencyHist, Placement) {
    let mut h = LatencyHist::new();
    let mut next = start;
    loop {
        next += spec.interval_ns;
        if next > deadline {
            return (h, place);
        }
        let host = sched::involuntary_switches();
        sched::sleep_until_ns(next);
        let late = kernel::time::now_ns().saturating_sub(next);
        h.record_sample(late, sched::involuntary_switches() != host);
        saw_host_cpu(&mut place);
    }
}

/// The cross-CPU probe on the host: this thread, pinned to `cpus.1` at SCHED_FIFO, is woken at
/// each deadline by a SCHED_FIFO waker thread pinned to `cpus.0`.
fn cross_probe(spec: ProbeSpec, cpus: (usize, usize), start: u64, deadline: u64) -> CrossOut {
    let mut rt = pin(cpus.1);
    let _ = sched::set_best_rt_policy(spec.prio);
    let fired = Arc::new(AtomicU64::new(0));
    let (f, me) = (fired.clone(), std::thread::current());
    let waker = std::thread::spawn(move || {
        let mut irq = pin(cpus.0);
        let _ = sched::set_best_rt_policy(spec.prio);
        let mut next = start;
        while next + spec.interval_ns <= deadline {
            next += spec.interval_ns;
            sched::sleep_until_ns(next);
            f.fetch_add(1, Ordering::AcqRel);
            me.unpark();
            saw_host_cpu(&mut irq);
        }
        sched::set_normal_policy();
        irq
    });
    let mut hist = LatencyHist::new();
    let (mut next, mut k) = (start, 0);
    while next + spec.interval_ns <= deadline {
        next += spec.interval_ns;
        k += 1;
        let host = sched::involuntary_switches();
        while fired.load(Ordering::Acquire) < k {
            std::thread::park();
        }
        let late = kernel::time::now_ns().saturating_sub(next);
        hist.record_sample(late, sched::involuntary_switches() != host);
        saw_host_cpu(&mut rt);
    }
    let irq = waker.join().expect("cross-CPU waker thread");
    sched::set_normal_policy();
    CrossOut { spec, irq, rt, hist }
}
