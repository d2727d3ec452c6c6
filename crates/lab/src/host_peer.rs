//! The host peer, `peer:host-fifo`: the workload on hog host threads beside SCHED_FIFO probe
//! threads, i.e. the latency Linux itself gives; and the host's floor, the same probes beside
//! plain busy loops (`Load::Spin`).
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
//! The run's clock starts once every thread is in place (see [`measure::READY_LIMIT_NS`]): each
//! hog has made one call, each probe runs pinned at its policy (`Gate`).
//!
//! **Invariant.** Every thread notes the host CPU it ran on (`sched_getcpu`) after each call
//! or sample, so a result shows where the threads really were; they leave with their host
//! policy restored.

use crate::measure::{self, CpuPolicy, CrossOut, Placement, ProbeSpec, RunOut, WorkerOut};
use crate::stats::LatencyHist;
use hostlab::sched;
use services::workloads::{self, Atoms, Workload};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};

/// Where the peer's threads meet before the run's clock starts: each says it is in place, and
/// once all are, each gets the same start (taken by the first one through).
struct Gate {
    barrier: Barrier,
    start: OnceLock<u64>,
}

impl Gate {
    fn new(threads: usize) -> Arc<Gate> {
        Arc::new(Gate { barrier: Barrier::new(threads), start: OnceLock::new() })
    }

    /// Says the calling thread is in place; the run's start, once every thread is.
    fn ready(&self) -> u64 {
        self.barrier.wait();
        *self.start.get_or_init(kernel::time::now_ns)
    }
}

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

/// What the hog threads run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Load {
    /// No hog: the probes alone.
    Idle,
    /// The workload's atoms back to back (the host peer).
    Workload(Workload),
    /// A busy loop that makes no system call and touches no memory, one per CPU (the floor:
    /// what the host gives a SCHED_FIFO thread beside a thread that never yields).
    Spin,
}

impl From<Option<Workload>> for Load {
    fn from(w: Option<Workload>) -> Load {
        w.map_or(Load::Idle, Load::Workload)
    }
}

impl Load {
    /// Hog threads on `n` CPUs.
    fn hogs(self, n: usize) -> usize {
        match self {
            Load::Idle => 0,
            Load::Workload(w) => measure::workers_for(w, n),
            Load::Spin => n,
        }
    }
}

/// Runs `load` on `n` hog threads and each of `probes` beside each, for `ns` nanoseconds;
/// the figures and how the host scheduled them.
pub(crate) fn run(load: Load, probes: &[ProbeSpec], ns: u64, cpu_policy: CpuPolicy, n: usize) -> (RunOut, String) {
    let cpus = host_cpus(n);
    let specs = measure::layout(probes, n);
    let cross = measure::cross_spec(probes, n).filter(|_| cpus[0] != cpus[1]);
    let nhogs = load.hogs(n).min(cpus.len());
    let gate = Gate::new(nhogs + specs.len() + 2 * usize::from(cross.is_some()) + 1);
    let stop = Arc::new(AtomicBool::new(false));
    let hog = |&cpu: &usize| {
        let (stop, gate) = (stop.clone(), gate.clone());
        std::thread::spawn(move || {
            let place = pin(cpu);
            let policy = cpu_policy.apply();
            let out = match load {
                Load::Workload(w) => host_worker(&stop, &gate, &mut *w.make(), place),
                _ => spin(&stop, &gate, place),
            };
            (out, policy)
        })
    };
    let hogs: Vec<_> = cpus.iter().take(nhogs).map(hog).collect();
    let threads: Vec<_> = specs
        .into_iter()
        .map(|(c, spec)| {
            let (cpu, gate) = (cpus[c], gate.clone());
            std::thread::spawn(move || {
                let place = pin(cpu);
                let policy = sched::set_best_rt_policy(spec.prio);
                let start = gate.ready();
                let (h, place) = host_probe(spec, start, start + ns, place);
                sched::set_normal_policy();
                let on = if place.cpu.is_some() { format!("host CPU {cpu}") } else { "unpinned".into() };
                (h, place, format!("{policy}, {on}"))
            })
        })
        .collect();
    let cross = cross.map(|spec| {
        let gate = gate.clone();
        std::thread::spawn(move || cross_probe(spec, (cpus[0], cpus[1]), &gate, ns))
    });
    sched::sleep_until_ns(gate.ready() + ns);
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

/// A hog: one call (its first touch of memory, not counted), in place, then calls until
/// `stop`, one counted call at least, so that a hog always has a rate (its units over its
/// own time), never 0.
fn host_worker(stop: &AtomicBool, gate: &Gate, w: &mut dyn Atoms, mut place: Placement) -> WorkerOut {
    let _ = workloads::host_call(w);
    gate.ready();
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

/// A busy loop until `stop`, in place at once; its units are loop iterations. It notes its host
/// CPU when it starts, every 2^20 iterations and when it stops.
fn spin(stop: &AtomicBool, gate: &Gate, mut place: Placement) -> WorkerOut {
    saw_host_cpu(&mut place);
    gate.ready();
    let start = kernel::time::now_ns();
    let mut units = 0u64;
    while !stop.load(Ordering::Relaxed) {
        std::hint::spin_loop();
        units += 1;
        if units.is_multiple_of(1 << 20) {
            saw_host_cpu(&mut place);
        }
    }
    saw_host_cpu(&mut place);
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
/// each deadline by a SCHED_FIFO waker thread pinned to `cpus.0`, for `ns` from the run's start.
fn cross_probe(spec: ProbeSpec, cpus: (usize, usize), gate: &Arc<Gate>, ns: u64) -> CrossOut {
    let mut rt = pin(cpus.1);
    let _ = sched::set_best_rt_policy(spec.prio);
    let fired = Arc::new(AtomicU64::new(0));
    let (f, me, g) = (fired.clone(), std::thread::current(), gate.clone());
    let waker = std::thread::spawn(move || {
        let mut irq = pin(cpus.0);
        let _ = sched::set_best_rt_policy(spec.prio);
        let start = g.ready();
        let deadline = start + ns;
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
    let start = gate.ready();
    let deadline = start + ns;
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

#[cfg(test)]
mod tests {
    use super::Gate;

    /// Every thread gets the same start, and it is taken only once the last thread is in place:
    /// a thread that arrives late does not find a clock that started without it.
    #[test]
    fn the_clock_starts_once_every_thread_is_in_place() {
        let gate = Gate::new(3);
        let threads: Vec<_> = (0..3u64)
            .map(|i| {
                let gate = gate.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(10 * i));
                    let arrived = kernel::time::now_ns();
                    (arrived, gate.ready())
                })
            })
            .collect();
        let got: Vec<(u64, u64)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let last = got.iter().map(|g| g.0).max().unwrap();
        assert!(got.iter().all(|g| g.1 == got[0].1), "one start for all: {got:?}");
        assert!(got[0].1 >= last, "the start ({}) is after the last arrival ({last})", got[0].1);
    }
}
