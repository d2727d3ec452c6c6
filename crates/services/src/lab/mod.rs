//! The latency lab: cyclictest-style RT latency and normal-path throughput, for every
//! preemption model and for the peers a user would pick instead, side by side.
//!
//! **Mechanism.** [`workloads`] are kernel services built of atoms (the a.out [`loader`], page
//! copy, checksum, a compute hog, the packet device's receive path) in one registry; the
//! [`probe`] is cyclictest's loop as RT tasks of a fresh kernel instance running one workload;
//! [`peers`] run the same atoms on host threads (SCHED_FIFO probe beside a hog) and on a tokio
//! runtime, and in a Go program ([`go_peer`], when built) (all but `packet`, which needs
//! softirqs); [`compare`] runs every subject (each model
//! under each chosen bottom-half option, each peer) × workload, interleaved over rounds;
//! [`stats`] keeps the samples in HDR histograms.
//!
//! **Invariant.** Every figure is observed, never assumed: units counted by the code that did
//! them, lateness recorded by the probe when it runs; a run with a kernel `BUG:` is an error.

pub mod cleanup;
pub mod compare;
pub mod cross;
pub mod go_peer;
pub mod host_peer;
pub mod loader;
pub mod peers;
pub mod probe;
pub mod row;
pub mod stats;
pub mod watch;
pub mod workloads;

pub use compare::{CompareConfig, Row, Subject};
pub use peers::Peer;
pub use probe::{CrossOut, Placement, ProbeSet, ProbeSpec, RunOut, Stop, WorkerOut};
pub use stats::{percentiles, Bin, Latency, LatencyHist};
pub use workloads::{Workload, WORKLOADS};

/// Checks `--rounds` (of `compare` and `packets`): 1..=100.
pub fn validate_rounds(rounds: usize) -> Result<(), String> {
    if (1..=100).contains(&rounds) {
        Ok(())
    } else {
        Err(format!("--rounds {rounds}: use 1..=100 rounds"))
    }
}

/// Checks `--bh-prio` (of `compare` and `packets`): ksoftirqd's SCHED_FIFO priority, 1..=99.
pub fn validate_bh_prio(prio: u8) -> Result<(), String> {
    if (1..=99).contains(&prio) {
        Ok(())
    } else {
        Err(format!(
            "--bh-prio {prio}: use a SCHED_FIFO priority 1..=99 for ksoftirqd under bh=threaded (default {})",
            kernel::config::DEFAULT_BH_PRIO
        ))
    }
}

/// Parses a command-line list (`--preempt`, `--bh`, `--peers`, `--workload`): `all` gives
/// `all`, else comma-separated names, each parsed by `one`, a repeated one kept once, in the
/// order first named. Empty names are skipped; whether an empty list is allowed is the
/// caller's to say.
pub(crate) fn parse_list<T: Copy + PartialEq>(
    arg: &str,
    all: &[T],
    one: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    if arg.trim() == "all" {
        return Ok(all.to_vec());
    }
    let mut out = Vec::new();
    for name in arg.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let v = one(name)?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}
