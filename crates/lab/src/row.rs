//! The comparison's rows: one subject × workload, the documented JSON object (docs/LAB.md).
//!
//! **Mechanism.** `compare` turns each cell of the comparison (its rounds' throughputs, its
//! pooled latency samples, where its tasks ran) into a [`Row`]: medians over rounds, the
//! pooled distribution ([`Latency`], [`Bin`]s and the CDF at [`CDF_QUANTILES`]), per-CPU
//! distributions, the cross-CPU probe ([`CrossRow`]), the overhead against `none` and the
//! scaling against one CPU. This module is the rows' shape, which the CLI's table, JSON and
//! report read; it imports nothing of the runs.
//!
//! **Invariant.** A figure the subject did not measure is null, never a stand-in: no per-CPU
//! latency for a subject that does not bind its probes, no scaling on one CPU, no cross-CPU
//! figure without a cross-CPU probe.

use crate::measure::Placement;
use crate::stats::{Bin, Latency, LatencyHist};
use serde::Serialize;

/// One probe's figures in a row.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeRow {
    pub prio: u8,
    pub interval_us: u64,
    /// The CPU it was bound to (a host CPU for `peer:host-fifo`); null when unbound.
    pub cpu: Option<usize>,
    /// Every CPU it was seen running on; empty when the subject cannot say.
    pub ran_on: Vec<usize>,
    pub latency_ns: Latency,
}

/// Where a worker (or an interrupt handler) was bound and ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlaceRow {
    /// The CPU it was bound to (a host CPU for `peer:host-fifo`); null when unbound.
    pub cpu: Option<usize>,
    /// Every CPU it was seen running on.
    pub ran_on: Vec<usize>,
}

impl From<Placement> for PlaceRow {
    fn from(p: Placement) -> PlaceRow {
        PlaceRow { cpu: p.cpu, ran_on: p.seen_cpus() }
    }
}

/// The cross-CPU probe in a row: the interrupt on one CPU, the RT task it wakes on another.
#[derive(Clone, Debug, Serialize)]
pub struct CrossRow {
    /// Where the interrupt (`peer:host-fifo`: the waker thread) was bound and ran.
    pub irq: PlaceRow,
    /// Where the RT task was bound and ran.
    pub rt: PlaceRow,
    pub prio: u8,
    pub interval_us: u64,
    /// From each deadline to the RT task running, every round pooled.
    pub latency_ns: Latency,
    pub latency_undisturbed_ns: Latency,
}

/// Each part of a wakeup, in ns (`kernel::time::WakeupParts::NAMES`, in that order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PartsRow {
    /// The host's delivery of the timer interrupt (deadline to the handler's entry).
    pub delivery: u64,
    /// The interrupt handler (the tick, the hrtimer, the wakeup, bottom halves at its exit).
    pub handler: u64,
    /// The exit's decision: for the patch models the arming (look-up, unwind, arm, redirect).
    pub exit: u64,
    /// The wait for the CPU's task to reach a place where it gives the CPU up.
    pub wait: u64,
    /// Serving that place (the point's hook, or the preemption path) up to `__schedule`.
    pub serve: u64,
    /// `__schedule` to the probe running (its system call's exit included).
    pub switch: u64,
}

impl From<[u64; 6]> for PartsRow {
    fn from(p: [u64; 6]) -> PartsRow {
        PartsRow { delivery: p[0], handler: p[1], exit: p[2], wait: p[3], serve: p[4], switch: p[5] }
    }
}

impl PartsRow {
    /// The parts in `kernel::time::WakeupParts::NAMES` order.
    pub fn ns(&self) -> [u64; 6] {
        [self.delivery, self.handler, self.exit, self.wait, self.serve, self.switch]
    }
}

/// The patch models' interrupt-exit arming per RT event, part by part (ns, means over the
/// loaded runs): the point-table look-up, the unwinding, arming the sites (`poke`), and
/// redirecting a return. Their sum is a little less than `handler_ns_per_event`, which also
/// counts the arming's entry and exit.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct HandlerParts {
    pub lookup: f64,
    pub unwind: f64,
    pub poke: f64,
    pub redirect: f64,
}

/// The host stalls seen during a row's latency runs (`hostlab::stall`: wakeups of a SCHED_FIFO
/// 99 watcher at least 1 ms late, from the instance's boot to its end).
#[derive(Clone, Debug, Default, Serialize)]
pub struct StallRow {
    /// Stalls seen, over every round.
    pub count: u64,
    /// The longest, in ns (0 without any).
    pub longest_ns: u64,
    /// Rounds with at least one stall, of `rounds`.
    pub rounds_stalled: usize,
    /// As the row's `latency_ns`, over the rounds without a stall (`count` 0 when every round
    /// had one).
    pub latency_unstalled_ns: Latency,
}

impl StallRow {
    /// Whether the stalls set the row's p99: it is more than twice the p99 of the rounds
    /// without a stall.
    pub fn set_p99(&self, row_p99: u64) -> bool {
        self.rounds_stalled > 0 && self.latency_unstalled_ns.count > 0 && row_p99 > 2 * self.latency_unstalled_ns.p99
    }
}

/// Where a row's probe wakeups went (docs/LAB.md, "Where each microsecond goes").
#[derive(Clone, Debug, Default, Serialize)]
pub struct BreakdownRow {
    /// Wakeups explained (local timer wakeups whose every stamp was taken), of `samples`.
    pub explained: u64,
    /// The median of each part over the explained wakeups.
    pub median_ns: PartsRow,
    /// The parts of the latest explained wakeup; they add up to `worst_total_ns`.
    pub worst_ns: PartsRow,
    pub worst_total_ns: u64,
    /// Whether that wakeup was a preemption on the interrupt's path (no point waited for).
    pub worst_preempted: bool,
    /// The code its interrupt found the CPU in, which held the CPU: `function at file:line`.
    pub worst_held_at: String,
}

impl BreakdownRow {
    /// The worst wakeup's largest part: its name (`kernel::time::WakeupParts::NAMES`) and ns.
    pub fn worst_largest(&self) -> (&'static str, u64) {
        let (i, ns) = self.worst_ns.ns().into_iter().enumerate().max_by_key(|p| p.1).unwrap_or((0, 0));
        (kernel::time::WakeupParts::NAMES[i], ns)
    }
}

/// One subject × workload: the documented JSON row (docs/LAB.md).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    /// `floor` (the host's floor: the probes beside plain busy loops), the model, or
    /// `peer:NAME`.
    pub model: String,
    /// Where an RT task woken by an interrupt gets the CPU: the model's answer (`next point`,
    /// `IRQ exit`, `syscall exit`, `armed call`, ...), or who preempts the worker (`host
    /// preempts` for the floor and the host peer, `next yield`, `Go preempts`).
    pub rt_runs_at: String,
    /// The model's bottom-half option (`classic`, `threaded`); null for a peer.
    pub bh: Option<String>,
    pub workload: String,
    /// What `throughput_ops_s` counts (pages, modules, atoms).
    pub unit: String,
    /// The workload's size (in its own unit, see `Workload::with_size`).
    pub size: usize,
    /// CPUs of the subject: the kernel's `cpus=`, the peer's hogs, runtime threads, GOMAXPROCS.
    pub cpus: usize,
    /// Every probe's samples pooled.
    pub latency_ns: Latency,
    pub samples: u64,
    /// As `latency_ns`, over the samples during whose period the host did not preempt the
    /// thread the subject runs on (the kernel's CPU thread, the runtime's thread, the probe).
    pub latency_undisturbed_ns: Latency,
    /// Samples whose period the host disturbed (`samples - latency_undisturbed_ns.count`).
    pub host_disturbed: u64,
    /// The host stalls the watcher saw during the row's latency runs; null without a watcher
    /// (the host refused it SCHED_FIFO 99).
    pub host_stalls: Option<StallRow>,
    /// Per CPU (index = CPU): the samples of the probes bound to it; null when the subject
    /// does not bind its probes (tokio, Go).
    pub latency_per_cpu_ns: Option<Vec<Latency>>,
    /// The cross-CPU probe; null on one CPU and for subjects without one (tokio, Go).
    pub cross_cpu: Option<CrossRow>,
    /// Median over rounds of units per second with no probe running; null for the floor (its
    /// busy loops do no work).
    pub throughput_ops_s: Option<f64>,
    /// `(throughput of none / throughput - 1) * 100` for the same workload; null without `none`
    /// and for the floor.
    pub overhead_pct: Option<f64>,
    /// Median over rounds of units per second while the probes ran; null for the floor.
    pub loaded_throughput_ops_s: Option<f64>,
    /// Each round's throughput, in round order (empty for the floor).
    pub rounds_throughput_ops_s: Vec<f64>,
    /// Each round's latency (every probe of the round pooled), in round order: the spread
    /// of `latency_ns` over rounds.
    pub rounds_latency_ns: Vec<Latency>,
    /// Median over rounds of the same subject's throughput on one CPU (one worker), measured
    /// in the same rounds; null when `cpus` is 1.
    pub throughput_1cpu_ops_s: Option<f64>,
    /// `throughput_ops_s / throughput_1cpu_ops_s`; null when `cpus` is 1.
    pub scaling: Option<f64>,
    /// Where each worker was bound and ran; null when the subject does not say (tokio, Go).
    pub workers: Option<Vec<PlaceRow>>,
    /// Per probe (cyclictest's threads; on several CPUs CPU 0's, then CPU 1's, ...).
    pub probes: Vec<ProbeRow>,
    /// How the host scheduled the subject: a model's kernel CPU thread, a peer's probes.
    pub policy: String,
    /// Half-octave bins of the pooled lateness; their counts add up to `samples`.
    pub histogram: Vec<Bin>,
    /// The pooled lateness at the quantiles of [`CDF_QUANTILES`] that the samples resolve
    /// (`1 - q` at least one sample in `samples`), and the max at 1: `[q, ns]` pairs, the
    /// report's latency CDF.
    pub cdf_ns: Vec<(f64, u64)>,
    pub seconds: f64,
    pub rounds: usize,
    pub hz: u32,
    /// Where the probes' wakeups went, part by part; null for the floor and the peers.
    pub breakdown: Option<BreakdownRow>,
    /// Patch models: sites armed per RT event (mean over the loaded runs); null otherwise.
    pub sites_armed_per_event: Option<f64>,
    /// Patch models: the interrupt exit's arming time per RT event in ns (mean; look-up,
    /// unwinding, patching); null otherwise.
    pub handler_ns_per_event: Option<f64>,
    /// Patch models: `handler_ns_per_event` part by part; null otherwise.
    pub handler_parts_ns_per_event: Option<HandlerParts>,
    /// Patch models: collateral hits per RT event (armed sites met by CPUs that had no event of
    /// their own, `int3` and `call`, over every CPU); null otherwise.
    pub collateral_per_event: Option<f64>,
    /// Patch models: the time those hits spent in the hooks, in ns per RT event (the host's
    /// delivery of a collateral `int3` is outside it); null otherwise.
    pub collateral_ns_per_event: Option<f64>,
}

/// The quantiles of a row's `cdf_ns`: deciles, then the tail's nines.
pub const CDF_QUANTILES: [f64; 17] =
    [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0];

/// The pooled lateness at the quantiles of [`CDF_QUANTILES`] the samples resolve (a row's `cdf_ns`).
pub(crate) fn cdf(h: &LatencyHist) -> Vec<(f64, u64)> {
    let n = h.count() as f64;
    let qs: Vec<f64> = CDF_QUANTILES.into_iter().filter(|&q| q >= 1.0 || (1.0 - q) * n >= 1.0).collect();
    qs.iter().copied().zip(h.quantiles(&qs)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stalls(rounds_stalled: usize, unstalled_p99: u64, count: u64) -> StallRow {
        let latency_unstalled_ns = Latency { p99: unstalled_p99, count, ..Latency::default() };
        StallRow { count: rounds_stalled as u64, longest_ns: 4_500_000, rounds_stalled, latency_unstalled_ns }
    }

    /// Stalls set a p99 only when some round had one and the rounds without are below half.
    #[test]
    fn stalls_set_the_p99_only_above_twice_the_rounds_without() {
        assert!(stalls(1, 20_000, 4000).set_p99(41_000));
        assert!(!stalls(1, 20_000, 4000).set_p99(40_000), "twice is not more than twice");
        assert!(!stalls(0, 20_000, 4000).set_p99(90_000), "no stall, no mark");
        assert!(!stalls(3, 0, 0).set_p99(90_000), "every round stalled: nothing to compare with");
    }
}
