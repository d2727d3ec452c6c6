//! The peers: what a user would pick instead of atomkernel, doing the same atoms.
//!
//! **Mechanism.**
//! - `host-fifo`: host threads on one host CPU. A hog thread runs the workload's atoms back to
//!   back; each probe is a host thread at SCHED_FIFO (or the best policy the host allows, which
//!   the result names) doing cyclictest's loop with `clock_nanosleep(TIMER_ABSTIME)`. The host
//!   kernel preempts the hog whenever the probe wakes: this is the latency Linux itself gives.
//! - `tokio`: a tokio current-thread runtime. The workload is a task that yields
//!   (`yield_now`) between atoms, as cooperative code yields at its await points; each probe
//!   is a task sleeping to periodic deadlines (`sleep_until`). Nothing preempts a task: the
//!   probe runs when the worker's atom ends and the runtime's timer has fired (tokio's timer
//!   wheel has 1 ms granularity).
//! - `go`: a Go program with `GOMAXPROCS=1` (see [`super::go_peer`], built when Go is
//!   installed): a worker goroutine runs the atoms back to back without yielding and the Go
//!   runtime preempts it (sysmon, after 10 ms); each probe is a goroutine sleeping to periodic
//!   deadlines.
//!
//! The threads that run the workload (the hog, the runtime's thread, the Go process) get the
//! host scheduling the kernel's CPU threads get ([`CpuPolicy`]), so every subject's worker
//! competes alike with whatever else the host runs.
//!
//! **Invariant.** A peer runs exactly the atoms the kernel's worker runs ([`Atoms`]; the Go
//! peer a transcription of them that a test checks against these), timed on the same monotonic
//! clock, and its threads leave with their host policy restored.

use super::go_peer;
use super::probe::{CpuPolicy, ProbeSpec, RunOut};
use super::stats::LatencyHist;
use super::workloads::{self, Atoms, Workload};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A peer of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// Host threads: SCHED_FIFO probe beside a hog, both pinned to one host CPU.
    HostFifo,
    /// A tokio current-thread runtime.
    Tokio,
    /// A Go program at `GOMAXPROCS=1` (in [`Peer::ALL`] only when built: [`go_peer::BUILT`]).
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

    /// Parses a `--peers` list: names, `all` (every peer this build has) or `none`. Naming
    /// `go` in a build without it is an error that says how to build it.
    pub fn parse_list(arg: &str) -> Result<Vec<Peer>, String> {
        if matches!(arg.trim(), "none" | "") {
            return Ok(Vec::new());
        }
        super::parse_list(arg, Peer::ALL, |name| {
            if name == Peer::Go.name() && !go_peer::BUILT {
                return Err(format!("--peers go: {}", go_peer::not_built()));
            }
            Peer::ALL
                .iter()
                .copied()
                .find(|p| p.name() == name)
                .ok_or_else(|| format!("--peers: unknown peer '{name}': choose host-fifo, tokio, go, all or none"))
        })
    }

    /// Runs `workload` (if any) and `probes` for `ns` nanoseconds; returns the figures and how
    /// the host scheduled them. `cpu` is the kernel's CPU-thread policy, which the tokio
    /// runtime's thread and the Go process get too (the host peer's threads are the peer's
    /// definition).
    pub fn run(
        self,
        workload: Option<Workload>,
        probes: &[ProbeSpec],
        ns: u64,
        cpu: CpuPolicy,
    ) -> Result<(RunOut, String), String> {
        match self {
            Peer::HostFifo => Ok(host_fifo(workload, probes, ns, cpu)),
            Peer::Tokio => tokio_run(workload, probes, ns, cpu),
            Peer::Go => go_peer::run(workload, probes, ns, cpu),
        }
    }
}

/// The host CPU the host peer's threads share: the last one this process may use.
fn peer_cpu() -> usize {
    *hostlab::sched::allowed_cpus().last().unwrap_or(&0)
}

fn host_fifo(workload: Option<Workload>, probes: &[ProbeSpec], ns: u64, cpu_policy: CpuPolicy) -> (RunOut, String) {
    let cpu = peer_cpu();
    let start = kernel::time::now_ns();
    let deadline = start + ns;
    let stop = Arc::new(AtomicBool::new(false));
    let hog = workload.map(|w| {
        let (stop, mut atoms) = (stop.clone(), w.make());
        std::thread::spawn(move || {
            let _ = hostlab::sched::pin_current_thread(cpu);
            let policy = cpu_policy.apply();
            (host_worker(&stop, &mut *atoms), policy)
        })
    });
    let threads: Vec<_> = probes
        .iter()
        .map(|&spec| {
            std::thread::spawn(move || {
                let pinned = hostlab::sched::pin_current_thread(cpu).is_ok();
                let policy = hostlab::sched::set_best_rt_policy(spec.prio);
                let h = host_probe(spec, start, deadline);
                hostlab::sched::set_normal_policy();
                (h, if pinned { format!("{policy}, host CPU {cpu}") } else { format!("{policy}, unpinned") })
            })
        })
        .collect();
    hostlab::sched::sleep_until_ns(deadline);
    let results: Vec<(LatencyHist, String)> = threads.into_iter().map(|t| t.join().expect("probe thread")).collect();
    stop.store(true, Ordering::Release);
    let ((units, wall), hog_policy) = hog.map_or(((0, 0), String::new()), |h| h.join().expect("hog thread"));
    let probe_policy = results.first().map_or_else(|| "no probe".into(), |r| r.1.clone());
    let policy = format!("probe: {probe_policy}; hog: {hog_policy}");
    (
        RunOut {
            units,
            ns: wall,
            hists: results.into_iter().map(|r| r.0).collect(),
            policy: None,
            patch: Default::default(),
        },
        policy,
    )
}

fn host_worker(stop: &AtomicBool, w: &mut dyn Atoms) -> (u64, u64) {
    let start = kernel::time::now_ns();
    let mut units = 0;
    while !stop.load(Ordering::Acquire) {
        units += workloads::host_call(w);
    }
    (units, kernel::time::now_ns() - start)
}

fn host_probe(spec: ProbeSpec, start: u64, deadline: u64) -> LatencyHist {
    let mut h = LatencyHist::new();
    let mut next = start;
    loop {
        next += spec.interval_ns;
        if next > deadline {
            return h;
        }
        let host = hostlab::sched::involuntary_switches();
        hostlab::sched::sleep_until_ns(next);
        let late = kernel::time::now_ns().saturating_sub(next);
        h.record_sample(late, hostlab::sched::involuntary_switches() != host);
    }
}

fn tokio_run(
    workload: Option<Workload>,
    probes: &[ProbeSpec],
    ns: u64,
    cpu: CpuPolicy,
) -> Result<(RunOut, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("peer:tokio: cannot build the runtime: {e}"))?;
    let probes = probes.to_vec();
    let work = workload.map(|w| w.make());
    // The runtime runs on a thread of its own, as the kernel's CPU does.
    let (out, policy) = std::thread::spawn(move || {
        let policy = cpu.apply();
        (rt.block_on(tokio_body(work, probes, ns)), policy)
    })
    .join()
    .map_err(|_| "peer:tokio: the runtime's thread panicked".to_string())?;
    Ok((out, format!("runtime thread: {policy}; tasks yield between atoms; timer granularity 1 ms")))
}

async fn tokio_body(work: Option<Box<dyn Atoms>>, probes: Vec<ProbeSpec>, ns: u64) -> RunOut {
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_nanos(ns);
    let stop = Arc::new(AtomicBool::new(false));
    let worker = work.map(|mut w| {
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
            (units, t0.elapsed().as_nanos() as u64)
        })
    });
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
    let (units, ns) = match worker {
        Some(w) => w.await.unwrap_or((0, 0)),
        None => (0, 0),
    };
    RunOut { units, ns, hists, policy: None, patch: Default::default() }
}
