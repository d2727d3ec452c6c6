//! The soak: the lab's workloads, one kernel instance after another, with random model
//! switches, interrupt storms and RT probes, for minutes, watching memory and `BUG:`s.
//!
//! **Mechanism.** [`run`] boots instance after instance until its time is up, each for
//! `INSTANCE_NS` under a random boot model, running the next workload of
//! [`WORKLOADS`] (each in turn): a SCHED_NORMAL worker making system
//! calls of its atoms, a SCHED_FIFO probe sleeping on absolute deadlines (cyclictest's loop),
//! a SCHED_FIFO switcher moving the kernel to a random model every `SWITCH_NS`, and a storm
//! task raising a device `STORM_IRQS` times in a burst, whose handler raises a softirq. Every
//! [`SoakConfig::every_s`] it hands a [`Sample`] to the caller: the process's resident memory
//! (`VmRSS` of `/proc/self/status`) and the counters since the start.
//!
//! **Invariant.** A soak passes only if no instance reported a `BUG:` or failed, and memory
//! stayed flat, judged from two samples at least (a soak too short for two is refused, one that
//! took fewer fails): the last sample's RSS is at most the first's plus `rss_allowance_kib` (the
//! first sample is taken after a whole interval, so every workload's one-time setup, such as
//! the patch models' point tables, is in it).

use kernel::device::Device;
use kernel::{spawn, Config, PreemptModel, TaskBuilder};
use services::workloads::{kernel_call, Workload, WORKLOADS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// How long each instance runs.
pub(crate) const INSTANCE_NS: u64 = 2_000_000_000;
/// How often the switcher changes the model.
pub(crate) const SWITCH_NS: u64 = 20_000_000;
/// Interrupts in one storm.
pub(crate) const STORM_IRQS: u64 = 500;
/// The probe's period.
const PROBE_NS: u64 = 500_000;

/// A soak's settings.
#[derive(Clone, Copy, Debug)]
pub struct SoakConfig {
    /// How long, in seconds.
    pub secs: u64,
    /// Seconds between two samples.
    pub every_s: u64,
    /// CPUs of every instance.
    pub cpus: usize,
    /// Seed of the model choices.
    pub seed: u64,
}

/// The longest soak: a day.
pub const MAX_SECS: u64 = 86_400;

impl SoakConfig {
    /// Rejects settings naming the field (`secs=0`, the kernel's `cpus=65`) and what to use.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_SECS).contains(&self.secs) {
            return Err(format!("secs={}: use 1..={MAX_SECS} seconds (a day at most)", self.secs));
        }
        if self.every_s == 0 {
            return Err("every_s=0: sample at most every second".into());
        }
        // The leak check compares the first sample with the last: two samples, each taken
        // after an instance has ended.
        let least = 2 * self.every_s.max(INSTANCE_NS.div_ceil(1_000_000_000));
        if self.secs < least {
            return Err(format!(
                "secs={}: the leak check compares two samples, taken every {} s after instances of {} s: use at least {least} seconds",
                self.secs,
                self.every_s,
                INSTANCE_NS / 1_000_000_000
            ));
        }
        // The CPUs are the kernel's to check (`cpus=`).
        kernel::Config { cpus: self.cpus, ..kernel::Config::default() }.validate().map_err(|e| e.to_string())
    }
}

/// What the soak had done by one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Seconds since the start.
    pub at_s: u64,
    /// The process's resident memory, KiB.
    pub rss_kib: u64,
    /// Instances run.
    pub instances: u64,
    /// Workload units done (each workload's own unit).
    pub units: u64,
    /// Context switches.
    pub switches: u64,
    /// Interrupts taken.
    pub irqs: u64,
    /// Model switches made at run time.
    pub model_switches: u64,
    /// Storm interrupts handled.
    pub storm_irqs: u64,
    /// Probe samples, and the latest one in µs.
    pub probe_samples: u64,
    /// The worst probe lateness, µs.
    pub probe_max_us: u64,
    /// `BUG:` reports.
    pub bugs: u64,
}

/// The process's resident memory in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> Result<u64, String> {
    let s = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    parse_rss(&s).ok_or_else(|| "/proc/self/status has no VmRSS line".into())
}

fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How much RSS may grow from the first sample to the last: 16 MiB or a fifth of the first,
/// whichever is more (allocator caches and fragmentation settle, a leak keeps growing).
pub(crate) fn rss_allowance_kib(first_kib: u64) -> u64 {
    (16 * 1024).max(first_kib / 5)
}

/// Says whether `samples` stayed flat (see [`rss_allowance_kib`]); `Err` names the growth, or
/// says that fewer than two samples leave nothing to compare.
pub(crate) fn judge_rss(samples: &[Sample]) -> Result<(), String> {
    let (Some(first), Some(last)) = (samples.first(), samples.get(1).and(samples.last())) else {
        return Err(format!(
            "the leak check could not run: it compares two samples of RSS and the soak took {} (the host ran its instances slower than asked); soak longer",
            samples.len()
        ));
    };
    let allowed = rss_allowance_kib(first.rss_kib);
    if last.rss_kib > first.rss_kib + allowed {
        return Err(format!(
            "RSS grew from {} KiB at {} s to {} KiB at {} s (more than the {allowed} KiB allowed): memory is leaking",
            first.rss_kib, first.at_s, last.rss_kib, last.at_s
        ));
    }
    Ok(())
}

/// Counters the tasks of one instance share with the host.
#[derive(Default)]
struct Counters {
    stop: AtomicBool,
    units: AtomicU64,
    model_switches: AtomicU64,
    storm_irqs: AtomicU64,
    probe_samples: AtomicU64,
    probe_max_ns: AtomicU64,
    /// What failed inside the instance.
    error: std::sync::OnceLock<String>,
}

/// Runs the soak; `sample` gets every sample as it is taken. `Err` on a `BUG:`, a failed
/// instance or memory that did not stay flat.
pub fn run(cfg: &SoakConfig, sample: &mut dyn FnMut(&Sample)) -> Result<Vec<Sample>, String> {
    cfg.validate()?;
    let start = std::time::Instant::now();
    let (mut total, mut samples, mut rng) = (Sample::default(), Vec::new(), cfg.seed | 1);
    let mut next_sample = cfg.every_s;
    while start.elapsed().as_secs() < cfg.secs {
        let w = Workload { index: total.instances as usize % WORKLOADS.len(), size: 0 };
        let w = Workload { size: w.info().size_default, ..w };
        let model = PreemptModel::ALL[(xorshift(&mut rng) % PreemptModel::ALL.len() as u64) as usize];
        let c = Arc::new(Counters::default());
        let (cc, seed) = (c.clone(), xorshift(&mut rng));
        let config = Config { preempt: model, cpus: cfg.cpus, ..Config::default() };
        let limit = std::time::Duration::from_nanos(INSTANCE_NS * 2 + crate::watch::HANG_GRACE_NS);
        let r = crate::watch::run_watched(config, limit, move || instance(&cc, w, seed))
            .map_err(|e| format!("instance {} ({}, preempt={model}): {e}", total.instances, w.name()))?;
        total.instances += 1;
        total.units += c.units.load(Ordering::Acquire);
        total.switches += r.switches;
        total.irqs += r.irqs;
        total.model_switches += c.model_switches.load(Ordering::Acquire);
        total.storm_irqs += c.storm_irqs.load(Ordering::Acquire);
        total.probe_samples += c.probe_samples.load(Ordering::Acquire);
        total.probe_max_us = total.probe_max_us.max(c.probe_max_ns.load(Ordering::Acquire) / 1000);
        total.bugs += r.bugs.len() as u64;
        if !r.bugs.is_empty() || r.init != Ok(0) {
            return Err(format!(
                "instance {} ({}, preempt={model}) ended {:?} ({}) with {} BUG: {}",
                total.instances,
                w.name(),
                r.init,
                c.error.get().map_or("no error recorded", String::as_str),
                r.bugs.len(),
                r.bugs.join("; ")
            ));
        }
        let at = start.elapsed().as_secs();
        if at >= next_sample || at >= cfg.secs {
            total.at_s = at;
            total.rss_kib = rss_kib()?;
            sample(&total);
            samples.push(total.clone());
            next_sample = at + cfg.every_s;
        }
    }
    judge_rss(&samples)?;
    Ok(samples)
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// One instance's `init`: worker, probe, switcher and storm for [`INSTANCE_NS`].
fn instance(c: &Arc<Counters>, w: Workload, seed: u64) -> i64 {
    let start = kernel::time::now_ns();
    let c1 = c.clone();
    let worker = spawn(TaskBuilder::new("soak-worker"), move || {
        let mut atoms = w.make();
        if let Err(e) = atoms.open() {
            let _ = c1.error.set(format!("{}: open: {e}", w.name()));
            return -1;
        }
        while !c1.stop.load(Ordering::Acquire) {
            c1.units.fetch_add(kernel_call(&mut *atoms), Ordering::AcqRel);
        }
        atoms.close().map_or_else(
            |e| {
                let _ = c1.error.set(format!("{}: close: {e}", w.name()));
                -1
            },
            |()| 0,
        )
    });
    let c2 = c.clone();
    let probe = spawn(TaskBuilder::new("soak-probe").fifo(80), move || {
        let mut next = kernel::time::now_ns();
        while !c2.stop.load(Ordering::Acquire) {
            next += PROBE_NS;
            kernel::time::sleep_until(next);
            let late = kernel::time::now_ns().saturating_sub(next);
            c2.probe_samples.fetch_add(1, Ordering::AcqRel);
            c2.probe_max_ns.fetch_max(late, Ordering::AcqRel);
        }
        0
    });
    let c3 = c.clone();
    let switcher = spawn(TaskBuilder::new("soak-switcher").fifo(90), move || {
        let mut rng = seed | 1;
        while !c3.stop.load(Ordering::Acquire) {
            kernel::time::sleep_ns(SWITCH_NS);
            let m = PreemptModel::ALL[(xorshift(&mut rng) % PreemptModel::ALL.len() as u64) as usize];
            if let Err(e) = kernel::set_preempt_model(m) {
                let _ = c3.error.set(format!("set_preempt_model({m}): {e}"));
                return -1;
            }
            c3.model_switches.fetch_add(1, Ordering::AcqRel);
        }
        0
    });
    let c4 = c.clone();
    let storm = spawn(TaskBuilder::new("soak-storm"), move || {
        let c5 = c4.clone();
        let dev = Device::register("soak-storm", move || {
            c5.storm_irqs.fetch_add(1, Ordering::AcqRel);
            kernel::softirq::raise_softirq(kernel::softirq::TASKLET_SOFTIRQ);
        });
        while !c4.stop.load(Ordering::Acquire) {
            for _ in 0..STORM_IRQS {
                dev.raise();
            }
            kernel::time::sleep_ns(10_000_000);
        }
        0
    });
    kernel::time::sleep_until(start + INSTANCE_NS);
    c.stop.store(true, Ordering::Release);
    let results = [worker.join(), probe.join(), switcher.join(), storm.join()];
    if results.iter().all(|r| *r == Ok(0)) {
        0
    } else {
        -1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_proc_status() {
        assert_eq!(parse_rss("Name:\tx\nVmRSS:\t   12345 kB\nVmSwap: 0 kB\n"), Some(12345));
        assert_eq!(parse_rss("Name:\tx\n"), None);
        assert!(rss_kib().unwrap() > 0);
    }

    #[test]
    fn growth_past_the_allowance_is_a_leak() {
        let s = |at_s, rss_kib| Sample { at_s, rss_kib, ..Sample::default() };
        assert!(judge_rss(&[s(60, 100_000), s(120, 110_000), s(180, 101_000)]).is_ok());
        let e = judge_rss(&[s(60, 100_000)]).unwrap_err();
        assert!(
            e.starts_with("the leak check could not run: it compares two samples of RSS and the soak took 1"),
            "{e}"
        );
        let e = SoakConfig { secs: 60, every_s: 60, cpus: 1, seed: 1 }.validate().unwrap_err();
        assert!(e.starts_with("secs=60: the leak check compares two samples") && e.contains("at least 120"), "{e}");
        let e = SoakConfig { secs: 3, every_s: 1, cpus: 1, seed: 1 }.validate().unwrap_err();
        assert!(e.contains("at least 4 seconds"), "{e}");
        let e = judge_rss(&[s(60, 100_000), s(120, 130_000), s(180, 160_000)]).unwrap_err();
        assert!(e.contains("grew from 100000 KiB at 60 s to 160000 KiB at 180 s"), "{e}");
    }

    /// A short soak on two CPUs, long enough for one instance of every workload (the packet
    /// workload last: under model switches and storms its ring was once polled on two CPUs at
    /// once, delivering packets twice; `packet.rs` now polls on one CPU at a time): no BUG,
    /// every counter moved, a sample after each instance.
    #[test]
    fn a_short_soak_runs_every_workload_and_samples_each_interval() {
        let cfg = SoakConfig { secs: 9, every_s: 1, cpus: 2, seed: 7 };
        let mut seen = Vec::new();
        let samples = run(&cfg, &mut |s| seen.push(s.clone())).unwrap();
        assert_eq!(seen, samples);
        let last = samples.last().unwrap();
        assert_eq!(last.bugs, 0);
        assert!(last.instances >= WORKLOADS.len() as u64 && last.units > 0 && last.switches > 0, "{last:?}");
        assert!(last.model_switches > 0 && last.storm_irqs > 0 && last.probe_samples > 0, "{last:?}");
        assert!(last.rss_kib > 0);
    }
}
