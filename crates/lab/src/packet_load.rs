//! Bottom halves under packet load: RT wakeup latency and packet throughput, per `bh=` mode.
//!
//! **Mechanism.** Each run boots a fresh kernel with the given `bh=`, `bh_prio=` and `preempt=`,
//! opens a [`PacketDevice`] whose wire sends as fast as the receive path takes packets, and
//! starts a SCHED_NORMAL reader that takes every packet. With a probe priority, a SCHED_FIFO
//! probe wakes on absolute deadlines every `interval_us` (cyclictest's method) and records how
//! late it ran; then it does `probe_pages` page checksums of work and records how late it
//! finished (its response time past the deadline), which counts bottom-half work done on its
//! time by interrupts that arrive while it works. A controller (SCHED_FIFO 90, asleep until the end) stops the wire after
//! `seconds`; throughput is the packets the reader took in that time. [`compare_bh`] runs every
//! mode for `rounds` rounds, interleaved so that machine noise spreads over all of them.
//!
//! **Invariant.** A run is reported only if the kernel reported no `BUG:`, every task ended
//! well, and the reader got every packet sent exactly once and in order.

use crate::stats::{percentiles, Latency};
use kernel::softirq::{softirq_stats, NET_RX_SOFTIRQ};
use kernel::{spawn, BhMode, Config, PreemptModel, TaskBuilder};
use serde::Serialize;
use services::atoms::{csum, PAGE};
use services::packet::{PacketConfig, PacketDevice, PacketStats};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The controller's priority: above every probe, asleep but for start and stop.
const CONTROL_PRIO: u8 = 90;

/// One packet-load run's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct PacketLoadConfig {
    /// Where bottom halves run.
    pub bh: BhMode,
    /// `ksoftirqd`'s SCHED_FIFO priority under `bh=threaded`.
    pub bh_prio: u8,
    /// The preemption model (threaded bottom halves need a preemptible kernel to help an RT
    /// task, as PREEMPT_RT implies `full`).
    pub preempt: PreemptModel,
    /// The device and its receive path.
    pub packet: PacketConfig,
    /// Length of the run in seconds.
    pub seconds: f64,
    /// The probe's SCHED_FIFO priority; `None` for a throughput-only run.
    pub probe_prio: Option<u8>,
    /// The probe's period in microseconds.
    pub interval_us: u64,
    /// 4 KiB page checksums the probe does after each wakeup (0: none, 0..=4096).
    pub probe_pages: usize,
    /// CPUs of the kernel (`cpus=`).
    pub cpus: usize,
}

impl Default for PacketLoadConfig {
    fn default() -> Self {
        PacketLoadConfig {
            bh: BhMode::Classic,
            bh_prio: kernel::config::DEFAULT_BH_PRIO,
            preempt: PreemptModel::Full,
            packet: PacketConfig::default(),
            seconds: 2.0,
            probe_prio: Some(80),
            interval_us: 1000,
            probe_pages: 0,
            cpus: 1,
        }
    }
}

impl PacketLoadConfig {
    /// Checks every field; the error names the field (the device's `napi_budget=0`, the
    /// kernel's `bh_prio=0`, this run's `seconds=-1`), the value and what to use.
    pub fn validate(&self) -> Result<(), String> {
        self.packet.validate()?;
        if !(self.seconds > 0.0 && self.seconds <= 600.0) {
            return Err(format!("seconds={}: use a length above 0 and at most 600", self.seconds));
        }
        if let Some(p) = self.probe_prio {
            if !(1..CONTROL_PRIO).contains(&p) {
                return Err(format!(
                    "probe_prio={p}: use 1..={} (the controller runs at {CONTROL_PRIO}), or no probe",
                    CONTROL_PRIO - 1
                ));
            }
        }
        if self.probe_pages > 4096 {
            return Err(format!("probe_pages={}: use 0..=4096", self.probe_pages));
        }
        if !(100..=1_000_000).contains(&self.interval_us) {
            return Err(format!("interval_us={}: use 100..=1000000", self.interval_us));
        }
        if self.probe_prio.is_some() && self.seconds * 1e6 < (self.interval_us * 2) as f64 {
            return Err(format!(
                "seconds={} is shorter than two probe periods (interval_us={}): use at least {} s, or shorten the period",
                self.seconds,
                self.interval_us,
                (self.interval_us * 2) as f64 / 1e6
            ));
        }
        self.boot_config().map(|_| ())
    }

    /// The kernel command line of a run.
    pub(crate) fn cmdline(&self) -> String {
        format!("preempt={} bh={} bh_prio={} cpus={}", self.preempt, self.bh, self.bh_prio, self.cpus)
    }

    fn boot_config(&self) -> Result<Config, String> {
        Config::from_cmdline(&self.cmdline()).map(Config::with_watchdog_defaults).map_err(|e| e.to_string())
    }
}

/// What one run (or the pooled rounds of one mode) measured.
#[derive(Clone, Debug, Serialize)]
pub struct PacketLoadResult {
    /// `bh=` of the run.
    pub bh: String,
    pub bh_prio: u8,
    pub preempt: String,
    pub probe_prio: Option<u8>,
    /// Packets the reader took per second.
    pub packets_per_s: f64,
    /// The probe's lateness (all zero without a probe).
    pub latency_ns: Latency,
    /// The probe's response: end of its work past the deadline (equal to the lateness plus
    /// nothing when `probe_pages` is 0).
    pub response_ns: Latency,
    /// The device's counters (summed over rounds).
    pub stats: PacketStats,
    /// `NET_RX_SOFTIRQ` runs at `irq_exit` and in `ksoftirqd` (summed over rounds).
    pub rx_runs_irq_exit: u64,
    pub rx_runs_ksoftirqd: u64,
    /// Times `irq_exit` handed softirq work to `ksoftirqd` past its budget.
    pub handoffs: u64,
    /// Rounds pooled in this result.
    pub rounds: usize,
}

/// Shared between the host and the tasks of one instance; the lock is taken once, by the
/// probe as it exits, and read after the instance is gone.
#[derive(Default)]
struct Shared {
    packets: AtomicU64,
    ns: AtomicU64,
    rx_irq_exit: AtomicU64,
    rx_ksoftirqd: AtomicU64,
    handoffs: AtomicU64,
    stats: Mutex<PacketStats>,
    lateness: Mutex<Vec<u64>>,
    response: Mutex<Vec<u64>>,
    ok: AtomicBool,
}

/// Boots a kernel, runs the packet load (and the probe) for `cfg.seconds`, and returns the
/// figures; an error if the kernel or the receive path misbehaved.
pub fn run_packet_load(cfg: &PacketLoadConfig) -> Result<PacketLoadResult, String> {
    run_with_samples(cfg).map(|(r, _)| r)
}

/// [`run_packet_load`], with the probe's raw samples (for pooling rounds).
fn run_with_samples(cfg: &PacketLoadConfig) -> Result<(PacketLoadResult, Samples), String> {
    cfg.validate()?;
    let shared = Arc::new(Shared::default());
    let (sh, c) = (shared.clone(), cfg.clone());
    let report = kernel::run(cfg.boot_config()?, move || {
        spawn(TaskBuilder::new("bh-control").fifo(CONTROL_PRIO), move || control(&sh, &c)).join().unwrap_or(-1)
    })
    .map_err(|e| format!("{}: {e}", cfg.cmdline()))?;
    if !report.bugs.is_empty() {
        return Err(format!("{}: the kernel reported {}", cfg.cmdline(), report.bugs.join("; ")));
    }
    if report.init != Ok(0) || !shared.ok.load(Ordering::Acquire) {
        return Err(format!("{}: the packet load failed inside the kernel: {:?}", cfg.cmdline(), report.init));
    }
    let stats = *shared.stats.lock().unwrap_or_else(|e| e.into_inner());
    if stats.out_of_order != 0 || stats.csum_errors != 0 || stats.received != stats.sent {
        return Err(format!("{}: packets lost, duplicated or corrupted: {stats:?}", cfg.cmdline()));
    }
    let take = |m: &Mutex<Vec<u64>>| std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()));
    let (lateness, response) = (take(&shared.lateness), take(&shared.response));
    let ns = shared.ns.load(Ordering::Acquire).max(1);
    let result = PacketLoadResult {
        bh: cfg.bh.name().into(),
        bh_prio: cfg.bh_prio,
        preempt: cfg.preempt.name().into(),
        probe_prio: cfg.probe_prio,
        packets_per_s: shared.packets.load(Ordering::Acquire) as f64 * 1e9 / ns as f64,
        latency_ns: percentiles(&lateness),
        response_ns: percentiles(&response),
        stats,
        rx_runs_irq_exit: shared.rx_irq_exit.load(Ordering::Acquire),
        rx_runs_ksoftirqd: shared.rx_ksoftirqd.load(Ordering::Acquire),
        handoffs: shared.handoffs.load(Ordering::Acquire),
        rounds: 1,
    };
    Ok((result, Samples { lateness, response }))
}

/// The controller: opens the device, starts the reader, the wire and the probe, sleeps to the
/// end, stops the wire, waits for everything and publishes the figures. Returns 0 or -1.
fn control(sh: &Arc<Shared>, cfg: &PacketLoadConfig) -> i64 {
    let dev = match PacketDevice::open(cfg.packet.clone()) {
        Ok(d) => Arc::new(d),
        Err(_) => return -1,
    };
    let d = dev.clone();
    let reader = spawn(TaskBuilder::new("pkt-reader"), move || {
        let mut n = 0;
        while d.recv().is_some() {
            n += 1;
        }
        n
    });
    let start = kernel::time::now_ns();
    let deadline = start + (cfg.seconds * 1e9) as u64;
    dev.start();
    let probe = cfg.probe_prio.map(|prio| {
        let (s, interval, pages) = (sh.clone(), cfg.interval_us * 1000, cfg.probe_pages);
        let p = spawn(TaskBuilder::new("bh-probe").fifo(prio), move || probe(&s, interval, pages, deadline));
        dev.watch(p.id());
        p
    });
    kernel::time::sleep_until(deadline);
    let received = dev.stats().received;
    sh.ns.store(kernel::time::now_ns() - start, Ordering::Release);
    sh.packets.store(received, Ordering::Release);
    dev.stop_wire();
    let mut ok = reader.join().is_ok();
    if let Some(p) = probe {
        ok &= p.join().is_ok();
    }
    let s = softirq_stats();
    sh.rx_irq_exit.store(s.runs_irq_exit[NET_RX_SOFTIRQ], Ordering::Release);
    sh.rx_ksoftirqd.store(s.runs_ksoftirqd[NET_RX_SOFTIRQ], Ordering::Release);
    sh.handoffs.store(s.handoffs, Ordering::Release);
    *sh.stats.lock().unwrap_or_else(|e| e.into_inner()) = dev.stats();
    sh.ok.store(ok, Ordering::Release);
    drop(dev);
    if ok {
        0
    } else {
        -1
    }
}

/// The raw samples of one run.
#[derive(Default)]
struct Samples {
    lateness: Vec<u64>,
    response: Vec<u64>,
}

/// The cyclictest probe: wakes every `interval` ns on absolute deadlines until `deadline`,
/// records how late each wakeup ran, does `pages` page checksums in user mode and records how
/// late that work ended.
fn probe(sh: &Shared, interval: u64, pages: usize, deadline: u64) -> i64 {
    let n = (deadline.saturating_sub(kernel::time::now_ns()) / interval) as usize + 1;
    let (mut lateness, mut response) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let page = [0xa5u8; PAGE];
    let mut acc = 0u16;
    let mut next = kernel::time::now_ns();
    loop {
        next += interval;
        if next > deadline {
            break;
        }
        kernel::time::sleep_until(next);
        lateness.push(kernel::time::now_ns().saturating_sub(next));
        for _ in 0..pages {
            acc ^= csum(std::hint::black_box(&page));
        }
        response.push(kernel::time::now_ns().saturating_sub(next));
    }
    std::hint::black_box(acc);
    *sh.lateness.lock().unwrap_or_else(|e| e.into_inner()) = lateness;
    *sh.response.lock().unwrap_or_else(|e| e.into_inner()) = response;
    0
}

/// Runs `cfg` under every mode of `modes`, `rounds` times interleaved, and pools each mode's
/// rounds: median throughput, latency over every sample, counters summed.
pub fn compare_bh(cfg: &PacketLoadConfig, modes: &[BhMode], rounds: usize) -> Result<Vec<PacketLoadResult>, String> {
    crate::measure::validate_rounds(rounds)?;
    let mut runs: Vec<Vec<PacketLoadResult>> = vec![Vec::new(); modes.len()];
    let mut samples: Vec<Samples> = modes.iter().map(|_| Samples::default()).collect();
    for _ in 0..rounds {
        for (i, &bh) in modes.iter().enumerate() {
            let c = PacketLoadConfig { bh, ..cfg.clone() };
            let (r, s) = run_with_samples(&c)?;
            runs[i].push(r);
            samples[i].lateness.extend(s.lateness);
            samples[i].response.extend(s.response);
        }
    }
    let pooled: Vec<PacketLoadResult> = runs.into_iter().zip(samples).map(|(rs, s)| pool(rs, &s)).collect();
    // A run too short to measure is an error, never a row of zeros.
    for r in &pooled {
        let missing = match cfg.probe_prio {
            Some(_) if r.latency_ns.count == 0 => Some("the probe took no sample"),
            _ if r.stats.received == 0 => Some("the reader received no packet"),
            _ => None,
        };
        if let Some(what) = missing {
            return Err(format!(
                "seconds={}: bh={}: {what} in {rounds} round(s) of {} s, so there is nothing to report; lengthen the run (e.g. seconds={})",
                cfg.seconds,
                r.bh,
                cfg.seconds,
                PacketLoadConfig::default().seconds
            ));
        }
    }
    Ok(pooled)
}

fn pool(rs: Vec<PacketLoadResult>, samples: &Samples) -> PacketLoadResult {
    let mut tp: Vec<f64> = rs.iter().map(|r| r.packets_per_s).collect();
    tp.sort_by(f64::total_cmp);
    let n = tp.len();
    let median = if n % 2 == 1 { tp[n / 2] } else { (tp[n / 2 - 1] + tp[n / 2]) / 2.0 };
    let mut out = rs[0].clone();
    out.packets_per_s = median;
    out.latency_ns = percentiles(&samples.lateness);
    out.response_ns = percentiles(&samples.response);
    out.rounds = n;
    let sum = |f: &dyn Fn(&PacketLoadResult) -> u64| rs.iter().map(f).sum::<u64>();
    out.rx_runs_irq_exit = sum(&|r| r.rx_runs_irq_exit);
    out.rx_runs_ksoftirqd = sum(&|r| r.rx_runs_ksoftirqd);
    out.handoffs = sum(&|r| r.handoffs);
    let st = |f: &dyn Fn(&PacketStats) -> u64| rs.iter().map(|r| f(&r.stats)).sum::<u64>();
    out.stats = PacketStats {
        sent: st(&|s| s.sent),
        delivered: st(&|s| s.delivered),
        received: st(&|s| s.received),
        out_of_order: st(&|s| s.out_of_order),
        csum_errors: st(&|s| s.csum_errors),
        irqs: st(&|s| s.irqs),
        softirq_runs: st(&|s| s.softirq_runs),
        wire_stalls: st(&|s| s.wire_stalls),
        throttles: st(&|s| s.throttles),
        runs_on_watched: st(&|s| s.runs_on_watched),
        packets_on_watched: st(&|s| s.packets_on_watched),
    };
    out
}

/// Checks [`bh_order`]'s two RT tasks' priorities, `high_prio=` and `low_prio=`: SCHED_FIFO
/// 1..=99 each.
pub fn check_order(high: u8, low: u8) -> Result<(), String> {
    for (field, p) in [("high_prio", high), ("low_prio", low)] {
        if !(1..=99).contains(&p) {
            return Err(format!("{field}={p}: use a SCHED_FIFO priority 1..=99"));
        }
    }
    Ok(())
}

/// Who ran first after one device interrupt that woke two RT tasks and raised `NET_RX_SOFTIRQ`
/// (the ordering `bh=` chooses, without timing): the names in the order they ran, e.g.
/// `["NET_RX softirq (irq_exit)", "rt60", "rt40"]` under `classic`.
pub fn bh_order(bh: BhMode, bh_prio: u8, high: u8, low: u8) -> Result<Vec<String>, String> {
    let config = Config::from_cmdline(&format!("preempt=full bh={bh} bh_prio={bh_prio}")).map_err(|e| e.to_string())?;
    check_order(high, low)?;
    let order = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let next = Arc::new(AtomicU64::new(0));
    let (o, n) = (order.clone(), next.clone());
    let report = kernel::run(config, move || order_body(o, n, [high, low])).map_err(|e| e.to_string())?;
    if !report.bugs.is_empty() || report.init != Ok(0) {
        return Err(format!("bh={bh}: the ordering run failed: {:?} {:?}", report.init, report.bugs));
    }
    let name = |code: u64| match code {
        1 => format!("rt{high}"),
        2 if bh == BhMode::Classic => "NET_RX softirq (at irq_exit)".to_string(),
        2 => "NET_RX softirq (in ksoftirqd)".to_string(),
        _ => format!("rt{low}"),
    };
    Ok(order.iter().map(|c| name(c.load(Ordering::Acquire))).collect())
}

/// The body of [`bh_order`]: two RT tasks wait; one interrupt wakes both and raises the softirq;
/// each records its place (1 = high task, 2 = softirq, 3 = low task).
fn order_body(order: Arc<[AtomicU64; 3]>, next: Arc<AtomicU64>, prios: [u8; 2]) -> i64 {
    let record = move |code: u64| {
        let i = next.fetch_add(1, Ordering::AcqRel) as usize;
        if i < 3 {
            order[i].store(code, Ordering::Release);
        }
    };
    let r = record.clone();
    if kernel::softirq::open_softirq(NET_RX_SOFTIRQ, move || r(2)).is_err() {
        return -1;
    }
    let go = Arc::new(AtomicBool::new(false));
    let wq = Arc::new(kernel::WaitQueue::new());
    let tasks: Vec<_> = prios
        .into_iter()
        .zip([1, 3])
        .map(|(prio, code)| {
            let (g, w, r) = (go.clone(), wq.clone(), record.clone());
            spawn(TaskBuilder::new(&format!("rt{prio}")).fifo(prio), move || {
                w.wait_event(|| g.load(Ordering::Acquire));
                r(code);
                0
            })
        })
        .collect();
    let dev = kernel::device::Device::register("order", move || {
        go.store(true, Ordering::Release);
        wq.wake_up();
        kernel::softirq::raise_softirq(NET_RX_SOFTIRQ);
    });
    dev.raise();
    let ok = tasks.iter().all(|t| t.join().is_ok());
    if ok {
        0
    } else {
        -1
    }
}
