//! The peers: what a user would pick instead of atomkernel, doing the same atoms.
//!
//! **Mechanism.** Each peer has as many CPUs as the kernel instances it is compared with
//! (`cpus`): one worker per CPU, each probe on every CPU.
//! - `host-fifo` ([`crate::host_peer`]): a hog host thread per CPU, pinned to a host CPU, runs
//!   the workload's atoms back to back; each probe is a host thread pinned beside a hog at
//!   SCHED_FIFO (or the best policy the host allows, which the result names) doing
//!   cyclictest's loop with `clock_nanosleep(TIMER_ABSTIME)`. The host kernel preempts a hog
//!   whenever a probe wakes: this is the latency Linux itself gives. On several CPUs it also
//!   has a cross-CPU probe.
//! - `tokio`: a tokio current-thread runtime on one CPU, a multi-thread runtime with one worker
//!   thread per CPU on several. Each worker is a task that yields (`yield_now`) between atoms,
//!   as cooperative code yields at its await points; each probe is a task sleeping to periodic
//!   deadlines (`sleep_until`). Nothing preempts a task: a probe runs when an atom ends on a
//!   runtime thread and the runtime's timer has fired (tokio's timer wheel has 1 ms
//!   granularity). The runtime places tasks itself, so the result has no placement.
//! - `go`: a Go program with `GOMAXPROCS` = the CPUs (see [`crate::go_peer`], built when Go is
//!   installed): worker goroutines run the atoms back to back without yielding and the Go
//!   runtime preempts them (sysmon, after 10 ms); each probe is a goroutine sleeping to
//!   periodic deadlines.
//!
//! The threads that run the workload (the hogs, the runtime's threads, the Go process) get the
//! host scheduling the kernel's CPU threads get ([`CpuPolicy`]), so every subject's worker
//! competes alike with whatever else the host runs.
//!
//! **Invariant.** A peer runs exactly the atoms the kernel's worker runs ([`Atoms`]; the Go
//! peer a transcription of them that a test checks against these), timed on the same monotonic
//! clock, and its threads leave with their host policy restored.

use crate::measure::{self, CpuPolicy, ProbeSpec, RunOut, WorkerOut};
use crate::stats::LatencyHist;
use crate::{go_peer, host_peer};
use services::workloads::{self, Atoms, Workload};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A peer of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// Host threads: SCHED_FIFO probes beside a hog per CPU, pinned to host CPUs.
    HostFifo,
    /// A tokio runtime: current-thread on one CPU, multi-thread on several.
    Tokio,
    /// A Go program at `GOMAXPROCS` = the CPUs (in [`Peer::ALL`] only when built: [`go_peer::BUILT`]).
    Go,
}

impl Peer {
    /// Every peer this build has, in report order.
    pub const ALL: &'static [Peer] =
        if go_peer::BUILT { &[Peer::HostFifo, Peer::Tokio, Peer::Go] } else { &[Peer::HostFifo, Peer::Tokio] };

    pub fn name(self) -> &'static str {
        match self {
            Peer::HostFifo => "host-fifo",
            Peer::Tokio => "tokio",
            Peer::Go => "go",
        }
    }

    /// Runs `workload` (if any) and `probes` on `cpus` CPUs for `ns` nanoseconds; returns the
    /// figures and how the host scheduled them. `cpu` is the kernel's CPU-thread policy, which the tokio
    /// runtime's thread and the Go process get too (the host peer's threads are the peer's
    /// definition).
    pub fn run(
        self,
        workload: Option<Workload>,
        probes: &[ProbeSpec],
        ns: u64,
        cpu: CpuPolicy,
        cpus: usize,
    ) -> Result<(RunOut, String), String> {
        match self {
            Peer::HostFifo => Ok(host_peer::run(workload.into(), probes, ns, cpu, cpus)),
            Peer::Tokio => tokio_run(workload, probes, ns, cpu, cpus),
            Peer::Go => go_peer::run(workload, probes, ns, cpu, cpus),
        }
    }
}

/// The note `compare` prints when every built peer was chosen (all of them, the default)
/// but the Go peer is not built.
pub fn skipped_note(chosen: &[Peer]) -> Option<String> {
    let all = !chosen.is_empty() && Peer::ALL.iter().all(|p| chosen.contains(p));
    (!go_peer::BUILT && all).then(|| format!("peer:go skipped: {}", go_peer::not_built()))
}

fn tokio_run(
    workload: Option<Workload>,
    probes: &[ProbeSpec],
    ns: u64,
    cpu: CpuPolicy,
    cpus: usize,
) -> Result<(RunOut, String), String> {
    let policy = Arc::new(std::sync::OnceLock::new());
    let rt = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread().enable_time().build()
    } else {
        let p = policy.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus)
            .enable_time()
            .on_thread_start(move || {
                let got = cpu.apply();
                let _ = p.set(got);
            })
            .build()
    }
    .map_err(|e| format!("peer:tokio: cannot build the runtime: {e}"))?;
    let probes = measure::layout(probes, cpus).into_iter().map(|(_, p)| p).collect();
    let work: Vec<Box<dyn Atoms>> =
        workload.map(|w| (0..measure::workers_for(w, cpus)).map(|_| w.make()).collect()).unwrap_or_default();
    // The runtime is driven from a thread of its own, as the kernel's CPU is (on one CPU that
    // thread is the runtime's only one, and takes the policy).
    let p = policy.clone();
    let out = std::thread::spawn(move || {
        if cpus == 1 {
            let _ = p.set(cpu.apply());
        }
        rt.block_on(tokio_body(work, probes, ns))
    })
    .join()
    .map_err(|_| "peer:tokio: the runtime's thread panicked".to_string())?;
    let got = policy.get().cloned().unwrap_or_default();
    let how = if cpus == 1 {
        format!("runtime thread: {got}")
    } else {
        format!("multi-thread runtime, {cpus} worker threads: {got}")
    };
    Ok((out, format!("{how}; tasks yield between atoms; timer granularity 1 ms")))
}

async fn tokio_body(mut work: Vec<Box<dyn Atoms>>, probes: Vec<ProbeSpec>, ns: u64) -> RunOut {
    // The run's clock starts once the run is in place (measure::READY_LIMIT_NS): each worker's
    // first call (its first touch of memory) is made before, and not counted.
    for w in &mut work {
        let _ = workloads::host_call(&mut **w);
    }
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_nanos(ns);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = work
        .into_iter()
        .map(|mut w| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                let mut units = 0;
                while !stop.load(Ordering::Acquire) {
                    w.begin();
                    while w.atom() {
                        tokio::task::yield_now().await;
                    }
                    units += w.finish();
                }
                WorkerOut { units, ns: t0.elapsed().as_nanos() as u64, ..WorkerOut::default() }
            })
        })
        .collect();
    let tasks: Vec<_> = probes
        .into_iter()
        .map(|spec| {
            tokio::spawn(async move {
                let mut h = LatencyHist::new();
                let mut next = start;
                loop {
                    next += Duration::from_nanos(spec.interval_ns);
                    if next > deadline {
                        return h;
                    }
                    let host = hostlab::sched::involuntary_switches();
                    tokio::time::sleep_until(next).await;
                    let late = tokio::time::Instant::now().saturating_duration_since(next).as_nanos() as u64;
                    h.record_sample(late, hostlab::sched::involuntary_switches() != host);
                }
            })
        })
        .collect();
    tokio::time::sleep_until(deadline).await;
    let mut hists = Vec::new();
    for t in tasks {
        hists.push(t.await.unwrap_or_default());
    }
    stop.store(true, Ordering::Release);
    let mut outs = Vec::new();
    for w in workers {
        outs.push(w.await.unwrap_or_default());
    }
    RunOut { hists, ..RunOut::default() }.with_workers(outs)
}
