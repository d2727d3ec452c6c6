//! What a lab run asks for and what it measured: cyclictest's probe set, where each task ran,
//! the figures of a run; shared by the kernel's probe ([`crate::probe`]), the cross-CPU probe
//! ([`crate::cross`]) and the peers ([`crate::peers`]).
//!
//! **Mechanism.** A [`ProbeSet`] is cyclictest's `-t -p -i -d`: probe `i` runs at SCHED_FIFO
//! `prio - i` every `interval + i * distance`. On `cpus` CPUs each probe runs on every CPU
//! ([`layout`]), each CPU has a worker ([`workers_for`]) and, from two CPUs on, one cross-CPU
//! probe ([`cross_spec`]). A run ends after a duration or a count of samples ([`Stop`]) and
//! gives a [`RunOut`]: units per worker, one latency histogram per probe, where each task ran
//! ([`Placement`]).
//!
//! **Invariant.** Plain data and the rules of the layout, importing no runner: every module
//! that runs probes depends on this one, and this one on none of them.

use crate::stats::LatencyHist;
use services::workloads::Workload;

/// The smallest probe interval: one host timer signal and a thread wakeup cost several µs, so
/// below this the probe would mostly measure itself.
pub const MIN_INTERVAL_US: u64 = 100;
/// Priority of the controller that ends a run (above every probe).
pub(crate) const CONTROL_PRIO: u8 = 99;

/// How long a run waits for its threads to be in place before it starts its clock anyway.
///
/// A run's clock starts once the run is in place, as each cyclictest thread takes its start
/// after its own set-up: every worker has opened its workload and made one call (its first
/// touch of memory, not counted) and every probe runs at its priority on its CPU; the first
/// deadline of each probe is one interval after that start. A clock taken before the threads
/// exist charges their creation to the first samples: a probe set up 4 to 10 ms late (thread
/// creation beside nice -20 hogs on every host CPU of a `preempt=none` host) records a burst
/// of 16 to 40 late samples catching up on its schedule, 1% of a one-second run: the
/// millisecond p99 every subject had on two CPUs (docs/LAB.md, "Where a run's clock starts").
pub const READY_LIMIT_NS: u64 = 2_000_000_000;

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
    /// Rejects impossible settings, naming the field (`threads=0`) and the valid values.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=16).contains(&self.threads) {
            return Err(format!("threads={}: use 1..=16 probes", self.threads));
        }
        if !(1..=98).contains(&self.prio) {
            return Err(format!("prio={}: use SCHED_FIFO priority 1..=98 (99 is the lab's controller)", self.prio));
        }
        if self.threads > self.prio as usize {
            return Err(format!(
                "threads={} with prio={}: probe i runs at prio - i, so use at most {} probes",
                self.threads, self.prio, self.prio
            ));
        }
        if self.interval_us < MIN_INTERVAL_US {
            return Err(format!(
                "interval_us={}: below the timer resolution atomkernel delivers ({MIN_INTERVAL_US} us); use {MIN_INTERVAL_US}..=1000000",
                self.interval_us
            ));
        }
        if self.interval_us > 1_000_000 || self.distance_us > 1_000_000 {
            return Err(format!(
                "interval_us={} / distance_us={}: use at most 1000000 us",
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

/// The longest run of the lab, in seconds (a run's length, and its count of samples times the
/// slowest probe's period).
pub const MAX_SECONDS: f64 = 600.0;

/// Checks a run's length, `seconds=`: above 0, at most [`MAX_SECONDS`].
pub fn validate_seconds(s: f64) -> Result<(), String> {
    if s > 0.0 && s <= MAX_SECONDS {
        Ok(())
    } else {
        Err(format!("seconds={s}: use a duration above 0 and at most {MAX_SECONDS} seconds"))
    }
}

/// Checks a count of samples per probe, `loops=`: at least 1, and no more than the slowest of `probes` takes in
/// [`MAX_SECONDS`] (a count of samples is a length of run too, and must be bounded like one).
pub fn validate_loops(loops: u64, probes: &[ProbeSpec]) -> Result<(), String> {
    let slowest = probes.iter().map(|p| p.interval_ns).max().unwrap_or(1).max(1);
    let most = (MAX_SECONDS * 1e9) as u64 / slowest;
    if loops == 0 {
        return Err("loops=0: take at least 1 sample per probe".into());
    }
    if loops > most {
        return Err(format!(
            "loops={loops}: the slowest probe (every {} us) would run {:.0} s; use at most {most} loops ({MAX_SECONDS} s), or seconds=",
            slowest / 1000,
            loops as f64 * slowest as f64 / 1e9
        ));
    }
    Ok(())
}

/// Checks a number of rounds (of the comparison and of the packet load): 1..=100.
pub fn validate_rounds(rounds: usize) -> Result<(), String> {
    if (1..=100).contains(&rounds) {
        Ok(())
    } else {
        Err(format!("rounds={rounds}: use 1..=100 rounds"))
    }
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
    /// How long it took to be in place (its workload opened, one call made), in ns after it
    /// was started (0 where not measured).
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
    /// Where the probes' wakeups went (empty for the floor and the peers).
    pub breakdown: Breakdown,
}

/// Where the probes' timer wakeups went, part by part (`kernel::time::wakeup_parts`, rtla
/// timerlat's split): the host's delivery of the interrupt, the handler, the exit's decision
/// (the patch models' arming), the wait for the CPU's task to give the CPU up, serving that,
/// and the switch.
#[derive(Clone, Debug, Default)]
pub struct Breakdown {
    /// Each part over the explained wakeups, in `WakeupParts::NAMES` order.
    pub parts: [LatencyHist; 6],
    /// Wakeups explained (every stamp taken: local hrtimer wakeups).
    pub explained: u64,
    /// The latest explained wakeup.
    pub worst: Option<kernel::time::WakeupParts>,
}

impl Breakdown {
    /// Adds one explained wakeup.
    pub fn record(&mut self, p: kernel::time::WakeupParts) {
        for (h, &ns) in self.parts.iter_mut().zip(&p.ns) {
            h.record_sample(ns, false);
        }
        self.explained += 1;
        if self.worst.is_none_or(|w| w.total() < p.total()) {
            self.worst = Some(p);
        }
    }

    /// Adds another run's (or probe's) wakeups.
    pub fn merge(&mut self, other: &Breakdown) {
        for (h, o) in self.parts.iter_mut().zip(&other.parts) {
            h.merge(o);
        }
        self.explained += other.explained;
        if let Some(w) = other.worst {
            if self.worst.is_none_or(|m| m.total() < w.total()) {
                self.worst = Some(w);
            }
        }
    }
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
